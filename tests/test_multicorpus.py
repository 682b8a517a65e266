"""Several corpora trained together and scored on corpora never trained on: the masked loss,
combined folds, corpus-balanced sampling, the cross-corpus label protocols, a run end to end."""

from __future__ import annotations

import json
from collections import Counter
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from emotrace.checkpoint import load_checkpoint
from emotrace.corpora import load_corpus
from emotrace.corpora.combined import class_sets, combine, final_fold
from emotrace.corpora.folds import CROSS_CORPUS, SPEAKER_INDEPENDENT
from emotrace.errors import InputError
from emotrace.features.base import Features
from emotrace.features.pipeline import resolve_extractor
from emotrace.features.store import FeatureStore
from emotrace.features.transforms import InputSpec, model_frames
from emotrace.models.base import masked_cross_entropy
from emotrace.protocols import SPEAKER_ADAPTIVE, UTTERANCE_LEVEL
from emotrace.training import cv as cv_module
from emotrace.training.ablation import evaluate_speaker_sample, moment_sample
from emotrace.training.config import load_config
from emotrace.training.crosscorpus import (
    CROSS4,
    SHARED,
    class_masks,
    protocol_classes,
    protocol_metrics,
    restricted_argmax,
    swallowing,
)
from emotrace.training.data import BucketBatchSampler, corpus_balanced_weights, load_inputs
from test_corpora_ased_nemo import build_ased, build_nemo

pytestmark = pytest.mark.usefixtures("torch_single_thread")

UNION = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgusted", "surprised")


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("corpora")
    return {
        "ased": build_ased(root / "ased", speakers=5, sentences=2),
        "nemo": build_nemo(root / "nemo", speakers=("EB0", "IC0", "KD0", "KS0"), takes=2),
    }


# --------------------------------------------------------------------------- the masked loss


def test_a_class_a_corpus_lacks_gets_no_gradient_from_its_items() -> None:
    torch.manual_seed(0)
    logits = torch.randn(4, len(UNION), requires_grad=True)
    labels = torch.tensor([0, 3, 5, 7])
    ased = torch.tensor([label in ("neutral", "happy", "sad", "angry", "fearful") for label in UNION])
    nemo = ased | torch.tensor([label == "surprised" for label in UNION])
    mask = torch.stack([ased, ased, nemo, nemo])
    loss = masked_cross_entropy(logits, labels, mask, label_smoothing=0.1)
    loss.backward()
    gradient = logits.grad
    assert torch.isfinite(loss) and torch.isfinite(gradient).all()
    assert (gradient[~mask] == 0).all()  # calm, disgusted (and surprised for ASED) are never negatives
    assert (gradient[mask] != 0).all()
    surprised = UNION.index("surprised")
    assert gradient[0, surprised] == 0 and gradient[2, surprised] != 0


def test_the_masked_loss_is_cross_entropy_when_every_class_is_allowed() -> None:
    torch.manual_seed(1)
    logits, labels = torch.randn(6, 5), torch.tensor([0, 1, 2, 3, 4, 0])
    everything = torch.ones(6, 5, dtype=torch.bool)
    for smoothing in (0.0, 0.1):
        expected = F.cross_entropy(logits, labels, label_smoothing=smoothing)
        assert torch.allclose(masked_cross_entropy(logits, labels, everything, label_smoothing=smoothing), expected)
    weights = torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0])
    assert torch.allclose(
        masked_cross_entropy(logits, labels, everything, weights), F.cross_entropy(logits, labels, weight=weights)
    )
    # masking a class is the cross-entropy of the logits without it
    kept = [0, 1, 3, 4]
    mask = torch.tensor([[c in kept for c in range(5)]] * 6)
    labels_kept = torch.tensor([0, 1, 3, 4, 0, 1])
    reference = F.cross_entropy(logits[:, kept], torch.tensor([kept.index(y) for y in labels_kept.tolist()]))
    assert torch.allclose(masked_cross_entropy(logits, labels_kept, mask), reference)
    with pytest.raises(ValueError, match="masked out"):
        masked_cross_entropy(logits, torch.tensor([2] * 6), mask)


