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
