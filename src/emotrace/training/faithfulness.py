"""Are the regions of interest the evidence? A deletion test of attention, and the hybrid's split.

An attention map is a faithful explanation when the frames it marks carry the decision:
deleting them must cost more accuracy than deleting as many other frames. The test here
(after the deletion/"remove the most relevant input" tests of the explanation literature)
takes a trained model whose output has ``attention`` over its input frames (method A), and
per test utterance

* selects the top-attention frames: the ``share`` of valid frames with the highest weights
  (at least one), or with ``share=None`` the frames the ROI rule ``"above_uniform"`` keeps
  (a_t > 1/T);
* builds the control: the same selection mask shifted circularly by a random offset, so it
  deletes exactly as many frames, in runs of the same lengths, at random places (random
  scattered frames would be an easier deletion for a recurrent encoder, which bridges
  single-frame gaps; the shift keeps the contiguity of what is deleted);
* replaces the selected input frames by ``fill`` (per modality ``(layers, dims)``; zeros by
  default, what time masks write in training unless inputs are standardised, where the
  training mean is the blank frame) and predicts again.

Attention frames are input frames here: method A's encoder keeps the time axis. UA drops and
their intervals over test speakers come from
:func:`~emotrace.training.metrics.speaker_bootstrap` on the returned predictions.

:func:`decision_shares` measures, for method A's hybrid (``join_mean_pool=True``), how much of
each decision comes through the mean-pooled path rather than the attention-pooled one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from emotrace.models.base import EmotionModel
from emotrace.training.ablation import finished_fold_checkpoints
from emotrace.training.config import load_config
from emotrace.training.cv import CONFIG_FILE, load_experiment_corpus, prepare
from emotrace.training.data import FeatureDataset, collate, training_moments


@dataclass
class DeletionResult:
    """Predicted class indices per test item: on intact inputs, with the top-attention frames
    deleted, and with the shifted control deleted (one row per random draw)."""

    labels: np.ndarray  # (N,)
    intact: np.ndarray  # (N,)
    top: np.ndarray  # (N,)
    control: np.ndarray  # (draws, N)
    deleted_share: np.ndarray  # (N,) share of each item's valid frames deleted


def top_attention_mask(attention: Tensor, lengths: Tensor, share: float | None) -> Tensor:
    """``(B, T)`` True on the frames to delete: the ``share`` of valid frames with the highest
    attention (at least one), or with ``share=None`` those above the uniform weight 1/T."""
    if share is not None and not 0.0 < share < 1.0:
        raise ValueError(f"share must lie in (0, 1), or be None for the above-uniform frames; got {share}")
    valid = torch.arange(attention.shape[1], device=attention.device)[None, :] < lengths[:, None]
    if share is None:
        return valid & (attention > 1.0 / lengths.clamp(min=1)[:, None].to(attention.dtype))
    counts = (share * lengths.to(torch.float64)).round().long().clamp(min=1)
    ranks = attention.masked_fill(~valid, float("-inf")).argsort(dim=1, descending=True, stable=True).argsort(dim=1)
    return valid & (ranks < counts[:, None])


def shifted(mask: Tensor, lengths: Tensor, generator: torch.Generator) -> Tensor:
    """Each row's selection rotated within its valid frames by a random offset (1..T-1)."""
    result = torch.zeros_like(mask)
    for row, length in enumerate(lengths.tolist()):
        offset = int(torch.randint(1, max(2, length), (1,), generator=generator)) if length > 1 else 0
        result[row, :length] = mask[row, :length].roll(offset)
    return result


def _filled(frames: Tensor, mask: Tensor, fill: np.ndarray | None) -> Tensor:
    """``frames`` ``(B, T, D)`` or ``(B, L, T, D)`` with the frames where ``mask (B, T)`` is True
    replaced by ``fill`` (``(L, D)``; zeros when None)."""
    layers = frames.shape[1] if frames.dim() == 4 else 1
    shape = (layers, frames.shape[-1])
    value = torch.zeros(shape, dtype=frames.dtype) if fill is None else torch.as_tensor(fill, dtype=frames.dtype)
    value = value.reshape(shape)
    if frames.dim() == 4:
        return torch.where(mask[:, None, :, None], value[None, :, None, :], frames)
    return torch.where(mask[:, :, None], value[0][None, None, :], frames)


@torch.inference_mode()
def attention_deletion(
    model: EmotionModel,
    dataset: FeatureDataset,
    *,
    share: float | None = 0.2,
    fill: Mapping[str, np.ndarray] | None = None,
    draws: int = 5,
    seed: int = 0,
    batch_size: int = 64,
) -> DeletionResult:
    """The deletion test of ``model``'s attention on ``dataset`` (see the module doc)."""
    if len(model.config.modalities) != 1:
        raise ValueError(f"the deletion test reads the attention over one stream, got {model.config.modalities}")
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    (modality,) = model.config.modalities
    if model.input_frames_per_output(modality) != 1:
        raise ValueError("the deletion test deletes input frames by their attention: the model must not pool inside")
    value = None if fill is None else fill.get(modality)
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    stacked = {name: inputs.stacked for name, inputs in dataset.inputs.items()}
    order = sorted(range(len(dataset)), key=dataset.length)
    intact, top = np.zeros(len(dataset), int), np.zeros(len(dataset), int)
    control, deleted = np.zeros((draws, len(dataset)), int), np.zeros(len(dataset))
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        batch = collate([dataset[i] for i in indices], stacked)
        batch.pop("labels")
        output = model(**batch)
        if not hasattr(output, "attention"):
            raise ValueError(f"{type(model).__name__} returns no attention to test")
        lengths = batch[f"{modality}_lengths"]
        mask = top_attention_mask(output.attention, lengths, share)
        intact[indices] = output.logits.argmax(-1).numpy()
        top[indices] = model(**{**batch, modality: _filled(batch[modality], mask, value)}).logits.argmax(-1).numpy()
        for draw in range(draws):
            other = _filled(batch[modality], shifted(mask, lengths, generator), value)
            control[draw, indices] = model(**{**batch, modality: other}).logits.argmax(-1).numpy()
        deleted[indices] = (mask.sum(1) / lengths).numpy()
    return DeletionResult(np.asarray(dataset.labels), intact, top, control, deleted)