# --------------------------------------------------------------------------- combined corpora


def test_combined_corpora_keep_label_sets_and_speakers_apart(trees) -> None:
    parts = [load_corpus(name, root) for name, root in trees.items()]
    within = combine(parts)
    assert within.name == "ased+nemo" and within.label_set.classes == (
        "neutral",
        "happy",
        "sad",
        "angry",
        "fearful",
        "surprised",
    )
    assert class_sets(within) == {"ased": parts[0].label_set.classes, "nemo": parts[1].label_set.classes}
    assert {u.speaker.split("/")[0] for u in within.utterances} == {"ased", "nemo"}
    assert {u.dataset for u in within.utterances} == {"ased", "nemo"}
    assert within.folds.protocol == SPEAKER_INDEPENDENT
    assert [f.name for f in within.folds] == [f"fold{n}" for n in range(1, 6)]  # ASED 5 folds, nEMO 4
    for fold in within.folds:
        train, val, test = fold.split(within.utterances)
        tested = {"ased"} if fold.name == "fold5" else {"ased", "nemo"}  # nEMO trains whole in fold 5
        assert {u.dataset for u in test} == tested and {u.dataset for u in val} == {"ased", "nemo"}
        assert not {u.speaker for u in test} & {u.speaker for u in train + val}

    crossed = combine(parts, ["ased", "nemo"])
    assert crossed.folds.protocol == CROSS_CORPUS and [f.name for f in crossed.folds] == ["ased", "nemo"]
    for fold in crossed.folds:
        train, val, test = fold.split(crossed.utterances)
        assert {u.dataset for u in test} == {fold.name}
        assert {u.dataset for u in train} == {u.dataset for u in val} == {"ased", "nemo"} - {fold.name}
        assert len(test) == sum(1 for u in crossed.utterances if u.dataset == fold.name)
    final = final_fold(crossed)
    assert not final.test and {v.split("/")[0] for v in final.val} == {"ased", "nemo"}
    with pytest.raises(InputError, match="once"):
        combine([parts[0], parts[0]])
    with pytest.raises(InputError, match="no corpus to train"):
        combine(parts, ["ased+nemo"])


# --------------------------------------------------------------------------- cross-corpus label protocols


def test_cross_corpus_label_protocols_map_and_restrict_predictions() -> None:
    ravdess8, nemo6 = UNION, ("neutral", "happy", "sad", "angry", "fearful", "surprised")
    ased5 = ("neutral", "happy", "sad", "angry", "fearful")
    assert protocol_classes(CROSS4, ravdess8, nemo6) == ("neutral", "happy", "sad", "angry")
    assert protocol_classes(SHARED, ravdess8, nemo6) == nemo6
    assert protocol_classes(SHARED, nemo6, ravdess8) == nemo6  # calm and disgusted are not shared
    assert protocol_classes(SHARED, ased5, nemo6) == ased5
    assert protocol_classes(CROSS4, ("neutral", "sad", "angry"), nemo6) == ("neutral", "sad", "angry")
    assert class_masks(UNION, {"ased": ased5}).tolist() == [[c in ased5 for c in UNION]]

    vocabulary = ("neutral", "calm", "happy", "sad", "angry", "fearful")
    probabilities = np.array(
        [
            [0.10, 0.60, 0.05, 0.05, 0.10, 0.10],  # calm wins, neutral is the best of the four
            [0.05, 0.05, 0.10, 0.20, 0.10, 0.50],  # fearful wins, sad is the best of the four
            [0.10, 0.00, 0.50, 0.10, 0.20, 0.10],
            [0.30, 0.00, 0.10, 0.10, 0.40, 0.10],
            [0.10, 0.00, 0.10, 0.10, 0.10, 0.60],  # a fearful clip: not scored under the four classes
        ]
    )
    four = protocol_classes(CROSS4, vocabulary, ("neutral", "happy", "sad", "angry", "fearful"))
    assert restricted_argmax(probabilities, vocabulary, four).tolist() == [0, 3, 2, 4, 0]
    labels = ["neutral", "sad", "happy", "neutral", "fearful"]
    metrics = protocol_metrics(labels, probabilities, vocabulary, four)
    assert metrics["items"] == 4 and metrics["classes"] == list(four)
    assert metrics["wa"] == 75.0 and metrics["ua"] == pytest.approx(100 * (0.5 + 1 + 1) / 3)
    assert metrics["predicted_shares"] == {"neutral": 25.0, "happy": 25.0, "sad": 25.0, "angry": 25.0}
    shared = protocol_metrics(labels, probabilities, vocabulary, ("neutral", "happy", "sad", "angry", "fearful"))
    assert shared["items"] == 5 and shared["predicted_shares"]["fearful"] == 40.0
    assert protocol_metrics(["calm"], probabilities[:1], vocabulary, four) == {"classes": list(four), "items": 0}
    assert swallowing({"x": {"predicted_shares_all": {"sad": 70.0, "happy": 30.0}}}) == [
        "x: 70% of its clips predicted sad"
    ]


