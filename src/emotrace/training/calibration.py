"""Calibration: temperature scaling, expected calibration error, and predicted-class shares.

A network trained to separate classes tends to be over-confident: its top probability says
0.9 where it is right 70 % of the time. Temperature scaling (Guo et al., 2017, "On
Calibration of Modern Neural Networks") divides the logits by one number ``T > 0``, fitted
after model selection on the fold's validation speakers by minimising their negative
log-likelihood. It changes no argmax, so UA and WA stay what they were; it makes the
probabilities honest, which an abstention threshold (``emotrace predict --min-confidence``)
relies on. The checkpoint carries ``T`` and every probability shown to users uses it.

The expected calibration error (ECE) is that of the top label over 15 equal-width bins of
confidence: the gap between accuracy and mean confidence in each bin, weighted by the
bin's share of the items, in percent. The negative log-likelihood (NLL, mean nats per item)
is given too, before and after scaling. Predicted-class shares (percent of the test items
predicted as each class) show a model that answers one class for most of a corpus, which
headline UA can hide; a class over :data:`DOMINANT_SHARE` of a fold's predictions is flagged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from emotrace.models.outputs import ModelOutput
from emotrace.training.config import NO_CALIBRATION

ECE_BINS = 15
#: the temperatures searched (a validation set the model gets nearly all wrong pushes T up)
TEMPERATURE_BOUNDS = (0.05, 20.0)
#: percent of a fold's test predictions above which one class is flagged as swallowing it
DOMINANT_SHARE = 50.0
#: the per-fold figures summarised as mean and std over folds
CALIBRATION_FIGURES = ("temperature", "ece_unscaled", "ece", "nll_unscaled", "nll")
_GOLDEN_STEPS = 60  # golden-section steps: the bracket shrinks to 0.618**60 of log(20 / 0.05)


def scaled_probabilities(logits: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(logits / temperature)`` of ``(N, C)`` logits, as a model's output gives it."""
    return ModelOutput(torch.as_tensor(np.asarray(logits, np.float64))).probabilities_at(temperature).numpy()


def negative_log_likelihood(logits: np.ndarray, labels: Sequence[int], temperature: float = 1.0) -> float:
    """Mean negative log-likelihood (nats) of the true ``labels`` under ``softmax(logits / temperature)``."""
    log_probabilities = torch.log_softmax(torch.as_tensor(np.asarray(logits, np.float64)) / temperature, -1)
    return float(-log_probabilities[torch.arange(len(labels)), torch.as_tensor(labels)].mean())


def fit_temperature(logits: np.ndarray, labels: Sequence[int]) -> float:
    """The temperature in :data:`TEMPERATURE_BOUNDS` that minimises the NLL of ``labels``.

    The NLL is convex in ``1 / T``, so it has one minimum along ``log T``, found by a
    golden-section search there (no gradients: masked ``-inf`` logits are fine). When the
    model gets every item right the NLL only falls as ``T`` goes to 0: such a validation
    set cannot tell how sure the model should be, and ``T`` stays 1.
    """
    if len(labels) == 0 or len(labels) != len(logits):
        raise ValueError(f"need logits for each label, got {len(logits)} rows and {len(labels)} labels")
    if (np.asarray(logits).argmax(1) == np.asarray(labels)).all():
        return 1.0

    def loss(log_temperature: float) -> float:
        return negative_log_likelihood(logits, labels, math.exp(log_temperature))

    low, high = (math.log(bound) for bound in TEMPERATURE_BOUNDS)
    ratio = (math.sqrt(5) - 1) / 2
    inner_low, inner_high = high - ratio * (high - low), low + ratio * (high - low)
    loss_low, loss_high = loss(inner_low), loss(inner_high)
    for _ in range(_GOLDEN_STEPS):
        if loss_low <= loss_high:
            high, inner_high, loss_high = inner_high, inner_low, loss_low
            inner_low = high - ratio * (high - low)
            loss_low = loss(inner_low)
        else:
            low, inner_low, loss_low = inner_low, inner_high, loss_high
            inner_high = low + ratio * (high - low)
            loss_high = loss(inner_high)
    return math.exp(inner_low if loss_low <= loss_high else inner_high)


def expected_calibration_error(probabilities: np.ndarray, labels: Sequence[int], bins: int = ECE_BINS) -> float:
    """Top-label ECE in percent: items binned by confidence into ``bins`` equal-width bins
    ``(k/bins, (k+1)/bins]``; the sum over bins of |accuracy - mean confidence| times the
    bin's share of the items."""
    probabilities, labels = np.asarray(probabilities, np.float64), np.asarray(labels)
    if len(labels) == 0 or len(labels) != len(probabilities):
        raise ValueError(f"need probabilities for each label, got {len(probabilities)} rows and {len(labels)} labels")
    confidence = probabilities.max(1)
    correct = probabilities.argmax(1) == labels
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    gap = 0.0
    for index in np.unique(which):
        members = which == index
        gap += members.sum() * abs(correct[members].mean() - confidence[members].mean())
    return 100 * gap / len(labels)


