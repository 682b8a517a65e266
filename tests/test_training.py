"""The training engine: configs, batching, a fold end to end, resume, reports, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from typer.testing import CliRunner

from emotrace.checkpoint import load_checkpoint
from emotrace.cli import app
from emotrace.errors import InputError
from emotrace.protocols import UTTERANCE_LEVEL
from emotrace.training import cv as cv_module
from emotrace.training.config import DataConfig, apply_overrides, config_from_dict, load_config
from emotrace.training.data import (
    BucketBatchSampler,
    FeatureDataset,
    ModalityInputs,
    collate,
    inverse_frequency_weights,
)
from emotrace.training.metrics import classification_metrics, summarise_folds
from emotrace.training.module import EmotionModule

pytestmark = pytest.mark.usefixtures("torch_single_thread")

TINY_LSTM = {"name": "lstm", "lstm_hidden": 8, "lstm_layers": 1, "projection_dim": 16}


def write_config(path: Path, corpus: dict, store: Path, **sections) -> Path:
    config = {
        "name": "tiny",
        "corpus": corpus,
        "inputs": {"audio": {"features": "logmel", "frame_pooling": 4}},
        "model": TINY_LSTM,
        "store": str(store),
        "data": {"batch_size": 8},
        "optim": {"max_epochs": 2, "patience": 5},
        **sections,
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def tone_corpus(tmp_path_factory) -> Path:
    """A manifest of 4 speakers x 2 emotions x 3 clips; the emotion sets the tone's pitch."""

    def tone(pitch: float, t: np.ndarray) -> np.ndarray:
        return 0.3 * np.sin(2 * np.pi * pitch * t)

    return pitched_corpus(tmp_path_factory.mktemp("tones"), {"angry": 600.0, "sad": 150.0}, 20.0, 0.6, tone)


def pitched_corpus(root: Path, pitches: dict[str, float], per_speaker: float, seconds: float, sound) -> Path:
    """A manifest of 4 speakers x the emotions of ``pitches`` x 3 takes; each clip is
    ``sound(pitch, t)`` at the emotion's pitch, raised ``per_speaker`` Hz per speaker and 5 per take."""
    rows, rate = [], 16000
    t = np.arange(int(seconds * rate)) / rate
    for speaker in range(4):
        for emotion, pitch in pitches.items():
            for take in range(3):
                path = root / f"s{speaker}_{emotion}_{take}.wav"
                sf.write(path, sound(pitch + per_speaker * speaker + 5 * take, t).astype(np.float32), rate)
                rows.append({"key": path.stem, "wav": str(path), "emo": emotion, "speaker": f"s{speaker}"})
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return manifest


# --------------------------------------------------------------------------- configs


def test_config_overrides_and_errors(tmp_path):
    path = write_config(tmp_path / "c.yaml", {"name": "ravdess", "root": "${HOME}/ravdess"}, tmp_path)
    config = load_config(path, ["model.lstm_hidden=32", "optim.lr=3e-4", "inputs.audio.layers=[2, 3]"])
    assert config.model["lstm_hidden"] == 32 and config.optim.lr == 3e-4
    assert config.inputs["audio"].layers == (2, 3) and config.corpus.root == f"{os.environ['HOME']}/ravdess"
    with pytest.raises(ValueError, match=r"c.yaml: optim: unknown keys \['learning_rate'\]"):
        load_config(path, ["optim.learning_rate=1"])
    with pytest.raises(ValueError, match="unknown protocol"):
        load_config(path, ["protocol=speaker-normalised"])
    with pytest.raises(ValueError, match="not key=value"):
        apply_overrides({}, ["optim.lr"])
    with pytest.raises(ValueError, match=r"ema_decay must lie in \(0, 1\)"):
        load_config(path, ["optim.ema_decay=1.5"])
    assert config_from_dict(config.to_dict()).to_dict() == config.to_dict()


# --------------------------------------------------------------------------- batching


