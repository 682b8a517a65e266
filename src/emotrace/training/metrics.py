"""The field's metrics, computed one way everywhere (scikit-learn underneath).

WA (weighted accuracy) is plain accuracy; UA (unweighted accuracy) is the mean of the
per-class recalls, i.e. balanced accuracy. All figures are percentages. Classes absent
from a fold's test set are left out of UA and macro-F1 for that fold (as balanced accuracy
does), so a fold never gets a recall for a class it cannot show.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    recall_score,
)

#: the figures every report gives, in this order
HEADLINE = ("ua", "wa", "macro_f1", "weighted_f1")


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]) -> dict[str, Any]:
    """WA, UA, macro-F1, weighted-F1 (percent), per-class recall and the confusion matrix.

    ``y_true``/``y_pred`` are class indices into ``labels``.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) == 0 or len(y_true) != len(y_pred):
        raise ValueError(f"need equally many true and predicted labels, got {len(y_true)} and {len(y_pred)}")
    present = sorted(set(y_true.tolist()))
    recalls = recall_score(y_true, y_pred, labels=present, average=None, zero_division=0)
    return {
        "ua": 100 * balanced_accuracy_score(y_true, y_pred),
        "wa": 100 * accuracy_score(y_true, y_pred),
        "macro_f1": 100 * f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0),
        "weighted_f1": 100 * f1_score(y_true, y_pred, labels=present, average="weighted", zero_division=0),
        "recall": {labels[c]: 100 * float(r) for c, r in zip(present, recalls)},
        "confusion": confusion_matrix(y_true, y_pred, labels=list(range(len(labels)))).tolist(),
        "count": len(y_true),
    }


def group_mean_metrics(
    y_true: Sequence[int], y_pred: Sequence[int], groups: Sequence[int], labels: Sequence[str]
) -> dict[str, float]:
    """UA and WA of each group (corpus) of items, then their means: a small corpus counts as
    much as a large one (the validation score of models trained on several corpora)."""
    y_true, y_pred, groups = np.asarray(y_true), np.asarray(y_pred), np.asarray(groups)
    per_group = [classification_metrics(y_true[groups == g], y_pred[groups == g], labels) for g in np.unique(groups)]
    return {name: float(np.mean([metrics[name] for metrics in per_group])) for name in ("ua", "wa")}


def summarise_folds(per_fold: Mapping[str, Mapping[str, Any]], labels: Sequence[str]) -> dict[str, Any]:
    """Mean and standard deviation over folds of each headline figure and per-class recall.

    The standard deviation is the population one over folds (``ddof=0``), as EmoBox reports.
    """
    if not per_fold:
        raise ValueError("no folds to summarise")
    summary: dict[str, Any] = {"folds": len(per_fold)}
    for name in HEADLINE:
        values = np.array([metrics[name] for metrics in per_fold.values()])
        summary[f"{name}_mean"] = float(values.mean())
        summary[f"{name}_std"] = float(values.std())
    summary["recall_mean"] = {
        label: float(np.mean([m["recall"][label] for m in per_fold.values() if label in m["recall"]]))
        for label in labels
        if any(label in m["recall"] for m in per_fold.values())
    }
    return summary


def speaker_bootstrap(
    runs: Sequence[Sequence[Mapping[str, Any]]],
    baseline: Sequence[Sequence[Mapping[str, Any]]] | None = None,
    *,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """UA pooled over test speakers, with a percentile bootstrap interval that resamples speakers.

    Fold figures (mean ± std, Wilcoxon over folds) treat each fold as one observation; the
    unit that varies between test sets is the speaker, so the interval here draws speakers
    with replacement and recomputes UA over all their utterances. ``runs`` holds one list of
    prediction records (``speaker``, ``label``, ``prediction``) per run of a system (seeds,
    pairings); a resample's UA is the mean over runs of each run's UA on the drawn speakers.
    With ``baseline`` (runs of another system over the same speakers, e.g. the same model on
    intact inputs), the figure and interval are of the difference ``runs - baseline``, both
    sides on the same draws: a paired bootstrap. Returns ``{"ua" | "difference", "low",
    "high", "speakers", "resamples", "level"}`` in percent.
    """
    if not runs or any(not records for records in runs):
        raise ValueError("speaker_bootstrap needs at least one run with predictions")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    everything = [*runs, *(baseline or [])]
    speakers = sorted({record["speaker"] for record in everything[0]})
    if any(sorted({record["speaker"] for record in records}) != speakers for records in everything):
        raise ValueError("every run must hold predictions for the same test speakers")
    speaker_index = {speaker: i for i, speaker in enumerate(speakers)}
    class_index = {label: i for i, label in enumerate(sorted({r["label"] for records in everything for r in records}))}
    weights = np.random.default_rng(seed).multinomial(len(speakers), [1 / len(speakers)] * len(speakers), resamples)
    weights = np.vstack([np.ones(len(speakers)), weights])  # row 0: every speaker once, the point estimate

    def mean_ua(group: Sequence[Sequence[Mapping[str, Any]]]) -> np.ndarray:
        values = []
        for records in group:
            counts, hits = np.zeros((len(speakers), len(class_index))), np.zeros((len(speakers), len(class_index)))
            for record in records:
                row, column = speaker_index[record["speaker"]], class_index[record["label"]]
                counts[row, column] += 1
                hits[row, column] += record["prediction"] == record["label"]
            totals, correct = weights @ counts, weights @ hits
            with np.errstate(invalid="ignore", divide="ignore"):
                recall = np.where(totals > 0, correct / totals, np.nan)
            values.append(100 * np.nanmean(recall, axis=1))
        return np.mean(values, axis=0)

    values = mean_ua(runs) - (mean_ua(baseline) if baseline else 0.0)
    low, high = np.percentile(values[1:], [50 * (1 - level), 50 * (1 + level)])
    return {
        "difference" if baseline else "ua": float(values[0]),
        "low": float(low),
        "high": float(high),
        "speakers": len(speakers),
        "resamples": resamples,
        "level": level,
    }
