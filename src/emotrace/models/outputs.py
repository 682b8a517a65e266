"""What models return, so training, inference and explanation never reach inside a model.

Shapes use ``B`` items, ``C`` classes, ``T`` frames of the (padded) input stream. Values
on padded frames are zero in every per-frame field.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class ModelOutput:
    """Utterance-level class scores: ``logits (B, C)``."""

    logits: Tensor

    @property
    def probabilities(self) -> Tensor:
        return self.logits.softmax(-1)


@dataclass
class LateFusionOutput(ModelOutput):
    """``logits`` are the log of the fused class probabilities (their mean, or their
    normalised product); ``modality_logits`` holds each modality's own ``(B, C)`` logits."""

    modality_logits: dict[str, Tensor]


@dataclass
class ROIOutput(ModelOutput):
    """Method A's view of an utterance.

    ``attention (B, T)``: weight of each frame, summing to 1 over the valid frames.
    ``frame_posteriors (B, T, C)``: the classifier applied to each frame's hidden state.
    ``mixture (B, C)``: the attention-weighted mixture of frame posteriors, a distribution.
    ``lengths (B,)``: valid frames per item, for :func:`~emotrace.models.roi_attention.roi_segments`.
    """

    attention: Tensor
    frame_posteriors: Tensor
    mixture: Tensor
    lengths: Tensor


@dataclass
class QueryFusionOutput(ModelOutput):
    """Method B's view: where each emotion query looked, and what it could see.

    ``cross_attention[m] (B, C, T_m)``: the last decoder layer's cross-attention of each
    class query over the positions of modality ``m`` (mean over heads); for each query it
    sums to 1 over all modalities' positions together. Only modalities that were passed
    appear. ``modalities_used[m] (B,)``: whether ``m`` entered each item's memory (False
    when absent, empty, or hidden by random modality masking). ``modality_logits[m] (B, C)``:
    in training with ``unimodal_loss_weight``, the prediction decoded from ``m`` alone
    (empty otherwise); ``modalities_present[m] (B,)``: whether item had a non-empty ``m``.
    """

    cross_attention: dict[str, Tensor]
    modalities_used: dict[str, Tensor]
    modality_logits: dict[str, Tensor] = field(default_factory=dict)
    modalities_present: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class ContrastiveOutput(ModelOutput):
    """Method C's view: ``logits`` from the concatenated codes, each modality's own head,
    and the latent codes the contrastive regulariser compares."""

    audio_logits: Tensor
    text_logits: Tensor
    audio_code: Tensor
    text_code: Tensor


@dataclass
class LossOutput:
    """``total`` is what training minimises; ``parts`` names each term for logging."""

    total: Tensor
    parts: dict[str, Tensor]
