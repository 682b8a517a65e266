"""Classic systems on a synthetic store: they learn, the protocols differ as they should,
and validation, never test, picks the hyperparameters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emotrace.corpora import CorpusData, Utterance
from emotrace.corpora.folds import Fold, Folds
from emotrace.errors import InputError
from emotrace.features.base import Features
from emotrace.features.normalization import speaker_moments
from emotrace.features.store import Entry, FeatureStore
from emotrace.labels import LabelSet
from emotrace.training.classic import pooled_features, run_classic

LABELS = LabelSet("two", ("neutral", "angry"))
SPEAKERS = [f"s{n}" for n in range(6)]
SHIFT = 3.0
FOLDS = Folds(
    "speaker-independent",
    "3 folds of 2 test speakers",
    tuple(Fold(f"fold{k}", (SPEAKERS[2 * k], SPEAKERS[2 * k + 1]), (SPEAKERS[(2 * k + 2) % 6],)) for k in range(3)),
)


def corpus_and_store(
    root: Path, *, frames: int, offset: float = 0.0, per_speaker: int = 20, layers: tuple[int, ...] = (0,)
) -> tuple[CorpusData, FeatureStore]:
    """Two classes that differ by +-SHIFT in dimension 0 of the last layer (only), unit frame
    noise, and a speaker offset of ``offset * speaker number`` in every dimension."""
    rng = np.random.default_rng(0)
    utterances, entries = [], []
    for number, speaker in enumerate(SPEAKERS):
        for index in range(per_speaker):
            label = LABELS.classes[index % 2]
            data = rng.normal(0.0, 1.0, (len(layers), frames, 4)) + offset * number
            data[-1, :, 0] += SHIFT if label == "angry" else -SHIFT
            utt_id = f"{speaker}-{index}"
            utterances.append(Utterance(utt_id, None, label, speaker))
            entries.append(Entry(utt_id, utt_id, Features(data.astype(np.float32), 50.0, layers)))
    store = FeatureStore.open(root, "synthetic", {"frames": frames})
    store.put_many(entries)
    return CorpusData("synthetic", LABELS, tuple(utterances), FOLDS, {}), store


@pytest.mark.parametrize(("system", "frames"), [("svm", 1), ("probe", 8)])
def test_both_systems_learn_a_separable_problem(tmp_path: Path, system: str, frames: int) -> None:
    corpus, store = corpus_and_store(tmp_path, frames=frames)
    result = run_classic(system, store, corpus, "utterance-level")
    assert result["summary"]["folds"] == 3 and result["summary"]["ua_mean"] > 90
    assert len(result["predictions"]) == len(corpus.utterances)
    assert result["pooled"]["count"] == 120 and set(result["chosen"]) == {"fold0", "fold1", "fold2"}


def test_speaker_adaptive_removes_a_speaker_offset(tmp_path: Path) -> None:
    corpus, store = corpus_and_store(tmp_path, frames=1, offset=3.0)
    utterance_level = run_classic("svm", store, corpus, "utterance-level")["summary"]["ua_mean"]
    adaptive = run_classic("svm", store, corpus, "speaker-adaptive")["summary"]["ua_mean"]
    assert utterance_level < 75 and adaptive > 90


def test_pooling_after_normalising_equals_normalising_frames_first(tmp_path: Path) -> None:
    corpus, store = corpus_and_store(tmp_path, frames=5, offset=1.0, per_speaker=3, layers=(0, 1))
    layers, means, stds = pooled_features(store, corpus.utterances, "speaker-adaptive")
    features = {u.id: store.get(u.id).data for u in corpus.utterances}
    moments = speaker_moments((u.speaker, features[u.id]) for u in corpus.utterances)
    for row, utterance in enumerate(corpus.utterances):
        frames = moments[utterance.speaker].normalise(features[utterance.id])
        np.testing.assert_allclose(means[row], frames.mean(1), atol=1e-5)
        np.testing.assert_allclose(stds[row], frames.std(1), atol=1e-5)
    assert layers == (0, 1) and means.shape == (18, 2, 4)


def test_validation_not_test_picks_the_layer_and_c(tmp_path: Path) -> None:
    corpus, store = corpus_and_store(tmp_path, frames=4, layers=(0, 1))
    # the last layer knows the label on training and validation speakers only, layer 0 on
    # test speakers only: a probe tuned on test would pick layer 0
    fold = FOLDS[0]
    entries = []
    for utterance in corpus.utterances:
        data = store.get(utterance.id).data.copy()
        sign = 1.0 if utterance.label == "angry" else -1.0
        if utterance.speaker in fold.test:
            data[-1, :, 0] -= sign * SHIFT
            data[0, :, 1] += sign * SHIFT
        entries.append(Entry(utterance.id, utterance.id, Features(data, 50.0, (0, 1))))
    store.put_many(entries)
    result = run_classic("probe", store, corpus, "utterance-level", layers=[0, 1], choose_layer=True, folds=["fold0"])
    chosen = result["chosen"]["fold0"]
    assert chosen["layers"] != [0] and chosen["val_ua"] > 90 and result["per_fold"]["fold0"]["ua"] < 75
    assert chosen["C"] in (0.001, 0.01, 0.1, 1.0) and list(result["per_fold"]) == ["fold0"]


def test_bad_requests_are_clear_errors(tmp_path: Path) -> None:
    corpus, store = corpus_and_store(tmp_path, frames=1, per_speaker=2)
    with pytest.raises(InputError, match="holds layers \\[0\\], not \\[7\\]"):
        run_classic("probe", store, corpus, "utterance-level", layers=[7])
    with pytest.raises(ValueError, match="unknown classic system 'tree'"):
        run_classic("tree", store, corpus, "utterance-level")
    with pytest.raises(ValueError, match="unknown protocol"):
        run_classic("svm", store, corpus, "speaker-dependent")
    with pytest.raises(ValueError, match="no folds \\['fold9'\\]"):
        run_classic("svm", store, corpus, "utterance-level", folds=["fold9"])
    extra = Utterance("unseen", None, "angry", "s0")
    bigger = CorpusData("synthetic", LABELS, (*corpus.utterances, extra), FOLDS, {})
    with pytest.raises(InputError, match="has no features for 1 utterances"):
        run_classic("svm", store, bigger, "utterance-level")
