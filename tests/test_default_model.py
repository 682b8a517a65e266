"""The packaged default model: it loads offline, predicts the shipped clips, and the demo
(the README's main job) shows label, probabilities and regions of interest."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from emotrace import load_model
from emotrace.api import ADAPTIVE_SUFFIX, DEFAULT_MODEL, available_models, predict_files
from emotrace.cli import app

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture(scope="module")
def predictor():
    return load_model()


def test_packaged_models_carry_their_figures_and_both_protocols_exist():
    models = {info.name: info for info in available_models()}
    assert models[DEFAULT_MODEL].protocol == "utterance-level"
    twins = [name for name in models if name + ADAPTIVE_SUFFIX in models]
    assert twins, "no packaged model has a speaker-adaptive twin"
    for name, info in models.items():
        protocol = "speaker-adaptive" if name.endswith(ADAPTIVE_SUFFIX) else "utterance-level"
        assert info.protocol == protocol and len(info.labels) == 8
        assert 50 < info.ua < 100 and 50 < info.wa < 100  # figures from its card
        assert info.size < 10_000_000  # a few MB: the encoder comes from its own package
        assert (info.path / "README.md").read_text().count(f"{info.ua:.1f}") >= 1


def test_the_default_brings_its_speaker_adaptive_twin(predictor, fixture_clips):
    assert DEFAULT_MODEL + ADAPTIVE_SUFFIX in {info.name for info in available_models()}
    one_speaker = dict.fromkeys(fixture_clips, "actor")
    adapted = predict_files(fixture_clips, predictor, adapt_speaker=True, speakers=one_speaker).results
    assert [p.protocol for p in adapted] == ["speaker-adaptive"] * len(fixture_clips)
    assert all(p.segments and sum(p.probabilities.values()) == pytest.approx(1, abs=1e-5) for p in adapted)
    plain = predictor.predict(fixture_clips[0])
    assert adapted[0].probabilities != pytest.approx(plain.probabilities)


def test_predicts_a_shipped_clip_with_regions_and_dynamics(predictor, fixture_clips):
    result = predictor.predict(fixture_clips[0])
    assert result.label in predictor.labels and result.protocol == "utterance-level"
    assert sum(result.probabilities.values()) == pytest.approx(1, abs=1e-5)
    assert sum(result.mixture.values()) == pytest.approx(1, abs=1e-5)
    assert result.segments and all(0 <= r.start < r.end <= result.duration + 0.1 for r in result.segments)
    assert result.frame_posteriors.shape == (len(result.frame_times), 8)
    assert result.attention.sum() == pytest.approx(1, abs=1e-4)
    assert np.all(np.diff(result.frame_times) > 0) and result.frame_times[-1] <= result.duration + 0.1


def test_demo_prints_labels_probabilities_and_regions(tmp_path, fixture_clips, predictor):
    done = CliRunner().invoke(app, ["demo", "--plot", str(tmp_path)], env={"COLUMNS": "250"})
    assert done.exit_code == 0, done.output
    labels = "|".join(predictor.labels)
    for clip in fixture_clips:
        row = next(line for line in done.output.splitlines() if clip.name in line)
        cells = [cell.strip() for cell in row.strip("│ ").split("│")]
        assert len(cells) == 5, row
        _, portrayed, predicted, top3, regions = cells
        result = predictor.predict(clip)
        assert predicted == result.label and portrayed in predictor.labels
        shown = re.findall(rf"({labels}) (\d+)%", top3)
        best = sorted(result.probabilities.items(), key=lambda item: -item[1])[:3]
        assert [label for label, _ in shown] == [label for label, _ in best]
        assert [int(p) for _, p in shown] == [round(100 * p) for _, p in best]
        spans = re.findall(r"(\d+\.\d\d)-(\d+\.\d\d) \((\d+)%\)", regions)
        assert len(spans) == len(result.segments) >= 1
        assert all(float(start) < float(end) <= result.duration + 0.1 for start, end, _ in spans)
        assert (tmp_path / f"{clip.stem}.png").stat().st_size > 10_000


def test_predict_cli_json_on_the_shipped_clips(tmp_path, fixture_clips):
    out = tmp_path / "predictions.json"
    done = CliRunner().invoke(
        app, ["predict", str(fixture_clips[0].parent.parent), "--format", "json", "--output", str(out)]
    )
    assert done.exit_code == 0, done.output
    predictions = json.loads(out.read_text())["predictions"]
    assert len(predictions) == len(fixture_clips)
    assert all(p["protocol"] == "utterance-level" and p["segments"] for p in predictions)
