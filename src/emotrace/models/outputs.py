"""What models return, so training, inference and explanation never reach inside a model.

Shapes use ``B`` items, ``C`` classes, ``T`` frames of the (padded) input stream. Values
on padded frames are zero in every per-frame field.

Each output explains one of its items (:meth:`ModelOutput.explain`): which modalities the
decision read, where in time it looked (regions of interest, attention), how the emotion
moved from frame to frame, and the utterance's emotion mixture, as far as the method shows
them. Callers get an :class:`Explanation` and never need to know which method ran.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from emotrace.models.regions import roi_segments
from emotrace.spans import Span


@dataclass(frozen=True, eq=False)
class Explanation:
    """What one item's output shows beyond its class scores; times in seconds of the source.

    ``modalities``: for each modality the model reads, whether this decision read it.
    ``stream``: the modality the attention runs over, at ``frame_rate`` frames per second;
    ``attention (T,)`` sums to 1 over the frames centred at ``frame_times (T,)``, and
    ``regions`` are where it concentrates (with their share as ``mass``).
    ``frame_posteriors (T, C)``: the emotion dynamics; ``mixture (C,)``: the
    attention-weighted mixture of them. A method that shows none of these leaves them None.
    """

    modalities: dict[str, bool]
    stream: str | None = None
    frame_rate: float | None = None
    frame_times: np.ndarray | None = None
    attention: np.ndarray | None = None
    regions: tuple[Span, ...] = ()
    frame_posteriors: np.ndarray | None = None
    mixture: np.ndarray | None = None


@dataclass
class ModelOutput:
    """Utterance-level class scores: ``logits (B, C)``."""

    logits: Tensor

    @property
    def probabilities(self) -> Tensor:
        return self.probabilities_at(1.0)

    def probabilities_at(self, temperature: float) -> Tensor:
        """Class probabilities ``(B, C)`` from the logits divided by ``temperature``: a
        calibrated model's (temperature scaling), whose argmax is the same at any ``temperature``."""
        return (self.logits / temperature).softmax(-1)

    def explain(self, item: int, frame_rates: Mapping[str, float], offset: float = 0.0) -> Explanation:
        """What item ``item`` shows: here, only that every modality given was read.

        ``frame_rates`` holds frames per second of each modality the model was given (0 for
        inputs without a time axis: text tokens, functionals); ``offset`` is the seconds of
        the source where the item starts, added to every time.
        """
        return Explanation(modalities={modality: True for modality in frame_rates})


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
    ``lengths (B,)``: valid frames per item.
    """

    attention: Tensor
    frame_posteriors: Tensor
    mixture: Tensor
    lengths: Tensor

    def explain(self, item: int, frame_rates: Mapping[str, float], offset: float = 0.0) -> Explanation:
        """The attention over the one stream the model read, its regions of interest, the
        frame posteriors and the mixture; only the modality for a stream without a time axis."""
        if len(frame_rates) != 1:
            raise ValueError(f"ROI attention reads one stream, got frame rates for {sorted(frame_rates)}")
        ((stream, rate),) = frame_rates.items()
        modalities = {stream: True}
        if rate <= 0:  # utterance-level functionals: one frame, nothing to localise
            return Explanation(modalities)
        length = int(self.lengths[item])
        return Explanation(
            modalities,
            stream=stream,
            **_attended(self.attention[item, :length], rate, offset),
            frame_posteriors=self.frame_posteriors[item, :length].float().cpu().numpy(),
            mixture=self.mixture[item].float().cpu().numpy(),
        )


@dataclass
class QueryFusionOutput(ModelOutput):
    """Method B's view: where each emotion query looked, and what it could see.

    ``cross_attention[m] (B, C, T_m)``: the last decoder layer's cross-attention of each
    class query over the positions of modality ``m`` (mean over heads); for each query it
    sums to 1 over all modalities' positions together. Only modalities that were passed
    appear, as in ``lengths[m] (B,)``, their valid positions per item.
    ``modalities_used[m] (B,)``: whether ``m`` entered each item's memory (False when
    absent, empty, or hidden by random modality masking). ``modality_logits[m] (B, C)``:
    in training with ``unimodal_loss_weight``, the prediction decoded from ``m`` alone
    (empty otherwise); ``modalities_present[m] (B,)``: whether the item had a non-empty ``m``.
    """

    cross_attention: dict[str, Tensor]
    modalities_used: dict[str, Tensor]
    lengths: dict[str, Tensor]
    modality_logits: dict[str, Tensor] = field(default_factory=dict)
    modalities_present: dict[str, Tensor] = field(default_factory=dict)

    def explain(self, item: int, frame_rates: Mapping[str, float], offset: float = 0.0) -> Explanation:
        """Which modalities entered the memory, and where the predicted class's query looked
        in the first stream with a time axis that it saw (renormalised over that stream)."""
        modalities = {modality: bool(used[item]) for modality, used in self.modalities_used.items()}
        label = int(self.probabilities[item].argmax())
        for stream, weights in self.cross_attention.items():
            rate = frame_rates.get(stream, 0.0)
            attention = weights[item, label, : int(self.lengths[stream][item])]
            if rate > 0 and attention.sum() > 0:  # zero: the stream was hidden from the queries
                return Explanation(modalities, stream=stream, **_attended(attention / attention.sum(), rate, offset))
        return Explanation(modalities)


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


def _attended(attention: Tensor, rate: float, offset: float) -> dict:
    """The :class:`Explanation` fields of attention ``(T,)`` over frames at ``rate`` per second."""
    regions = roi_segments(attention[None], torch.tensor([len(attention)]), rate)[0]
    return {
        "frame_rate": rate,
        "frame_times": offset + (np.arange(len(attention)) + 0.5) / rate,
        "attention": attention.float().cpu().numpy(),
        "regions": tuple(region.shifted(offset) for region in regions),
    }
