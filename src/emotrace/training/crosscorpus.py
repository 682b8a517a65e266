"""Scoring a model on corpora it did not train on, and on several corpora at once.

A model trained on some corpora outputs their union of classes; a corpus it never saw may
have other classes. Two label protocols score it, each restricting the prediction to the
protocol's classes (the argmax over those classes only) and scoring the test items whose
label is among them:

* ``cross4``: EmoBox's cross-corpus track, the four classes most corpora share (neutral,
  happy, sad, angry), as far as both sides have them;
* ``shared``: every class the test corpus shares with the training corpora.

Each also reports ``predicted_shares``, the share of items predicted as each class, and
the unrestricted prediction's shares over the whole output vocabulary (what a user of the
model sees): a class that swallows a corpus shows there at once.

Within-corpus test items of a multi-corpus model are scored in their own corpus's classes
(the argmax over those), exactly as a model trained on that corpus alone would be.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from emotrace.corpora import Utterance
from emotrace.labels import CROSS_CORPUS_4
from emotrace.training.metrics import classification_metrics

CROSS4, SHARED = "cross4", "shared"
#: the share of a corpus's items predicted as one class beyond which a report warns
SWALLOW_SHARE = 50.0


def class_masks(vocabulary: Sequence[str], class_sets: Mapping[str, Sequence[str]]) -> np.ndarray:
    """``(corpora, classes)`` bool: which of ``vocabulary`` each corpus has, in ``class_sets`` order."""
    return np.array([[label in classes for label in vocabulary] for classes in class_sets.values()], dtype=bool)


def restricted_argmax(probabilities: np.ndarray, vocabulary: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """Per row, the index into ``vocabulary`` of the most probable class among ``classes``."""
    allowed = np.array([label in classes for label in vocabulary])
    if not allowed.any():
        raise ValueError(f"none of {list(classes)} is among the model's classes {list(vocabulary)}")
    return np.where(allowed, probabilities, -np.inf).argmax(1)


def protocol_classes(protocol: str, train_classes: Sequence[str], test_classes: Sequence[str]) -> tuple[str, ...]:
    """The classes ``protocol`` scores, in canonical order: those both sides have (of the four, for cross4)."""
    both = [label for label in train_classes if label in test_classes]
    if protocol == CROSS4:
        return tuple(label for label in CROSS_CORPUS_4.classes if label in both)
    if protocol == SHARED:
        return tuple(both)
    raise ValueError(f"unknown cross-corpus protocol {protocol!r}; use {CROSS4} or {SHARED}")


def protocol_metrics(
    labels: Sequence[str], probabilities: np.ndarray, vocabulary: Sequence[str], classes: Sequence[str]
) -> dict[str, Any]:
    """Metrics of the items whose label is in ``classes``, predictions restricted to ``classes``.

    Returns :func:`classification_metrics` over ``classes`` (indices in their order) plus
    ``classes``, ``predicted_shares`` (percent of those items per predicted class) and
    ``items``; ``{"classes": ..., "items": 0}`` when no item has such a label.
    """
    keep = np.array([label in classes for label in labels])
    if not keep.any():
        return {"classes": list(classes), "items": 0}
    predicted = restricted_argmax(probabilities[keep], vocabulary, classes)
    position = {label: i for i, label in enumerate(classes)}
    y_true = [position[label] for label, kept in zip(labels, keep) if kept]
    y_pred = [position[vocabulary[p]] for p in predicted]
    metrics = classification_metrics(y_true, y_pred, classes)
    return {**metrics, "classes": list(classes), "items": int(keep.sum()), "predicted_shares": shares(y_pred, classes)}


def shares(predicted: Sequence[int], classes: Sequence[str]) -> dict[str, float]:
    """Percent of ``predicted`` (indices into ``classes``) per class, every class listed."""
    counts = Counter(predicted)
    return {label: 100.0 * counts[i] / max(1, len(predicted)) for i, label in enumerate(classes)}


def cross_corpus_breakdown(
    rows: Sequence[Mapping[str, Any]],
    vocabulary: Sequence[str],
    train_classes: Sequence[str],
    test_classes: Mapping[str, Sequence[str]],
) -> dict[str, dict[str, Any]]:
    """Per test corpus (``row["corpus"]``): both protocols' metrics and the unrestricted shares.

    ``rows`` hold ``label``, ``corpus`` and ``probabilities`` over ``vocabulary``.
    """
    result = {}
    for corpus in dict.fromkeys(row["corpus"] for row in rows):
        mine = [row for row in rows if row["corpus"] == corpus]
        labels = [row["label"] for row in mine]
        probabilities = np.array([row["probabilities"] for row in mine], dtype=np.float64)
        entry: dict[str, Any] = {"items": len(mine)}
        for protocol in (CROSS4, SHARED):
            classes = protocol_classes(protocol, train_classes, test_classes[corpus])
            entry[protocol] = protocol_metrics(labels, probabilities, vocabulary, classes)
        entry["predicted_shares_all"] = shares(probabilities.argmax(1).tolist(), vocabulary)
        result[corpus] = entry
    return result


def within_corpus_breakdown(
    rows: Sequence[Mapping[str, Any]], class_sets: Mapping[str, Sequence[str]]
) -> dict[str, dict[str, Any]]:
    """Per corpus, metrics in its own classes of rows whose ``prediction`` was made among them."""
    result = {}
    for corpus in dict.fromkeys(row["corpus"] for row in rows):
        classes = list(class_sets[corpus])
        mine = [row for row in rows if row["corpus"] == corpus]
        y_pred = [classes.index(row["prediction"]) for row in mine]
        metrics = classification_metrics([classes.index(row["label"]) for row in mine], y_pred, classes)
        result[corpus] = {**metrics, "classes": classes, "predicted_shares": shares(y_pred, classes)}
    return result


def swallowing(breakdown: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Warnings for corpora where one class took more than :data:`SWALLOW_SHARE` percent of the
    unrestricted predictions."""
    warnings = []
    for corpus, entry in breakdown.items():
        label, share = max(entry.get("predicted_shares_all", {}).items(), key=lambda item: item[1], default=("", 0.0))
        if share > SWALLOW_SHARE:
            warnings.append(f"{corpus}: {share:.0f}% of its clips predicted {label}")
    return warnings