# --------------------------------------------------------------------------- sampling and normalisation


def test_corpus_balanced_sampling_draws_each_corpus_equally_often() -> None:
    corpora = [0] * 90 + [1] * 10
    labels = [0] * 60 + [1] * 30 + [0] * 5 + [2] * 5
    weights = corpus_balanced_weights(corpora, labels, balance_classes=False)
    sampler = BucketBatchSampler([5] * 100, 10, seed=3, weights=weights)
    drawn = [corpora[i] for epoch in range(20) for batch in (sampler.set_epoch(epoch), list(sampler))[1] for i in batch]
    assert abs(Counter(drawn)[1] / len(drawn) - 0.5) < 0.05 and len(drawn) == 20 * 100
    by_class = corpus_balanced_weights(corpora, labels, balance_classes=True)
    total = {key: 0.0 for key in ((0, 0), (0, 1), (1, 0), (1, 2))}
    for c, y, w in zip(corpora, labels, by_class):
        total[(c, y)] += w
    assert all(value == pytest.approx(0.5) for value in total.values())  # each corpus 1, split over its classes


def test_per_utterance_normalisation_standardises_each_clip_before_pooling() -> None:
    rng = np.random.default_rng(0)
    data = (rng.normal(3.0, 2.0, (3, 40, 5))).astype(np.float32)
    features = Features(data, frame_rate=50.0, layers=(0, 1, 2))
    frames = model_frames(features, InputSpec("x", layers=(1, 2), utterance_norm=True))
    assert frames.shape == (2, 40, 5)
    assert np.allclose(frames.mean(1), 0, atol=1e-5) and np.allclose(frames.std(1), 1, atol=1e-4)
    shifted = Features(data * 4.0 + 7.0, frame_rate=50.0, layers=(0, 1, 2))  # another gain and offset
    assert np.allclose(model_frames(shifted, InputSpec("x", layers=(1, 2), utterance_norm=True)), frames, atol=1e-4)
    assert not np.allclose(model_frames(features, InputSpec("x", layers=(1, 2))), frames)


# --------------------------------------------------------------------------- end to end


