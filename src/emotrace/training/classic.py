"""Classic systems: scikit-learn classifiers on pooled features, cross-validated per fold.

They are the baselines a new model must beat, and cheap sanity checks of a feature store:

* ``"svm"``: an RBF SVM on the mean over frames, i.e. the functionals themselves for
  utterance-level extractors (``egemaps-functionals``: 88 values, one frame per clip);
* ``"probe"``: a linear probe, logistic regression on the mean and standard deviation of
  encoder frames over time (e.g. ``whisper-base``).

Several layers are read as the mean of their pooled statistics. Inputs are standardised
with statistics of the training set only, and classes are weighted by inverse frequency
(the headline figure is UA). The candidates are every value of ``C`` in the system's grid
and, when asked (``choose_layer``), each of the given layers alone as well as their mean.
Each candidate is fitted on the fold's training speakers, the one with the best UA on its
validation speakers is kept, and that very model is tested: there is no refit on training
plus validation, so the validation speakers never shape the weights that are tested.

Protocols (:mod:`emotrace.protocols`): *utterance-level* uses the features as
they are; *speaker-adaptive* first normalises every frame by its speaker's moments over
all of that speaker's recordings in the corpus (test speakers included, labels unused);
for functionals the "frames" are the utterances. Mean and standard deviation over frames
commute with that per-dimension affine map, so features are read once, pooled as they are
read, and normalised after pooling: only ``(layers, 2 * dims)`` numbers per utterance are
ever held (Whisper-base frames of all RAVDESS clips would take about 3 GB).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from emotrace.corpora import CorpusData, Utterance
from emotrace.errors import InputError
from emotrace.features.normalization import MomentAccumulator
from emotrace.features.store import FeatureStore
from emotrace.protocols import SPEAKER_ADAPTIVE, check_protocol
from emotrace.training.metrics import classification_metrics, summarise_folds

#: The values of ``C`` each system is tuned over.
GRIDS: dict[str, tuple[float, ...]] = {
    "svm": (0.1, 1.0, 10.0, 100.0),
    "probe": (0.001, 0.01, 0.1, 1.0),
}
#: Entries read from the store at a time: enough for fast reads, little memory.
READ_BATCH = 64


def run_classic(
    system: str,
    store: FeatureStore,
    corpus: CorpusData,
    protocol: str,
    *,
    layers: Sequence[int] | None = None,
    choose_layer: bool = False,
    folds: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Cross-validate ``system`` (``"svm"`` or ``"probe"``) on ``corpus``'s features in ``store``.

    ``layers`` are the encoder layers read, averaged (None: all the store holds);
    ``choose_layer`` lets validation pick one of them alone instead; ``folds`` names the
    folds to run (None: all). Returns per-fold metrics (``per_fold``), the
    hyperparameters chosen on validation (``chosen``), pooled test ``predictions``, their
    ``pooled`` metrics and the ``summary`` over folds.
    """
    if system not in GRIDS:
        raise ValueError(f"unknown classic system {system!r}; choose from {', '.join(GRIDS)}")
    check_protocol(protocol)
    selected = [fold for fold in corpus.folds if folds is None or fold.name in folds]
    unknown = sorted(set(folds or ()) - {fold.name for fold in selected})
    if unknown or not selected:
        raise ValueError(f"no folds {unknown or list(folds or ())} in {corpus.name}")
    labels = corpus.label_set.classes
    stored_layers, means, stds = pooled_features(store, corpus.utterances, protocol)
    pooled = means if system == "svm" else np.concatenate([means, stds], axis=2)
    candidates = layer_candidates(stored_layers, layers, choose_layer, store)
    row_of = {utterance.id: row for row, utterance in enumerate(corpus.utterances)}
    targets = np.array([corpus.label_set.index(u.label) for u in corpus.utterances])

    per_fold: dict[str, dict[str, Any]] = {}
    chosen: dict[str, dict[str, Any]] = {}
    predictions: list[dict[str, Any]] = []
    tested: list[int] = []
    predicted_all: list[int] = []
    for fold in selected:
        train, val, test = ([row_of[u.id] for u in part] for part in fold.split(corpus.utterances))
        if not (train and val and test):
            raise ValueError(
                f"fold {fold.name} has {len(train)} training, {len(val)} validation and {len(test)} "
                "test utterances: classic systems need all three"
            )
        best_score, best = -1.0, None
        for layer_set, indices in candidates:
            inputs = pooled[:, indices].mean(1)
            for c in GRIDS[system]:
                model = _classifier(system, c).fit(inputs[train], targets[train])
                score = 100 * balanced_accuracy_score(targets[val], model.predict(inputs[val]))
                if score > best_score:
                    best_score, best = score, (model, inputs, {"C": c, "layers": list(layer_set)})
        model, inputs, hyperparameters = best
        predicted = model.predict(inputs[test])
        per_fold[fold.name] = classification_metrics(targets[test], predicted, labels)
        chosen[fold.name] = {**hyperparameters, "val_ua": best_score}
        tested += test
        predicted_all += predicted.tolist()
        predictions += [
            {
                "id": corpus.utterances[row].id,
                "speaker": corpus.utterances[row].speaker,
                "fold": fold.name,
                "label": labels[targets[row]],
                "prediction": labels[p],
            }
            for row, p in zip(test, predicted)
        ]
    return {
        "system": system,
        "protocol": protocol,
        "labels": list(labels),
        "per_fold": per_fold,
        "chosen": chosen,
        "predictions": predictions,
        "pooled": classification_metrics(targets[tested], predicted_all, labels),
        "summary": summarise_folds(per_fold, labels),
    }


