"""Evaluation that a reviewer asks for: speaker bootstrap intervals, selection by validation,
and the deletion test of method A's regions of interest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from emotrace.models import ROIAttention, ROIAttentionConfig
from emotrace.models.base import EmotionModel, ModelConfig
from emotrace.models.layers import lengths_to_mask
from emotrace.models.outputs import ROIOutput
from emotrace.training.config import load_config
from emotrace.training.cv import run_cv
from emotrace.training.data import FeatureDataset, ModalityInputs
from emotrace.training.faithfulness import (
    attention_deletion,
    decision_shares,
    run_deletion_test,
    shifted,
    top_attention_mask,
)
from emotrace.training.metrics import speaker_bootstrap
from emotrace.training.report import select_by_validation

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def records(outcomes: dict[str, list[bool]], labels: tuple[str, ...] = ("a", "b")) -> list[dict]:
    """Prediction records: per speaker, one utterance per outcome, labels alternating."""
    rows = []
    for speaker, hits in outcomes.items():
        for index, hit in enumerate(hits):
            label = labels[index % len(labels)]
            wrong = labels[(index + 1) % len(labels)]
            rows.append({"speaker": speaker, "label": label, "prediction": label if hit else wrong})
    return rows


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_of_a_perfect_system_is_a_point_and_its_difference_with_itself_is_zero():
    perfect = records({f"s{i}": [True] * 6 for i in range(5)})
    assert speaker_bootstrap([perfect]) == pytest.approx(
        {"ua": 100.0, "low": 100.0, "high": 100.0, "speakers": 5, "resamples": 2000, "level": 0.95}
    )
    itself = speaker_bootstrap([perfect], [perfect])
    assert itself["difference"] == itself["low"] == itself["high"] == 0.0


def test_bootstrap_resamples_speakers_not_utterances():
    # two speakers always right, two always wrong, 100 utterances each: the utterances are not
    # independent, so the interval must be as wide as a draw of 4 speakers makes it
    split = records({"s0": [True] * 100, "s1": [True] * 100, "s2": [False] * 100, "s3": [False] * 100})
    result = speaker_bootstrap([split], seed=1)
    assert result["ua"] == pytest.approx(50.0)
    assert result["low"] <= 25.0 and result["high"] >= 75.0


def test_bootstrap_difference_is_paired_and_averages_runs():
    better = records({f"s{i}": [True, True, True, False] for i in range(8)})  # 75 % on every speaker
    worse = records({f"s{i}": [True, False, True, False] for i in range(8)})  # 50 % on every speaker
    gap = speaker_bootstrap([better], [worse])
    assert gap["difference"] == pytest.approx(25.0) and gap["low"] == pytest.approx(25.0)
    averaged = speaker_bootstrap([better, worse])
    assert averaged["ua"] == pytest.approx(62.5)


def test_bootstrap_refuses_runs_over_other_speakers():
    with pytest.raises(ValueError, match="same test speakers"):
        speaker_bootstrap([records({"s0": [True]})], [records({"s1": [True]})])
    with pytest.raises(ValueError, match="at least one run"):
        speaker_bootstrap([])


# --------------------------------------------------------------------------- selection


def row(run: str, val: float | None, test: float, **keys) -> dict:
    base = {
        "corpus": "ravdess",
        "protocol": "utterance-level",
        "folds_protocol": "speaker-independent",
        "folds": 6,
        "val_ua_mean": val,
        "ua_mean": test,
        "run": run,
    }
    return {**base, **keys}


def test_validation_picks_the_best_validation_ua_whatever_the_test_says():
    rows = [row("a", 80.0, 70.0), row("b", 82.0, 65.0), row("c", 79.0, 90.0)]
    assert select_by_validation(rows)["run"] == "b"
    with pytest.raises(ValueError, match="differ in protocol"):
        select_by_validation([row("a", 80.0, 70.0), row("b", 81.0, 70.0, protocol="speaker-adaptive")])
    with pytest.raises(ValueError, match="no validation UA in b"):
        select_by_validation([row("a", 80.0, 70.0), row("b", None, 70.0)])


# --------------------------------------------------------------------------- deletion test


def test_top_attention_mask_and_its_shifted_control_delete_equally_many_frames():
    attention = torch.tensor([[0.1, 0.5, 0.3, 0.1, 0.0], [0.1, 0.2, 0.7, 0.0, 0.0]])
    lengths = torch.tensor([4, 3])
    mask = top_attention_mask(attention, lengths, share=0.3)  # 1.2 and 0.9 frames: one each
    assert mask.tolist() == [[False, True, False, False, False], [False, False, True, False, False]]
    above = top_attention_mask(attention, lengths, share=None)  # a_t > 1/T
    assert above.tolist() == [[False, True, True, False, False], [False, False, True, False, False]]
    control = shifted(mask, lengths, torch.Generator().manual_seed(0))
    assert control.sum(1).tolist() == mask.sum(1).tolist()
    assert not control[:, 4].any() and not control[1, 3]  # stays inside the valid frames
    assert not (control & mask).any()  # a one-frame selection always moves


class MarkedFrames(EmotionModel):
    """Attends to the frames whose channel 0 is 1; classifies from channels 1-2 of the frames
    it attends to (``faithful``) or of all frames alike (not faithful)."""

    def __init__(self, faithful: bool):
        super().__init__(ModelConfig(num_classes=2, input_dims={"audio": 3}))
        self.faithful = faithful

    def forward(self, audio, audio_lengths):
        mask = lengths_to_mask(audio_lengths, audio.shape[1])
        attention = (8.0 * audio[..., 0]).masked_fill(~mask, float("-inf")).softmax(-1)
        weights = attention if self.faithful else mask / audio_lengths[:, None]
        logits = torch.einsum("bt,btc->bc", weights, audio[..., 1:])
        frames = logits.new_zeros(*attention.shape, 2)
        return ROIOutput(
            logits=logits,
            attention=attention,
            frame_posteriors=frames,
            mixture=logits.softmax(-1),
            lengths=audio_lengths,
        )


def marked_dataset(evidence_in_marked_frames: bool, items: int = 40, frames: int = 20) -> FeatureDataset:
    """Items of two classes with 4 marked frames at a random place; the class evidence is a
    one-hot in channels 1-2, either on the marked frames only or on every other frame."""
    generator = np.random.default_rng(0)
    data, labels = {}, []
    for item in range(items):
        label = item % 2
        x = generator.normal(0.0, 0.05, (1, frames, 3)).astype(np.float32)
        x[0, :, 0] = 0.0
        start = int(generator.integers(0, frames - 4))
        x[0, start : start + 4, 0] = 1.0
        carrying = np.zeros(frames, bool)
        carrying[start : start + 4] = True
        carrying = carrying if evidence_in_marked_frames else ~carrying
        x[0, carrying, 1 + label] += 1.0
        data[f"u{item}"] = x
        labels.append(label)
    inputs = {"audio": ModalityInputs(data, frame_rate=50.0, stacked=False)}
    return FeatureDataset(list(data), labels, inputs)


def deletion_drops(result, dataset) -> tuple[dict, dict]:
    speakers = [f"s{index % 4}" for index in range(len(dataset))]

    def rows(predictions):
        triples = zip(speakers, result.labels, predictions)
        return [{"speaker": s, "label": int(y), "prediction": int(p)} for s, y, p in triples]

    top = speaker_bootstrap([rows(result.intact)], [rows(result.top)])
    control = speaker_bootstrap([rows(result.intact)], [rows(p) for p in result.control])
    return top, control


def test_deleting_faithful_regions_costs_more_than_deleting_random_ones():
    dataset = marked_dataset(evidence_in_marked_frames=True)
    result = attention_deletion(MarkedFrames(faithful=True), dataset, share=0.2, draws=4)
    assert (result.intact == result.labels).all()
    assert result.deleted_share == pytest.approx(0.2)
    top, control = deletion_drops(result, dataset)
    assert top["difference"] >= 30.0 and top["low"] > control["high"]  # the answer known by construction
    assert control["difference"] <= 15.0


def test_unfaithful_attention_loses_nothing_when_its_regions_go():
    dataset = marked_dataset(evidence_in_marked_frames=False)
    result = attention_deletion(MarkedFrames(faithful=False), dataset, share=0.2, draws=4)
    assert (result.intact == result.labels).all()
    top, control = deletion_drops(result, dataset)
    assert top["difference"] == pytest.approx(0.0) and top["high"] <= control["high"] + 1e-9


def test_deleted_frames_take_the_fill_value_on_stacked_inputs():
    captured = []

    class Recorder(MarkedFrames):
        def forward(self, audio, audio_lengths):
            captured.append(audio.clone())
            return super().forward(audio[:, 0], audio_lengths)

    data = {"u": np.zeros((2, 10, 3), np.float32)}
    data["u"][:, 2:4, 0] = 1.0
    dataset = FeatureDataset(["u"], [0], {"audio": ModalityInputs(data, 50.0, stacked=True)})
    fill = np.array([[7.0, 7.0, 7.0], [9.0, 9.0, 9.0]], np.float32)
    model = Recorder(faithful=True)
    model.config.num_layers_in = {"audio": 2}
    attention_deletion(model, dataset, share=0.2, fill={"audio": fill}, draws=1)
    deleted = captured[1][0]  # the top-attention pass
    assert (deleted[0, 2:4] == 7.0).all() and (deleted[1, 2:4] == 9.0).all()
    assert (deleted[:, :2] == captured[0][0][:, :2]).all()


def tiny_roi(join_mean_pool: bool) -> ROIAttention:
    torch.manual_seed(0)
    return ROIAttention(
        ROIAttentionConfig(
            num_classes=3,
            input_dims={"audio": 3},
            lstm_hidden=4,
            lstm_layers=1,
            attention_dim=4,
            projection_dim=None,
            join_mean_pool=join_mean_pool,
        )
    )


@pytest.mark.parametrize("join_mean_pool", [False, True])
def test_logit_parts_add_up_to_the_logits_and_the_paper_model_has_no_mean_path(join_mean_pool):
    model = tiny_roi(join_mean_pool).eval()
    dataset = marked_dataset(True, items=6)
    audio = torch.from_numpy(np.stack([dataset[i]["audio"][0].numpy() for i in range(6)]))
    parts = model.logit_parts(audio=audio)
    assert torch.allclose(parts["attention"] + parts["mean"], model(audio=audio).logits, atol=1e-6)
    shares = decision_shares(model, dataset)
    if join_mean_pool:
        assert 0.0 < shares["mean_share"] < 1.0
    else:
        assert shares == {"mean_share": 0.0, "attention_agreement": 1.0}


@pytest.fixture(scope="module")
def tone_run(tmp_path_factory) -> Path:
    """A finished two-fold cv run of a tiny hybrid method A on tones (pitch = emotion)."""
    root = tmp_path_factory.mktemp("tones")
    rows, rate = [], 16000
    for speaker in range(4):
        for emotion, pitch in (("angry", 600.0), ("sad", 150.0)):
            for take in range(2):
                t = np.arange(int(0.5 * rate)) / rate
                path = root / f"s{speaker}_{emotion}_{take}.wav"
                sf.write(path, (0.3 * np.sin(2 * np.pi * (pitch + 10 * take) * t)).astype(np.float32), rate)
                rows.append({"key": path.stem, "wav": str(path), "emo": emotion, "speaker": f"s{speaker}"})
    (root / "manifest.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    config_path = root / "config.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "name": "tiny-roi",
                "corpus": {"name": "manifest", "root": str(root / "manifest.jsonl")},
                "inputs": {"audio": {"features": "logmel:bins=16", "frame_pooling": 4}},
                "model": {
                    "name": "roi_attention",
                    "lstm_hidden": 4,
                    "lstm_layers": 1,
                    "attention_dim": 4,
                    "projection_dim": 8,
                    "join_mean_pool": True,
                },
                "store": str(root / "store"),
                "data": {"batch_size": 4},
                "optim": {"max_epochs": 1},
                "folds": ["fold1", "fold2"],
            }
        )
    )
    run_cv(load_config(config_path), root / "run", progress=False)
    return root / "run"


def test_the_deletion_test_of_a_run_tests_every_fold_model_on_its_test_speakers(tone_run):
    result = run_deletion_test(tone_run, shares=(0.2, None), draws=2)
    stored = [json.loads(line) for line in (tone_run / "predictions.jsonl").read_text().splitlines()]
    assert sorted((r["speaker"], r["label"], r["prediction"]) for r in stored) == sorted(
        (r["speaker"], r["label"], r["prediction"]) for r in result["intact"]
    )
    assert set(result["tests"]) == {"0.2", "roi"}
    for test in result["tests"].values():
        assert len(test["top"]) == len(stored) and [len(draw) for draw in test["control"]] == [len(stored)] * 2
        assert 0.0 < test["deleted_share"] < 1.0
    assert 0.0 <= result["decision"]["mean_share"] <= 1.0
    mean_filled = run_deletion_test(tone_run, fill="mean", draws=1)
    assert mean_filled["intact"] == result["intact"]


def test_compare_shows_validation_ua_and_names_the_run_validation_picks(tone_run):
    from typer.testing import CliRunner

    from emotrace.cli import app

    done = CliRunner().invoke(app, ["compare", str(tone_run), str(tone_run), "--select", "--json"])
    assert done.exit_code == 0, done.output
    result = json.loads(done.output)
    summary = json.loads((tone_run / "metrics.json").read_text())
    assert result["selected"] == str(tone_run)
    assert result["rows"][0]["val_ua_mean"] == pytest.approx(summary["val_ua_mean"])
    folds = summary["per_fold"].values()
    assert summary["val_ua_mean"] == pytest.approx(np.mean([fold["val_ua"] for fold in folds]))
    table = CliRunner().invoke(app, ["compare", str(tone_run), "--select"])
    assert "val UA" in table.output and "validation picks" in table.output