def test_bucket_sampler_covers_every_item_once_per_epoch_and_shards_ranks():
    lengths = list(np.random.default_rng(0).integers(5, 100, 103))
    sampler = BucketBatchSampler(lengths, batch_size=8, seed=1)
    sampler.set_epoch(0)
    first = [i for batch in sampler for i in batch]
    assert sorted(first) == list(range(103))
    sampler.set_epoch(1)
    assert [i for batch in sampler for i in batch] != first  # reshuffled each epoch
    spreads = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in BucketBatchSampler(lengths, 8)]
    assert np.mean(spreads) < 20  # batches hold similar lengths
    ranks = [list(BucketBatchSampler(lengths, 8, seed=1, rank=r, world_size=2)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(BucketBatchSampler(lengths, 8, world_size=2))
    assert {i for rank in ranks for batch in rank for i in batch} == set(range(103))


def test_collate_pads_and_keeps_layers_only_when_stacked():
    items = [
        {"label": 1, "audio": torch.ones(3, 5, 4), "text": torch.ones(1, 2, 6)},
        {"label": 0, "audio": torch.ones(3, 7, 4), "text": torch.ones(1, 4, 6)},
    ]
    batch = collate(items, {"audio": True, "text": False})
    assert batch["audio"].shape == (2, 3, 7, 4) and batch["text"].shape == (2, 4, 6)
    assert batch["audio_lengths"].tolist() == [5, 7] and batch["labels"].tolist() == [1, 0]
    assert batch["audio"][0, :, 5:].abs().sum() == 0


def test_inverse_frequency_weights():
    assert inverse_frequency_weights([0, 0, 0, 1], 3) == [4 / 9, 4 / 3, 0.0]


def test_metrics_match_definitions():
    metrics = classification_metrics([0, 0, 0, 1], [0, 0, 1, 1], ("a", "b"))
    assert metrics["wa"] == 75.0 and metrics["ua"] == pytest.approx(100 * (2 / 3 + 1) / 2)
    assert metrics["confusion"] == [[2, 1], [0, 1]]
    summary = summarise_folds({"f1": metrics, "f2": {**metrics, "ua": 50.0}}, ("a", "b"))
    assert summary["ua_mean"] == pytest.approx((metrics["ua"] + 50) / 2) and summary["folds"] == 2


# --------------------------------------------------------------------------- a fold end to end


def test_cv_on_tones_trains_reports_and_resumes_after_a_crash(tone_corpus, tmp_path, monkeypatch):
    path = write_config(
        tmp_path / "c.yaml",
        {"name": "manifest", "root": str(tone_corpus)},
        tmp_path / "store",
        optim={"max_epochs": 3, "patience": 5, "lr": 3e-3},
        folds=["fold1"],
    )
    config = load_config(path)
    run_dir = tmp_path / "run"

    def crash(self):  # dies as the second epoch starts, as a killed job would
        if self.current_epoch == 1:
            raise RuntimeError("power cut")

    with monkeypatch.context() as patch:
        patch.setattr(EmotionModule, "on_train_epoch_start", crash, raising=False)
        with pytest.raises(RuntimeError, match="power cut"):
            cv_module.run_cv(config, run_dir, progress=False)
    fold_dir = run_dir / "folds" / "fold1"
    assert (fold_dir / "lightning" / "last.ckpt").exists() and not (fold_dir / "metrics.json").exists()

    results = cv_module.run_cv(config, run_dir, progress=False)  # resumes at epoch 2
    assert results["fold1"]["epochs"] == 3
    attempts = sorted((fold_dir / "log").glob("version_*/metrics.csv"))
    epochs = [{row.split(",")[0] for row in path.read_text().splitlines()[1:]} for path in attempts]
    assert epochs == [{"0"}, {"1", "2"}]  # each epoch trained once, across the crash
    for name in ("config.yaml", "metrics.json", "predictions.jsonl", "confusion.png", "report.md"):
        assert (run_dir / name).stat().st_size > 0, name
    assert not (fold_dir / "lightning").exists()
    summary = json.loads((run_dir / "metrics.json").read_text())
    assert summary["protocol"] == "utterance-level" and summary["folds"] == 1
    assert "utterance-level" in (run_dir / "report.md").read_text()

    (run_dir / "metrics.json").unlink()  # `emotrace evaluate` rebuilds the report from the folds
    done = CliRunner().invoke(app, ["evaluate", str(run_dir)])
    assert done.exit_code == 0 and "UA" in done.output and (run_dir / "metrics.json").exists()
    done = CliRunner().invoke(app, ["compare", str(run_dir), str(run_dir), "--json"])
    rows = json.loads(done.output)
    assert len(rows) == 2 and rows[0]["protocol"] == "utterance-level" and rows[0]["ua_mean"] == summary["ua_mean"]


def test_cv_refuses_a_run_directory_of_another_config(tone_corpus, tmp_path):
    path = write_config(
        tmp_path / "c.yaml", {"name": "manifest", "root": str(tone_corpus)}, tmp_path / "store", folds=["fold1"]
    )
    cv_module.start_run(load_config(path), tmp_path / "run")
    with pytest.raises(ValueError, match="different config"):
        cv_module.start_run(load_config(path, ["optim.lr=0.1"]), tmp_path / "run")


@pytest.mark.slow
def test_one_fold_on_real_ravdess_end_to_end(shared_data, tmp_path, monkeypatch):
    """A tiny ROI-attention model on a RAVDESS subset: a complete run directory, a usable
    checkpoint, and a rerun that does no work."""
    path = write_config(
        tmp_path / "c.yaml",
        {"name": "ravdess", "root": str(shared_data / "ravdess"), "subset": 6},
        tmp_path / "store",
        model={"name": "roi_attention", "lstm_hidden": 8, "lstm_layers": 1, "projection_dim": 16, "attention_dim": 8},
        protocol="speaker-adaptive",
        folds=["fold1"],
        data={"batch_size": 16, "crop_seconds": 1.5, "time_mask": 0.1},
    )
    config = load_config(path)
    run_dir = tmp_path / "run"
    results = cv_module.run_cv(config, run_dir, progress=False)
    fold = results["fold1"]
    assert fold["test"] == 24 and fold["train"] + fold["val"] == 120  # 4 test actors of 24, 6 clips each
    labels = json.loads((run_dir / "metrics.json").read_text())["labels"]
    assert 0 <= fold["ua"] <= 100 and set(fold["recall"]) <= set(labels)

    checkpoint = load_checkpoint(run_dir / "folds" / "fold1" / "model")
    assert checkpoint.protocol == "speaker-adaptive" and checkpoint.inputs["audio"].frame_pooling == 4
    assert len(checkpoint.labels) == 8 and checkpoint.info["fold"] == "fold1"
    predictions = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 24 and all(abs(sum(p["probabilities"]) - 1) < 1e-4 for p in predictions)

    def no_training(*args, **kwargs):
        raise AssertionError("a finished fold was trained again")

    monkeypatch.setattr(cv_module.L, "Trainer", no_training)
    before = (run_dir / "folds" / "fold1" / "metrics.json").stat().st_mtime_ns
    assert cv_module.run_cv(config, run_dir, progress=False)["fold1"]["ua"] == fold["ua"]
    assert (run_dir / "folds" / "fold1" / "metrics.json").stat().st_mtime_ns == before


def test_ddp_with_two_cpu_processes(tone_corpus, tmp_path):
    """Lightning's DDP strategy (gloo on CPUs) through the CLI, as on a multi-GPU machine."""
    path = write_config(
        tmp_path / "c.yaml", {"name": "manifest", "root": str(tone_corpus)}, tmp_path / "store", folds=["fold1"]
    )
    run_dir = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "emotrace",
        "train",
        str(path),
        "trainer.strategy=ddp",
        "trainer.devices=2",
        "trainer.threads=1",
        "--fold",
        "fold1",
        "--run-dir",
        str(run_dir),
        "--no-progress",
    ]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "distributed_backend=gloo" in done.stdout + done.stderr
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in done.stdout + done.stderr
    assert json.loads((run_dir / "folds" / "fold1" / "metrics.json").read_text())["epochs"] == 2


@pytest.mark.parametrize("path", sorted((Path(__file__).parent.parent / "configs").rglob("*.yaml")), ids=str)
def test_every_shipped_config_loads_and_builds_its_model(path, monkeypatch):
    from emotrace.models import model_config

    for variable in ("EMOTRACE_DATA", "IEMOCAP_ROOT", "GLOVE_300D"):
        monkeypatch.setenv(variable, "/data")
    config = load_config(path)
    hparams = dict(config.model)
    name = hparams.pop("name")
    hparams.setdefault("modalities", tuple(config.inputs))
    dims = {modality: 16 for modality in config.inputs}
    layers = {m: len(spec.layers) for m, spec in config.inputs.items() if spec.layers and len(spec.layers) > 1}
    model_config(name, num_classes=4, input_dims=dims, num_layers_in=layers, **hparams)


def test_time_masks_write_the_fill_value_so_standardised_masks_are_blank():
    frames = np.full((2, 50, 3), 7.0, np.float32)
    inputs = {"audio": ModalityInputs({"u": frames}, frame_rate=50.0, stacked=True)}
    fill = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], np.float32)
    config = DataConfig(time_mask=0.4, time_mask_spans=2)
    masked = FeatureDataset(["u"], [0], inputs, config, augment=True, mask_fill={"audio": fill})[0]["audio"].numpy()
    changed = (masked != 7.0).all(axis=(0, 2))
    assert changed.any() and np.array_equal(masked[:, changed], np.repeat(fill[:, None], changed.sum(), axis=1))
    zeroed = FeatureDataset(["u"], [0], inputs, config, augment=True)[0]["audio"].numpy()
    assert (zeroed[:, (zeroed != 7.0).all(axis=(0, 2))] == 0.0).all()