def pooled_features(
    store: FeatureStore, utterances: Sequence[Utterance], protocol: str
) -> tuple[tuple[int, ...], np.ndarray, np.ndarray]:
    """``(layers, means, stds)``: per utterance and layer, mean and std over frames.

    ``means`` and ``stds`` are ``(utterances, layers, dims)`` float32. Under the
    speaker-adaptive protocol they are those of the speaker-normalised frames.
    """
    ids = [utterance.id for utterance in utterances]
    missing = [utt_id for utt_id in ids if utt_id not in store]
    if missing:
        raise InputError(
            store.directory,
            f"has no features for {len(missing)} utterances (e.g. {missing[:3]}); run `emotrace extract` for them",
        )
    adaptive = check_protocol(protocol) == SPEAKER_ADAPTIVE
    accumulators: dict[str, MomentAccumulator] = {}
    means: list[np.ndarray] = []
    stds: list[np.ndarray] = []
    layers: tuple[int, ...] = ()
    for start in range(0, len(ids), READ_BATCH):
        batch = utterances[start : start + READ_BATCH]
        for utterance, features in zip(batch, store.get_many(ids[start : start + READ_BATCH])):
            if features.data.shape[1] == 0:
                raise InputError(store.directory, f"entry {utterance.id} has no frames")
            layers = features.layers
            means.append(features.data.mean(1, dtype=np.float64))
            stds.append(features.data.std(1, dtype=np.float64))
            if adaptive:
                accumulators.setdefault(utterance.speaker, MomentAccumulator()).add(features.data)
    mean, std = np.stack(means), np.stack(stds)
    if adaptive:
        moments = {speaker: accumulator.moments() for speaker, accumulator in accumulators.items()}
        centre = np.stack([moments[u.speaker].mean for u in utterances])
        scale = np.stack([moments[u.speaker].std for u in utterances])
        mean, std = (mean - centre) / scale, std / scale
    return layers, mean.astype(np.float32), std.astype(np.float32)


def layer_candidates(
    stored: tuple[int, ...], layers: Sequence[int] | None, choose: bool, store: FeatureStore
) -> list[tuple[tuple[int, ...], list[int]]]:
    """``(layers, their positions in the store)`` to choose from: all together, then (when
    ``choose``) each alone."""
    wanted = tuple(stored if layers is None else layers)
    missing = [layer for layer in wanted if layer not in stored]
    if missing or not wanted:
        raise InputError(store.directory, f"holds layers {list(stored)}, not {missing or 'none'}")
    candidates = [(wanted, [stored.index(layer) for layer in wanted])]
    if choose and len(wanted) > 1:
        candidates += [((layer,), [stored.index(layer)]) for layer in wanted]
    return candidates


def _classifier(system: str, c: float) -> Pipeline:
    if system == "svm":
        return make_pipeline(StandardScaler(), SVC(C=c, gamma="scale", class_weight="balanced"))
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, class_weight="balanced"))
