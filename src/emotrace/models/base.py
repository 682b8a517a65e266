"""The contract every model keeps: its config fields, its inputs, and its loss.

**Inputs.** ``forward`` takes keyword tensors named after the modalities: ``audio``,
``text``, ``video``, each ``(B, T, D)`` or ``(B, L, T, D)`` (``L`` stacked encoder layers),
and ``audio_lengths``, ``text_lengths``, ``video_lengths`` ``(B,)`` counting valid frames
or tokens (``None`` means every frame is valid). A model reads the modalities named in
``config.modalities`` and ignores the others, so training feeds every model from the same
batch dict: ``model(**{k: v for k, v in batch.items() if k != "labels"})``; any other name
is a TypeError, so a misspelt input cannot be silently ignored.

**Modalities.** ``config.modalities`` are what a model reads; a model needs every one of
them unless its class sets :attr:`EmotionModel.tolerates_missing_modalities` (trained to do
without any of them, e.g. by modality masking), and :meth:`EmotionModel.missing_modalities`
tells a caller what an input still lacks.

**Loss.** ``model.loss(output, labels)`` returns a :class:`LossOutput`; the default is
cross-entropy with the config's label smoothing and class weights, and methods with a
regulariser add their terms to it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from emotrace.models.layers import FrameFrontEnd
from emotrace.models.outputs import LossOutput, ModelOutput

MODALITIES: tuple[str, ...] = ("audio", "text", "video")


@dataclass(kw_only=True)
class ModelConfig:
    """Fields every model has.

    ``input_dims`` maps each consumed modality to its feature width; ``num_layers_in``
    to its number of stacked encoder layers (absent = 1, a plain ``(B, T, D)`` stream).
    The front-end fields (``standardise_inputs``, ``input_norm``, ``input_dropout``,
    ``projection_dim``) configure :class:`~emotrace.models.layers.FrameFrontEnd`; with
    ``standardise_inputs`` the training code sets the moments of the training frames
    (:meth:`EmotionModel.set_input_moments`). ``class_weights`` (one per class)
    reweight the cross-entropy, e.g. inverse class frequencies of a training fold.
    """

    num_classes: int
    input_dims: dict[str, int]
    modalities: tuple[str, ...] = ("audio",)
    num_layers_in: dict[str, int] = field(default_factory=dict)
    standardise_inputs: bool = False
    input_norm: bool = True
    input_dropout: float = 0.1
    projection_dim: int | None = 256
    label_smoothing: float = 0.0
    class_weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        # JSON and YAML give lists; keep tuples so configs compare equal after a round trip.
        self.modalities = tuple(self.modalities)
        if self.class_weights is not None:
            self.class_weights = tuple(float(w) for w in self.class_weights)
        unknown = [m for m in self.modalities if m not in MODALITIES]
        if unknown or not self.modalities:
            raise ValueError(f"modalities must be drawn from {MODALITIES}, got {self.modalities}")
        missing = [m for m in self.modalities if m not in self.input_dims]
        if missing:
            raise ValueError(f"input_dims has no width for {missing}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {self.num_classes}")
        if self.class_weights is not None and len(self.class_weights) != self.num_classes:
            raise ValueError(f"class_weights has {len(self.class_weights)} values for {self.num_classes} classes")

    def layers_in(self, modality: str) -> int:
        return self.num_layers_in.get(modality, 1)

    def front_end(self, modality: str) -> FrameFrontEnd:
        """A fresh front-end for ``modality`` built from these fields."""
        return FrameFrontEnd(
            modality,
            self.input_dims[modality],
            self.layers_in(modality),
            self.input_norm,
            self.input_dropout,
            self.projection_dim,
            self.standardise_inputs,
        )


class EmotionModel(nn.Module):
    """Base class: holds the config, gathers input streams, computes the default loss."""

    config: ModelConfig
    #: True for a model that predicts from any non-empty subset of its modalities
    tolerates_missing_modalities: ClassVar[bool] = False

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config

    def input_frames_per_output(self, modality: str) -> int:
        """How many input frames of ``modality`` make one frame of the model's per-frame
        outputs (attention, frame posteriors): more than 1 for a model that pools inside."""
        return 1

    def pretrained_parameters(self) -> list[nn.Parameter]:
        """Parameters initialised from a pretrained encoder (trained at ``optim.encoder_lr``)."""
        return []

    def missing_modalities(self, given: Collection[str]) -> tuple[str, ...]:
        """The modalities the model cannot do without that are not in ``given``."""
        absent = tuple(modality for modality in self.config.modalities if modality not in given)
        if self.tolerates_missing_modalities and len(absent) < len(self.config.modalities):
            return ()
        return absent

    def streams(self, inputs: dict[str, Tensor | None]) -> dict[str, tuple[Tensor, Tensor]]:
        """``{modality: (features, lengths)}`` for the config's modalities.

        Lengths default to full. Every configured modality must be given and every item
        must have at least one frame, unless the model tolerates missing modalities: then
        absent ones are left out and empty items are allowed.
        """
        optional = self.tolerates_missing_modalities
        allowed = {name for m in MODALITIES for name in (m, f"{m}_lengths")}
        unknown = sorted(set(inputs) - allowed)
        if unknown:
            raise TypeError(f"unexpected model inputs {unknown}; expected names from {sorted(allowed)}")
        streams = {}
        for modality in self.config.modalities:
            features = inputs.get(modality)
            if features is None:
                if optional:
                    continue
                raise ValueError(f"{type(self).__name__} needs `{modality}` features")
            lengths = inputs.get(f"{modality}_lengths")
            if lengths is None:
                lengths = torch.full((features.shape[0],), features.shape[-2], dtype=torch.long)
            lengths = lengths.to(features.device)
            shortest = 0 if optional else 1
            if lengths.min() < shortest or lengths.max() > features.shape[-2]:
                raise ValueError(
                    f"{modality}_lengths must lie in [{shortest}, {features.shape[-2]}], "
                    f"got {lengths.min().item()}..{lengths.max().item()}"
                )
            streams[modality] = (features, lengths)
        return streams

    def set_input_moments(self, moments: dict[str, tuple[Tensor, Tensor]]) -> None:
        """Give every front-end of a modality the ``(mean, std)`` of its training frames,
        each ``(layers, dims)``; for configs with ``standardise_inputs``."""
        if not self.config.standardise_inputs:
            raise ValueError(f"{type(self).__name__} was configured without standardise_inputs")
        missing = sorted(set(self.config.modalities) - set(moments))
        if missing:
            raise ValueError(f"no input moments for {missing}")
        for module in self.modules():
            if isinstance(module, FrameFrontEnd):
                module.set_input_moments(*moments[module.modality])

    def classification_loss(self, logits: Tensor, labels: Tensor, class_mask: Tensor | None = None) -> Tensor:
        """Cross-entropy with the config's label smoothing and class weights.

        ``class_mask (B, C)``, when given, says which classes each item's label set has
        (items from corpora with different label sets): the softmax then runs over those
        classes only, so a class an item's corpus lacks is never a negative for it and gets
        no gradient from it; label smoothing spreads over the item's own classes.
        """
        weights = None if self.config.class_weights is None else logits.new_tensor(self.config.class_weights)
        if class_mask is None:
            return F.cross_entropy(logits, labels, weight=weights, label_smoothing=self.config.label_smoothing)
        return masked_cross_entropy(logits, labels, class_mask, weights, self.config.label_smoothing)

    def loss(self, output: ModelOutput, labels: Tensor, class_mask: Tensor | None = None) -> LossOutput:
        """Cross-entropy of the utterance logits; methods with more terms override this."""
        ce = self.classification_loss(output.logits, labels, class_mask)
        return LossOutput(total=ce, parts={"ce": ce})


def masked_cross_entropy(
    logits: Tensor, labels: Tensor, class_mask: Tensor, weights: Tensor | None = None, label_smoothing: float = 0.0
) -> Tensor:
    """Cross-entropy over each item's allowed classes (``class_mask`` True), weighted mean over items.

    Masked logits are replaced by constants before the softmax, so they get exactly zero
    gradient. With every class allowed and no weights this equals ``F.cross_entropy``.
    """
    if not bool(class_mask.gather(1, labels[:, None]).all()):
        raise ValueError("an item's label is masked out of its own classes")
    log_probs = logits.masked_fill(~class_mask, float("-inf")).log_softmax(-1).masked_fill(~class_mask, 0.0)
    nll = -log_probs.gather(1, labels[:, None]).squeeze(1)
    smoothed = -log_probs.sum(-1) / class_mask.sum(-1)
    per_item = (1.0 - label_smoothing) * nll + label_smoothing * smoothed
    item_weights = torch.ones_like(per_item) if weights is None else weights[labels]
    return (item_weights * per_item).sum() / item_weights.sum()