def tiny_config(trees: dict[str, Path], tmp_path: Path, name: str, **settings) -> Path:
    """A config of a tiny model over the miniature corpora, written to ``tmp_path``: an LSTM
    over pooled log-mel frames, one epoch, unless ``settings`` say otherwise."""
    config = {
        "name": name,
        "corpora": [{"name": corpus, "root": str(root)} for corpus, root in trees.items()],
        "inputs": {"audio": {"features": "logmel", "frame_pooling": 4}},
        "model": {"name": "lstm", "lstm_hidden": 8, "lstm_layers": 1, "projection_dim": 16},
        "store": str(tmp_path / "store"),
        "data": {"batch_size": 8},
        "optim": {"max_epochs": 1, "patience": 5},
        **settings,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_leave_one_corpus_out_run_end_to_end(trees, tmp_path) -> None:
    config_path = tiny_config(
        trees,
        tmp_path,
        "tiny-loco",
        held_out=["ased", "nemo"],
        model={
            "name": "roi_attention",
            "lstm_hidden": 8,
            "lstm_layers": 1,
            "projection_dim": 16,
            "attention_dim": 8,
            "label_smoothing": 0.1,
        },
        data={"batch_size": 8, "corpus_balanced": True},
        optim={"max_epochs": 2, "patience": 5, "lr": 3e-3},
    )
    config = load_config(config_path)
    run_dir = tmp_path / "run"
    results = cv_module.run_cv(config, run_dir, progress=False)
    assert set(results) == {"ased", "nemo"}
    assert results["ased"]["test"] == 50 and results["nemo"]["test"] == 48

    checkpoint = load_checkpoint(run_dir / "folds" / "ased" / "model")
    assert checkpoint.labels == ("neutral", "happy", "sad", "angry", "fearful", "surprised")
    assert checkpoint.info["trained_on"] == ["nemo"] and checkpoint.info["folds_protocol"] == CROSS_CORPUS
    ased = results["ased"]["cross_corpus"]["ased"]
    assert ased["cross4"]["classes"] == ["neutral", "happy", "sad", "angry"] and ased["cross4"]["items"] == 40
    assert ased["shared"]["classes"] == ["neutral", "happy", "sad", "angry", "fearful"]
    assert results["ased"]["ua"] == ased["cross4"]["ua"]  # the headline is the four-class protocol
    nemo = results["nemo"]["cross_corpus"]["nemo"]
    assert nemo["shared"]["classes"] == ["neutral", "happy", "sad", "angry", "fearful"]  # ASED has no surprised
    assert sum(nemo["predicted_shares_all"].values()) == pytest.approx(100.0)

    summary = json.loads((run_dir / "metrics.json").read_text())
    assert summary["corpus"] == "ased+nemo" and summary["folds_protocol"] == CROSS_CORPUS
    assert summary["pooled"]["classes"] == ["neutral", "happy", "sad", "angry"]
    assert summary["pooled"]["count"] == 40 + 32 and summary["options"]["corpus-balanced sampling"] is True
    report = (run_dir / "report.md").read_text()
    assert "4-class acc" in report and "| ased | nemo | ased |" in report
    rows = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    assert {row["corpus"] for row in rows} == {"ased", "nemo"} and len(rows) == 98
    assert (run_dir / "confusion.png").stat().st_size > 0


def test_corpora_trained_together_are_scored_each_in_its_own_classes(trees, tmp_path) -> None:
    config_path = tiny_config(trees, tmp_path, "tiny-within", folds=["fold1"])
    run_dir = tmp_path / "run"
    fold = cv_module.run_cv(load_config(config_path), run_dir, progress=False)["fold1"]
    assert set(fold["per_corpus"]) == {"ased", "nemo"} and "cross_corpus" not in fold
    assert fold["per_corpus"]["ased"]["classes"] == ["neutral", "happy", "sad", "angry", "fearful"]
    rows = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    assert all(row["prediction"] != "surprised" for row in rows if row["corpus"] == "ased")
    summary = json.loads((run_dir / "metrics.json").read_text())
    assert set(summary["pooled"]["per_corpus"]) == {"ased", "nemo"}
    assert "Per corpus" in (run_dir / "report.md").read_text()
    model_dir = cv_module.train_final(load_config(config_path), run_dir, progress=False)
    info = load_checkpoint(model_dir).info
    assert {speaker.split("/")[0] for speaker in info["val_speakers"]} == {"ased", "nemo"}


def test_speaker_adaptive_run_tested_again_with_moments_from_a_sample_of_clips(trees, tmp_path) -> None:
    config_path = tiny_config(trees, tmp_path, "tiny-loco-adaptive", held_out=["ased"], protocol="speaker-adaptive")
    run_dir = tmp_path / "run"
    ran = cv_module.run_cv(load_config(config_path), run_dir, progress=False)["ased"]["cross_corpus"]["ased"]

    every_clip = evaluate_speaker_sample(run_dir)["per_fold"]["ased"]
    assert every_clip["moment_clips"] == 50
    assert every_clip["cross_corpus"]["ased"]["cross4"]["ua"] == pytest.approx(ran["cross4"]["ua"])
    assert every_clip["cross_corpus"]["ased"]["cross4"]["items"] == ran["cross4"]["items"] == 40

    neutral = evaluate_speaker_sample(run_dir, emotion="neutral")["per_fold"]["ased"]
    assert neutral["moment_clips"] == 10  # 5 speakers x 2 neutral sentences; every clip still scored
    assert neutral["cross_corpus"]["ased"]["cross4"]["items"] == 40
    assert evaluate_speaker_sample(run_dir, clips=3, seed=1)["per_fold"]["ased"]["moment_clips"] == 15
    with pytest.raises(ValueError, match="'netural' is not a class"):
        evaluate_speaker_sample(run_dir, emotion="netural")
    with pytest.raises(ValueError, match="at least 1"):
        evaluate_speaker_sample(run_dir, clips=0)

    config = load_config(config_path)
    ased = [u for u in cv_module.load_experiment_corpus(config).utterances if u.dataset == "ased"]
    neutral_clips = [u for u in ased if u.label == "neutral"]
    extractor = resolve_extractor("logmel")
    with FeatureStore.open(config.store_root(), extractor.name, extractor.config(), extractor.version) as store:
        read = partial(load_inputs, ased, {"audio": store}, config.inputs)
        whole = read(SPEAKER_ADAPTIVE)["audio"].frames
        from_neutral = read(SPEAKER_ADAPTIVE, moments_from=neutral_clips)["audio"].frames
        from_all = read(SPEAKER_ADAPTIVE, moments_from=ased)["audio"].frames
        with pytest.raises(ValueError, match="for the speaker-adaptive protocol"):
            read(UTTERANCE_LEVEL, moments_from=neutral_clips)
    assert all(np.array_equal(whole[u.id], from_all[u.id]) for u in ased)
    assert not any(np.allclose(whole[u.id], from_neutral[u.id]) for u in ased)

    utterance_level = tmp_path / "u.yaml"
    utterance_level.write_text(config_path.read_text().replace("speaker-adaptive", "utterance-level"))
    (run_dir / "config.yaml").write_text(utterance_level.read_text())
    with pytest.raises(ValueError, match="only a speaker-adaptive run"):
        evaluate_speaker_sample(run_dir)


def test_moment_samples_draw_per_speaker_and_name_the_speakers_without_the_emotion(trees) -> None:
    corpus = load_corpus("ased", trees["ased"])
    rng = np.random.default_rng(0)
    speakers = {u.speaker for u in corpus.utterances}
    few, none_lacking = moment_sample(corpus.utterances, 2, None, rng)
    assert none_lacking == []
    again, _ = moment_sample(corpus.utterances, 2, None, np.random.default_rng(0))
    other, _ = moment_sample(corpus.utterances, 2, None, np.random.default_rng(1))
    assert again == few and other != few
    assert Counter(u.speaker for u in few) == dict.fromkeys(speakers, 2)
    one, _ = moment_sample(corpus.utterances, None, "one", rng)
    by_speaker: dict[str, set[str]] = {}
    for utterance in one:
        by_speaker.setdefault(utterance.speaker, set()).add(utterance.label)
    assert set(by_speaker) == speakers and all(len(labels) == 1 for labels in by_speaker.values())
    neutral_speaker = next(u.speaker for u in corpus.utterances if u.label == "neutral")
    without_neutral = [u for u in corpus.utterances if not (u.speaker == neutral_speaker and u.label == "neutral")]
    neutral, lacking = moment_sample(without_neutral, None, "neutral", rng)
    assert lacking == [neutral_speaker]
    assert {u.label for u in neutral if u.speaker != neutral_speaker} == {"neutral"}
    assert [u for u in neutral if u.speaker == neutral_speaker] == [
        u for u in without_neutral if u.speaker == neutral_speaker
    ]