def test_standardised_inputs_use_the_training_folds_moments_and_travel_in_the_checkpoint(tone_corpus, tmp_path):
    model = dict(TINY_LSTM, standardise_inputs=True)
    path = write_config(
        tmp_path / "c.yaml",
        {"name": "manifest", "root": str(tone_corpus)},
        tmp_path / "store",
        model=model,
        folds=["fold1"],
    )
    config = load_config(path)
    run_dir = tmp_path / "run"
    cv_module.run_cv(config, run_dir, progress=False)

    experiment = cv_module.prepare(config, progress=False)
    train_part, _, _ = experiment.corpus.folds[0].split(experiment.corpus.utterances)
    frames = np.concatenate([experiment.inputs["audio"].frames[u.id] for u in train_part], axis=1)  # (1, T, D)
    front_end = load_checkpoint(run_dir / "folds" / "fold1" / "model").model.encoders["audio"].front_end
    np.testing.assert_allclose(front_end.input_mean.numpy(), frames.mean(1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(front_end.input_std.numpy(), frames.std(1), rtol=1e-3, atol=1e-4)
    assert not np.allclose(front_end.input_mean.numpy(), 0.0)  # log-mel frames are far from zero-mean


def test_a_stage_starts_from_the_previous_stages_fold_models(tone_corpus, tmp_path, monkeypatch):
    first = write_config(
        tmp_path / "a.yaml", {"name": "manifest", "root": str(tone_corpus)}, tmp_path / "store", folds=["fold1"]
    )
    cv_module.run_cv(load_config(first), tmp_path / "stage1", progress=False)
    trained = load_checkpoint(tmp_path / "stage1" / "folds" / "fold1" / "model").model.state_dict()

    second = load_config(first, [f"init_from={tmp_path / 'stage1'}", "optim.max_epochs=1"])
    started = {}
    original = cv_module.EmotionModule.__init__

    def remember(self, model, *args, **kwargs):
        started.update({name: value.clone() for name, value in model.state_dict().items()})
        original(self, model, *args, **kwargs)

    monkeypatch.setattr(cv_module.EmotionModule, "__init__", remember)
    cv_module.run_cv(second, tmp_path / "stage2", progress=False)
    assert started.keys() == trained.keys()
    assert all(torch.equal(started[name], trained[name]) for name in trained)

    missing = load_config(first, [f"init_from={tmp_path / 'nowhere'}"])
    with pytest.raises(InputError, match="nowhere/folds/fold1/model: init_from has no model for fold fold1"):
        cv_module.run_cv(missing, tmp_path / "stage3", progress=False)
    other = load_config(first, [f"init_from={tmp_path / 'stage1'}", "model.lstm_hidden=4"])
    with pytest.raises(InputError, match="does not fit this model"):
        cv_module.run_cv(other, tmp_path / "stage4", progress=False)
    pooled = load_config(first, [f"init_from={tmp_path / 'stage1'}", "inputs.audio.frame_pooling=2"])
    with pytest.raises(InputError, match=r"was trained on labels .* and inputs"):
        cv_module.run_cv(pooled, tmp_path / "stage5", progress=False)


def test_a_stage_of_fewer_inputs_starts_its_branches_and_leaves_the_others_fresh(tmp_path):
    """Method B trained on audio alone, then given text: the audio encoder, the queries, the
    decoder and the readout start trained; the text branch starts as initialised."""
    from types import SimpleNamespace

    from emotrace.checkpoint import Checkpoint
    from emotrace.features.transforms import InputSpec
    from emotrace.models import build_model

    labels = ("angry", "sad")
    audio, text = InputSpec("logmel:bins=16", frame_pooling=4), InputSpec("glove-50d")
    sizes = {"projection_dim": 16, "num_heads": 2, "encoder_layers": 1, "decoder_layers": 1, "feedforward_dim": 32}

    def query_fusion(dims: dict[str, int], seed: int, **extra):
        torch.manual_seed(seed)
        return build_model("query_fusion", num_classes=2, input_dims=dims, modalities=list(dims), **{**sizes, **extra})

    def stage(name: str, model, inputs) -> Path:
        Checkpoint(model, labels, inputs, UTTERANCE_LEVEL).save(tmp_path / name / "folds" / "fold1" / "model")
        return tmp_path / name

    audio_stage = stage("audio", query_fusion({"audio": 16}, seed=1), {"audio": audio})
    both = SimpleNamespace(config=SimpleNamespace(inputs={"audio": audio, "text": text}), labels=labels)
    model = query_fusion({"audio": 16, "text": 50}, seed=2)
    fresh = {name: value.clone() for name, value in model.state_dict().items()}
    cv_module._initialise(model, both, audio_stage, "fold1")
    trained = load_checkpoint(audio_stage / "folds" / "fold1" / "model").model.state_dict()
    started = model.state_dict()
    assert all(torch.equal(started[name], value) for name, value in trained.items())
    others = [name for name in started if name not in trained]
    assert others and all(".text" in name or "text." in name for name in others)
    assert all(torch.equal(started[name], fresh[name]) for name in others)

    wider = stage("wider", query_fusion({"audio": 16}, seed=1, projection_dim=32), {"audio": audio})
    with pytest.raises(InputError, match="has no place of that shape here"):
        cv_module._initialise(query_fusion({"audio": 16, "text": 50}, seed=2), both, wider, "fold1")
    text_stage = stage("text", query_fusion({"text": 50}, seed=1), {"text": text})
    audio_only = SimpleNamespace(config=SimpleNamespace(inputs={"audio": audio}), labels=labels)
    with pytest.raises(InputError, match="was trained on labels"):
        cv_module._initialise(query_fusion({"audio": 16}, seed=2), audio_only, text_stage, "fold1")


def test_weight_averaging_keeps_the_moving_average_of_the_weights(tone_corpus, tmp_path, monkeypatch):
    """With ``optim.ema_decay`` the checkpoint holds the exponential moving average of the
    weights over the training steps, not the last step's weights."""
    path = write_config(
        tmp_path / "c.yaml",
        {"name": "manifest", "root": str(tone_corpus)},
        tmp_path / "store",
        folds=["fold1"],
        optim={"max_epochs": 2, "patience": 5, "lr": 3e-2, "ema_decay": 0.5},
    )
    steps = []

    def remember(self, outputs, batch, batch_index):
        steps.append({name: value.detach().clone() for name, value in self.model.state_dict().items()})

    monkeypatch.setattr(cv_module.EmotionModule, "on_train_batch_end", remember, raising=False)
    results = cv_module.run_cv(load_config(path), tmp_path / "run", progress=False)
    saved = load_checkpoint(tmp_path / "run" / "folds" / "fold1" / "model").model.state_dict()
    assert len(steps) >= 4
    name = "classifier.weight"
    ema = steps[0][name]
    averages = [ema]
    for step in steps[1:]:
        ema = 0.5 * ema + 0.5 * step[name]
        averages.append(ema)
    # the selected epoch's average: one of the end-of-epoch averages, never a raw step
    assert any(torch.allclose(saved[name], average, atol=1e-6) for average in averages)
    assert not any(torch.allclose(saved[name], step[name], atol=1e-6) for step in steps)
    assert results["fold1"]["epochs"] == 2


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the workers through /proc")
def test_killing_cv_ends_its_fold_workers(tone_corpus, tmp_path):
    path = write_config(
        tmp_path / "c.yaml",
        {"name": "manifest", "root": str(tone_corpus)},
        tmp_path / "store",
        folds=["fold1", "fold2"],
        optim={"max_epochs": 10_000, "patience": 10_000},
        trainer={"jobs": 2, "threads": 1},
    )
    run_dir = tmp_path / "run"
    parent = subprocess.Popen(
        [sys.executable, "-m", "emotrace", "cv", str(path), "-o", str(run_dir), "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while len(list(run_dir.glob("folds/*/log/version_0/metrics.csv"))) < 2:  # both folds are training
            assert time.monotonic() < deadline and parent.poll() is None, "the folds never started"
            time.sleep(0.5)
        workers = [pid for pid in _children(parent.pid) if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(workers) == 2
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in workers):
            assert time.monotonic() < deadline, "fold workers outlived emotrace cv"
            time.sleep(0.2)
    finally:
        parent.kill()