def prediction_rows(
    utterances: Sequence[Utterance],
    fold: str,
    probabilities: np.ndarray,
    vocabulary: Sequence[str],
    sets: Mapping[str, Sequence[str]] | None = None,
    trained_on: Collection[str] = (),
) -> list[dict[str, Any]]:
    """One row per test utterance (``predictions.jsonl``). With several corpora (``sets``:
    corpus -> classes), ``corpus`` names each one's, and an utterance of a corpus the model
    trained on (``trained_on``) is predicted among that corpus's classes, as a model of that
    corpus alone would be; the others get the unrestricted prediction."""
    predictions = probabilities.argmax(1)
    for corpus, classes in (sets or {}).items():
        mine = [i for i, u in enumerate(utterances) if u.dataset == corpus]
        if mine and corpus in trained_on:
            predictions[mine] = restricted_argmax(probabilities[mine], vocabulary, classes)
    rows = []
    for utterance, predicted, row in zip(utterances, predictions, probabilities):
        entry = {
            "id": utterance.id,
            "speaker": utterance.speaker,
            "fold": fold,
            "label": utterance.label,
            "prediction": vocabulary[predicted],
            "probabilities": [round(float(x), 6) for x in row],
        }
        if sets is not None:
            entry["corpus"] = utterance.dataset
        rows.append(entry)
    return rows


def fold_metrics(
    rows: Sequence[Mapping[str, Any]],
    vocabulary: Sequence[str],
    sets: Mapping[str, Sequence[str]] | None = None,
    trained_on: Collection[str] = (),
) -> dict[str, Any]:
    """Test metrics from prediction rows (one fold's, or a whole run's pooled).

    One corpus (``sets`` None): the usual metrics. Several: ``per_corpus`` metrics of the
    corpora the model also trained on (each in its own classes) and ``cross_corpus``
    figures of those it did not; the headline figures are the four-class cross-corpus
    protocol over the unseen corpora' items when there are any, else those of all rows
    over the union of classes.
    """
    index = {label: i for i, label in enumerate(vocabulary)}
    if sets is None:
        return classification_metrics(
            [index[r["label"]] for r in rows], [index[r["prediction"]] for r in rows], vocabulary
        )
    seen = [r for r in rows if r["corpus"] in trained_on]
    unseen = [r for r in rows if r["corpus"] not in trained_on]
    train_classes = [label for label in vocabulary if any(label in sets[c] for c in trained_on)]
    result: dict[str, Any] = {}
    if seen:
        result["per_corpus"] = within_corpus_breakdown(seen, sets)
    if not unseen:
        headline = classification_metrics(
            [index[r["label"]] for r in seen], [index[r["prediction"]] for r in seen], vocabulary
        )
        return {**headline, **result}
    result["cross_corpus"] = cross_corpus_breakdown(unseen, vocabulary, train_classes, sets)
    tested = {label for r in unseen for label in sets[r["corpus"]]}
    classes = protocol_classes(CROSS4, train_classes, [label for label in vocabulary if label in tested])
    probabilities = np.array([r["probabilities"] for r in unseen], dtype=np.float64)
    headline = protocol_metrics([r["label"] for r in unseen], probabilities, vocabulary, classes)
    return {**headline, **result}