def predicted_shares(predictions: Sequence[int], labels: Sequence[str]) -> dict[str, float]:
    """The percent of ``predictions`` (class indices) that fall on each of ``labels``."""
    counts = np.bincount(np.asarray(predictions, int), minlength=len(labels))
    return {label: 100 * float(count) / max(1, len(predictions)) for label, count in zip(labels, counts)}


def calibration_metrics(
    logits: np.ndarray, labels: Sequence[int], temperature: float, names: Sequence[str]
) -> dict[str, Any]:
    """A test set's calibration at ``temperature``: ECE and NLL before (``*_unscaled``) and
    after scaling, and the predicted-class shares (which scaling cannot change)."""
    scaled = scaled_probabilities(logits, temperature)
    return {
        "temperature": temperature,
        "ece_unscaled": expected_calibration_error(scaled_probabilities(logits, 1.0), labels),
        "ece": expected_calibration_error(scaled, labels),
        "nll_unscaled": negative_log_likelihood(logits, labels),
        "nll": negative_log_likelihood(logits, labels, temperature),
        "predicted_share": predicted_shares(scaled.argmax(1), names),
    }


def summarise_calibration(
    per_fold: Mapping[str, Mapping[str, Any]], predictions: Sequence[Mapping[str, Any]], labels: Sequence[str]
) -> dict[str, Any]:
    """Mean and std over folds of the calibration figures, the pooled test predictions'
    ECE (their probabilities are the calibrated ones) and class shares, and each fold's
    class that takes over :data:`DOMINANT_SHARE` of its predictions. Empty when no fold
    recorded calibration (a run from before it existed)."""
    folds = {name: metrics for name, metrics in per_fold.items() if "ece" in metrics}
    if not folds:
        return {}
    summary: dict[str, Any] = {"calibration": sorted({metrics["calibration"] for metrics in folds.values()})}
    for name in CALIBRATION_FIGURES:
        values = np.array([metrics[name] for metrics in folds.values()])
        summary[f"{name}_mean"], summary[f"{name}_std"] = float(values.mean()), float(values.std())
    index = {label: i for i, label in enumerate(labels)}
    pooled = [row for row in predictions if row["fold"] in folds]
    truth = [index[row["label"]] for row in pooled]
    summary["pooled_ece"] = expected_calibration_error(np.array([row["probabilities"] for row in pooled]), truth)
    summary["pooled_predicted_share"] = predicted_shares([index[row["prediction"]] for row in pooled], labels)
    summary["dominant_predictions"] = [
        {"fold": name, "label": label, "share": share}
        for name, metrics in folds.items()
        for label, share in metrics["predicted_share"].items()
        if share > DOMINANT_SHARE
    ]
    return summary


def calibration_markdown(summary: Mapping[str, Any]) -> list[str]:
    """The report's calibration section (``summary``: the report's, with ``per_fold``):
    figures before and after scaling, per fold and over folds, the predicted-class shares,
    and a warning per class that swallows a fold."""
    if "ece_mean" not in summary:
        return []

    def spread(name: str, digits: int) -> str:
        return f"{summary[f'{name}_mean']:.{digits}f} ± {summary[f'{name}_std']:.{digits}f}"

    if summary["calibration"] == [NO_CALIBRATION]:
        method = "No calibration (`calibration: none`): the probabilities are the model's own (T = 1)."
    else:
        where = "each fold's" if NO_CALIBRATION not in summary["calibration"] else "the folds with"
        method = f"Temperature scaling fitted on {where} validation speakers: T {spread('temperature', 2)}."
    lines = [
        "## Calibration",
        "",
        (
            f"{method} ECE {spread('ece_unscaled', 1)} → {spread('ece', 1)} % "
            f"(top label, {ECE_BINS} equal-width bins), "
            f"NLL {spread('nll_unscaled', 3)} → {spread('nll', 3)} (before → after scaling, mean ± std over folds; "
            f"pooled ECE {summary['pooled_ece']:.1f} %)."
        ),
        "",
        "| fold | T | ECE before | ECE after | NLL before | NLL after | most predicted |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, fold in summary["per_fold"].items():
        if "ece" not in fold:
            continue
        top = max(fold["predicted_share"], key=fold["predicted_share"].__getitem__)
        lines.append(
            f"| {name} | {fold['temperature']:.2f} | {fold['ece_unscaled']:.1f} | {fold['ece']:.1f} | "
            f"{fold['nll_unscaled']:.3f} | {fold['nll']:.3f} | {top} {fold['predicted_share'][top]:.0f} % |"
        )
    shares = summary["pooled_predicted_share"]
    lines += [
        "",
        "Predicted-class shares (percent of pooled test items): "
        + ", ".join(f"{label} {share:.1f}" for label, share in shares.items()),
        "",
    ]
    for flag in summary["dominant_predictions"]:
        lines += [
            f"**Warning:** fold {flag['fold']} predicts {flag['label']} for {flag['share']:.0f} % of its "
            f"test items (over {DOMINANT_SHARE:.0f} %).",
            "",
        ]
    return lines
