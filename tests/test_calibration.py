"""Calibration: temperature scaling fitted on validation speakers and carried by checkpoints,
ECE and predicted-class shares in every run, and abstention (``--min-confidence``)."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from emotrace.api import load_model, predict_files
from emotrace.checkpoint import CONFIG_FILE, load_checkpoint
from emotrace.cli import app
from emotrace.errors import InputError
from emotrace.inference.export import export_onnx
from emotrace.inference.predictions import UNCERTAIN, Prediction, RecordingPrediction
from emotrace.inference.predictor import Predictor
from emotrace.service import create_app
from emotrace.training import cv as cv_module
from emotrace.training.calibration import (
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    predicted_shares,
    scaled_probabilities,
)
from emotrace.training.config import load_config
from test_predictor import LABELS, save_roi
from test_training import tone_corpus, write_config  # noqa: F401 (tone_corpus: a fixture)

pytestmark = pytest.mark.usefixtures("torch_single_thread")

GOLDEN = Path(__file__).resolve().parent / "golden"
runner = CliRunner()


def softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(-1, keepdims=True))
    return exp / exp.sum(-1, keepdims=True)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """The same tiny ROI model uncalibrated (``plain``) and with a temperature (``sharp``)."""
    root = tmp_path_factory.mktemp("models")
    save_roi(root / "plain")
    checkpoint = load_checkpoint(root / "plain")
    checkpoint.temperature = 0.25  # sharpens the tiny model's near-uniform probabilities
    checkpoint.save(root / "sharp")
    return root


# --------------------------------------------------------------------------- the figures


def test_temperature_scaling_lowers_the_nll_of_an_overconfident_classifier():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 400)
    truth = np.eye(4)[labels]
    noisy = np.where(rng.random(400) < 0.3, rng.integers(0, 4, 400), labels)  # 30 % of the time a guess
    logits = 8.0 * np.eye(4)[noisy] + rng.normal(0, 1, (400, 4)) + 0.5 * truth  # right ~78 %, sure ~99 %
    temperature = fit_temperature(logits, labels)
    assert temperature > 2  # over-confident: the logits must be softened
    assert negative_log_likelihood(logits, labels, temperature) < 0.6 * negative_log_likelihood(logits, labels)
    assert (scaled_probabilities(logits, temperature).argmax(1) == logits.argmax(1)).all()
    before = expected_calibration_error(softmax(logits), labels)
    assert expected_calibration_error(scaled_probabilities(logits, temperature), labels) < before / 3
    # the optimum: the NLL is higher a little either side of it
    for step in (0.97, 1.03):
        assert negative_log_likelihood(logits, labels, temperature * step) > negative_log_likelihood(
            logits, labels, temperature
        )


def test_an_underconfident_classifier_gets_a_temperature_below_one_and_masked_logits_are_fine():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 300)
    logits = 0.3 * np.eye(3)[labels] + rng.normal(0, 0.2, (300, 3))  # right 75 %, sure ~40 %
    logits = np.concatenate([logits, np.full((300, 1), -np.inf)], axis=1)  # a class masked out
    temperature = fit_temperature(logits, labels)
    assert temperature < 0.5
    assert negative_log_likelihood(logits, labels, temperature) < negative_log_likelihood(logits, labels)
    assert math.isfinite(negative_log_likelihood(logits, labels, temperature))


def test_a_validation_set_the_model_gets_all_right_leaves_the_temperature_at_one():
    labels = np.arange(40) % 4
    logits = 3.0 * np.eye(4)[labels] + np.random.default_rng(2).normal(0, 0.5, (40, 4))
    assert fit_temperature(logits, labels) == 1.0  # the NLL would fall all the way to T -> 0
    labels[0] = (labels[0] + 1) % 4  # one mistake: a finite optimum, below 1 (the rest is sure and right)
    assert 0.05 < fit_temperature(logits, labels) < 1.0


def test_ece_on_a_hand_computed_example():
    probabilities = np.array(
        [
            [0.95, 0.05],  # bin 15 (14/15, 1]: right
            [0.97, 0.03],  # bin 15: wrong
            [0.30, 0.70],  # bin 11 (10/15, 11/15]: right
            [0.62, 0.38],  # bin 10 (9/15, 10/15]: right
        ]
    )
    labels = [0, 1, 1, 0]
    # bin 15: accuracy 1/2, confidence 0.96 -> 0.46 x 2 items; bin 11: |1 - 0.7| x 1; bin 10: |1 - 0.62| x 1
    expected = 100 * (2 * 0.46 + 0.30 + 0.38) / 4
    assert expected_calibration_error(probabilities, labels) == pytest.approx(expected)
    assert expected_calibration_error(np.array([[1.0, 0.0]] * 3), [0, 0, 0]) == 0.0
    assert predicted_shares([0, 0, 0, 2], ("a", "b", "c")) == {"a": 75.0, "b": 0.0, "c": 25.0}


# --------------------------------------------------------------------------- checkpoints and predictor


def test_a_temperature_round_trips_and_scales_the_predictors_probabilities(models, fixture_clips):
    assert load_checkpoint(models / "sharp").temperature == 0.25
    assert json.loads((models / "sharp" / CONFIG_FILE).read_text())["temperature"] == 0.25
    plain, sharp = load_model(models / "plain"), load_model(models / "sharp")
    for clip in fixture_clips:
        raw = np.array([plain.predict(clip).probabilities[label] for label in LABELS])
        scaled = sharp.predict(clip)
        # softmax(z / T) from softmax(z) = exp(z) / Z: log softmax(z) is z up to a constant
        expected = softmax(np.log(raw) / 0.25)
        np.testing.assert_allclose([scaled.probabilities[label] for label in LABELS], expected, atol=1e-5)
        assert scaled.label == plain.predict(clip).label and max(expected) > 1.5 * max(raw)


def test_checkpoints_without_a_temperature_load_with_one_and_bad_ones_are_refused(models, tmp_path):
    assert "temperature" not in json.loads((GOLDEN / "roi" / CONFIG_FILE).read_text())
    assert load_checkpoint(GOLDEN / "roi").temperature == 1.0
    for bad in (0, -1.5, "hot", float("nan"), float("inf"), True):
        broken = tmp_path / f"broken-{bad}"
        load_checkpoint(models / "plain").save(broken)
        config = json.loads((broken / CONFIG_FILE).read_text())
        (broken / CONFIG_FILE).write_text(json.dumps({**config, "temperature": bad}))
        expected = f"^{re.escape(str(broken / CONFIG_FILE))}: temperature must be a finite number above 0"
        with pytest.raises(ValueError, match=expected) as error:
            load_checkpoint(broken)
        assert "\n" not in str(error.value)
    with pytest.raises(InputError, match=r"config\.json: temperature must be"):
        load_model(broken)


def test_onnx_probabilities_are_the_calibrated_ones(models, tmp_path):
    report = export_onnx(models / "sharp", tmp_path / "sharp.onnx")
    assert json.loads(report.metadata_path.read_text())["temperature"] == 0.25
    session = onnxruntime.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    features = np.random.default_rng(0).standard_normal((2, 30, 16)).astype(np.float32)
    logits, probabilities = session.run(
        ["logits", "probabilities"],
        {
            "audio": features,
            "audio_lengths": np.array([30, 21], np.int64),
        },
    )
    np.testing.assert_allclose(probabilities, softmax(logits / 0.25), atol=1e-5)


# --------------------------------------------------------------------------- abstention


def test_abstention_through_the_api_and_the_predictor(models, fixture_clips):
    batch = predict_files(fixture_clips, models / "plain")
    plain = batch.to_dict()["predictions"]
    assert all("abstained" not in p for p in plain)  # no threshold: the document as it always was
    tops = [max(p.probabilities.values()) for p in batch.results]
    threshold = float(np.mean(sorted(tops)[:2]))  # between the two least sure: one abstains
    asked = predict_files(fixture_clips, models / "plain", min_confidence=threshold).to_dict()["predictions"]
    assert [p["abstained"] for p in asked] == [top < threshold for top in tops]
    assert sum(p["abstained"] for p in asked) == 1
    for before, after in zip(plain, asked):
        assert after["probabilities"] == before["probabilities"]
        assert after["label"] == (UNCERTAIN if after["abstained"] else before["label"])
    predictor = load_model(models / "plain", min_confidence=1.0)
    assert predictor.predict(fixture_clips[0]).label == UNCERTAIN
    # a threshold given to the batch overrides the predictor's own
    never = predict_files(fixture_clips, predictor, min_confidence=0.0).results
    assert [p.label for p in never] == [p["label"] for p in plain] and not any(p.abstained for p in never)
    with pytest.raises(ValueError, match=r"min_confidence must be a probability between 0 and 1, got 1\.5"):
        Predictor(load_checkpoint(models / "plain"), min_confidence=1.5)
    with pytest.raises(ValueError, match=r"got -0\.1"):
        predict_files(fixture_clips, predictor, min_confidence=-0.1)


def test_a_recording_abstains_on_its_shares_and_each_segment_on_its_own():
    def segment(start: float, top: float) -> Prediction:
        rest = (1 - top) / (len(LABELS) - 1)
        probabilities = {label: top if i == 0 else rest for i, label in enumerate(LABELS)}
        return Prediction("r.wav", start, 1.0, LABELS[0], probabilities, "utterance-level", {"audio": True})

    timeline = (segment(0.0, 0.9), segment(2.0, 0.3))
    shares = {label: float(np.mean([p.probabilities[label] for p in timeline])) for label in LABELS}
    recording = RecordingPrediction("r.wav", 4.0, "utterance-level", timeline, shares)
    assert recording.label == LABELS[0] and "abstained" not in recording.to_dict()
    cautious = recording.with_min_confidence(0.5)
    assert cautious.label == LABELS[0] and cautious.abstained is False  # top share 0.6
    assert [p.label for p in cautious.timeline] == [LABELS[0], UNCERTAIN]
    assert [p["abstained"] for p in cautious.to_dict()["timeline"]] == [False, True]
    stricter = recording.with_min_confidence(0.7).to_dict()
    assert stricter["label"] == UNCERTAIN and stricter["abstained"] is True
    assert replace(recording, abstained=None).with_min_confidence(None).to_dict() == recording.to_dict()


def test_abstention_on_the_command_line_in_json_csv_and_table(models, fixture_clips, tmp_path):
    clips = [str(clip) for clip in fixture_clips]
    result = runner.invoke(
        app, ["predict", *clips, "-m", str(models / "plain"), "--min-confidence", "1", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    for prediction in json.loads(result.stdout)["predictions"]:
        assert prediction["label"] == UNCERTAIN and prediction["abstained"] is True
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    rows = list(
        csv.DictReader(
            io.StringIO(
                runner.invoke(
                    app, ["predict", *clips, "-m", str(models / "plain"), "--min-confidence", "1", "--format", "csv"]
                ).stdout
            )
        )
    )
    assert [(row["label"], row["abstained"]) for row in rows] == [(UNCERTAIN, "true")] * len(clips)
    plain_csv = runner.invoke(app, ["predict", *clips, "-m", str(models / "plain"), "--format", "csv"]).stdout
    assert "abstained" not in plain_csv.splitlines()[0]
    table = tmp_path / "table.txt"  # wide enough that no cell wraps
    result = runner.invoke(
        app,
        [
            "predict",
            *clips,
            "-m",
            str(models / "plain"),
            "--min-confidence",
            "0.999",
            "--plot",
            str(tmp_path / "plots"),
            "--output",
            str(table),
        ],
    )
    assert result.exit_code == 0, result.output
    assert table.read_text().count(f"{UNCERTAIN} (") == len(clips)
    assert len(list((tmp_path / "plots").glob("*.png"))) == len(clips)  # plots show the best guess

    for bad in ("1.5", "-0.2", "nan"):
        refused = runner.invoke(app, ["predict", *clips, "-m", str(models / "plain"), "--min-confidence", bad])
        assert refused.exit_code == 1
        message = refused.stderr.strip()
        assert message.startswith("error: --min-confidence must be a probability between 0 and 1"), message
        assert "\n" not in message


def test_abstention_through_the_service(models, fixture_clips):
    with TestClient(create_app(models / "plain")) as client:

        def upload(query: str = ""):
            with open(fixture_clips[0], "rb") as audio:
                return client.post(f"/predict{query}", files={"file": (fixture_clips[0].name, audio)})

        plain = upload().json()["predictions"][0]
        assert "abstained" not in plain
        asked = upload("?min_confidence=1").json()["predictions"][0]
        assert asked["label"] == UNCERTAIN and asked["abstained"] is True
        assert asked["probabilities"] == plain["probabilities"]
        assert upload("?min_confidence=0").json()["predictions"][0]["abstained"] is False
        refused = upload("?min_confidence=1.5")
        assert refused.status_code == 400
        assert refused.json()["error"].startswith("query parameter 'min_confidence'")


# --------------------------------------------------------------------------- a run


def test_cv_on_tones_records_temperature_ece_and_predicted_shares(tone_corpus, tmp_path):  # noqa: F811
    path = write_config(
        tmp_path / "c.yaml",
        {"name": "manifest", "root": str(tone_corpus)},
        tmp_path / "store",
        optim={"max_epochs": 2, "patience": 5, "lr": 3e-3},
        folds=["fold1", "fold2"],
    )
    run_dir = tmp_path / "run"
    results = cv_module.run_cv(load_config(path), run_dir, progress=False)
    for name, fold in results.items():
        assert fold["calibration"] == "temperature" and fold["temperature"] > 0
        assert 0 <= fold["ece"] <= 100 and 0 <= fold["ece_unscaled"] <= 100 and fold["nll"] > 0
        assert sum(fold["predicted_share"].values()) == pytest.approx(100.0)
        checkpoint = load_checkpoint(run_dir / "folds" / name / "model")
        assert checkpoint.temperature == fold["temperature"] and checkpoint.info["test"]["ece"] == fold["ece"]
        rows = [json.loads(line) for line in (run_dir / "folds" / name / "predictions.jsonl").read_text().splitlines()]
        shares = predicted_shares([checkpoint.labels.index(row["prediction"]) for row in rows], checkpoint.labels)
        assert shares == fold["predicted_share"]
        labels = [checkpoint.labels.index(row["label"]) for row in rows]
        assert expected_calibration_error(np.array([row["probabilities"] for row in rows]), labels) == pytest.approx(
            fold["ece"], abs=1e-3
        )
    summary = json.loads((run_dir / "metrics.json").read_text())
    for figure in ("temperature", "ece", "ece_unscaled", "nll", "nll_unscaled"):
        values = [fold[figure] for fold in results.values()]
        assert summary[f"{figure}_mean"] == pytest.approx(np.mean(values))
        assert summary[f"{figure}_std"] == pytest.approx(np.std(values))
    assert sum(summary["pooled_predicted_share"].values()) == pytest.approx(100.0)
    flagged = {(flag["fold"], flag["label"]) for flag in summary["dominant_predictions"]}
    assert flagged == {
        (name, label)
        for name, fold in results.items()
        for label, share in fold["predicted_share"].items()
        if share > 50
    }
    report = (run_dir / "report.md").read_text()
    assert "## Calibration" in report and "ECE" in report and "Predicted-class shares" in report
    assert all(f"fold {name} predicts {label}" in report for name, label in flagged)

    off = write_config(
        tmp_path / "off.yaml",
        {"name": "manifest", "root": str(tone_corpus)},
        tmp_path / "store",
        optim={"max_epochs": 1},
        folds=["fold1"],
        calibration="none",
    )
    fold = cv_module.run_cv(load_config(off), tmp_path / "off", progress=False)["fold1"]
    assert fold["calibration"] == "none" and fold["temperature"] == 1.0 and fold["ece"] == fold["ece_unscaled"]
    assert load_checkpoint(tmp_path / "off" / "folds" / "fold1" / "model").temperature == 1.0
    assert "No calibration" in (tmp_path / "off" / "report.md").read_text()
    with pytest.raises(ValueError, match="calibration must be one of temperature, none, got 'platt'"):
        load_config(off, ["calibration=platt"])