@torch.inference_mode()
def decision_shares(model: EmotionModel, dataset: FeatureDataset, batch_size: int = 64) -> dict[str, float]:
    """For a model with ``logit_parts`` (method A): how much of each decision comes through
    the mean-pooled path.

    ``mean_share``: the mean over items of |z_mean| / (|z_att| + |z_mean|), each part's logits
    centred over classes first (softmax ignores a shift shared by all classes), |.| the
    Euclidean norm. ``attention_agreement``: the share of items whose label from the
    attention path alone (its logits, bias included) equals the model's label. The paper's
    pooling gives 0 and 1.
    """
    if not hasattr(model, "logit_parts"):
        raise ValueError(f"{type(model).__name__} does not split its logits by path")
    model.eval()
    stacked = {name: inputs.stacked for name, inputs in dataset.inputs.items()}
    shares, agreements = [], []
    for start in range(0, len(dataset), batch_size):
        batch = collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))], stacked)
        batch.pop("labels")
        parts = model.logit_parts(**batch)
        attention_part, mean_part = (part - part.mean(-1, keepdim=True) for part in (parts["attention"], parts["mean"]))
        norms = attention_part.norm(dim=-1), mean_part.norm(dim=-1)
        shares.append((norms[1] / (norms[0] + norms[1]).clamp(min=1e-12)).numpy())
        full = (parts["attention"] + parts["mean"]).argmax(-1)
        agreements.append((parts["attention"].argmax(-1) == full).numpy())
    return {
        "mean_share": float(np.concatenate(shares).mean()),
        "attention_agreement": float(np.concatenate(agreements).mean()),
    }


def run_deletion_test(
    run_dir: str | Path,
    *,
    shares: Sequence[float | None] = (0.2,),
    fill: Literal["training", "zeros", "mean"] = "training",
    draws: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """The deletion test on every finished fold model of an ``emotrace cv`` run, on its test
    speakers, for each selection in ``shares`` (a share of frames, or None for the ROI rule).
    Deleted frames get what time masks wrote in the run's training (``fill="training"``: the
    fold's training mean frame when the model standardises its inputs, else zeros), or
    ``"zeros"``, or ``"mean"``.

    Returns ``{"intact": records, "tests": {share_name: {"top": records, "control": [records
    per draw], "deleted_share": mean share of frames deleted}}, "decision": ...}``, records
    being prediction records (``speaker``, ``label``, ``prediction``) pooled over folds, share
    names ``"0.2"`` or ``"roi"``, and ``"decision"`` (models that split their logits by path)
    the :func:`decision_shares` averaged over folds. The run's files are untouched.
    """
    if fill not in ("training", "zeros", "mean"):
        raise ValueError(f"fill must be 'training', 'zeros' or 'mean', got {fill!r}")
    run_dir = Path(run_dir)
    config = load_config(run_dir / CONFIG_FILE)
    if fill == "training":
        fill = "mean" if config.model.get("standardise_inputs") else "zeros"
    corpus = load_experiment_corpus(config)
    experiment = prepare(config, progress=False, corpus=corpus)
    labels = experiment.labels
    names = {share: "roi" if share is None else f"{share:g}" for share in shares}
    intact: list[dict[str, str]] = []
    tests = {name: {"top": [], "control": [[] for _ in range(draws)], "deleted": []} for name in names.values()}
    decisions = []
    for fold, checkpoint in finished_fold_checkpoints(run_dir, config, corpus):
        model = checkpoint.model
        train_part, _, test_part = fold.split(experiment.corpus.utterances)
        values = None
        if fill == "mean":
            moments = training_moments(experiment.inputs, [u.id for u in train_part])
            values = {modality: mean.numpy() for modality, (mean, _) in moments.items()}
        test = FeatureDataset(
            [u.id for u in test_part], [labels.index(u.label) for u in test_part], experiment.inputs, config.data
        )
        for share, name in names.items():
            result = attention_deletion(model, test, share=share, fill=values, draws=draws, seed=seed)
            if name == names[shares[0]]:
                intact += _records(test_part, result.intact, labels)
            tests[name]["top"] += _records(test_part, result.top, labels)
            for draw in range(draws):
                tests[name]["control"][draw] += _records(test_part, result.control[draw], labels)
            tests[name]["deleted"].append(result.deleted_share)
        if hasattr(model, "logit_parts"):
            decisions.append(decision_shares(model, test))
    if not intact:
        raise ValueError(f"{run_dir}: no finished folds")
    for test_records in tests.values():
        test_records["deleted_share"] = float(np.concatenate(test_records.pop("deleted")).mean())
    summary: dict[str, Any] = {"intact": intact, "tests": tests}
    if decisions:
        summary["decision"] = {key: float(np.mean([d[key] for d in decisions])) for key in decisions[0]}
    return summary


def _records(utterances: list, predictions: np.ndarray, labels: tuple[str, ...]) -> list[dict[str, str]]:
    return [{"speaker": u.speaker, "label": u.label, "prediction": labels[p]} for u, p in zip(utterances, predictions)]
