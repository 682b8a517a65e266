"""The baselines the three methods are measured against.

``lstm``: front-end, stacked (Bi)LSTM, last-state or mean pooling, linear classifier: the
plain LSTM baselines of method A's paper (Desai et al., arXiv:2203.03428). Given several
modalities, each gets its own encoder and the pooled vectors are concatenated before the
classifier: concatenation ("early") fusion. Audio frames and text tokens have different
time axes, so after pooling is the earliest point where they can be joined.

``transformer``: front-end, sinusoidal positions, transformer encoder (post-norm, as in
Vaswani et al. 2017), mean over valid frames, linear classifier; one stream.

``late_fusion``: one ``lstm`` classifier per modality, each trained on its own
cross-entropy as if it were alone; the prediction averages their class probabilities
(``combine="mean"``) or multiplies them (``combine="product"``: the sum of the modalities'
log-probabilities, renormalised by the softmax; the naive-Bayes combination of modalities
that are independent given the class, up to the class prior, uniform when classes are
balanced). A product lets a confident modality overrule an unsure one; a mean cannot go
below half of either's probability.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from emotrace.models.base import EmotionModel, ModelConfig
from emotrace.models.layers import lengths_to_mask, masked_mean, run_lstm, sinusoidal_positions
from emotrace.models.outputs import LateFusionOutput, LossOutput, ModelOutput


@dataclass(kw_only=True)
class LSTMConfig(ModelConfig):
    """LSTM baseline; sizes (per direction) and front-end match method A's defaults, so the
    two differ in pooling. ``output_dropout`` acts on the pooled vector(s)."""

    input_dropout: float = 0.2
    lstm_hidden: int = 128
    lstm_layers: int = 2
    bidirectional: bool = True
    lstm_dropout: float = 0.2  # between stacked LSTM layers
    pooling: Literal["last", "mean"] = "mean"
    output_dropout: float = 0.3

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pooling not in ("last", "mean"):
            raise ValueError(f"pooling must be 'last' or 'mean', got {self.pooling!r}")


@dataclass(kw_only=True)
class LateFusionConfig(LSTMConfig):
    """Late fusion of per-modality LSTM classifiers (each configured as :class:`LSTMConfig`)."""

    modalities: tuple[str, ...] = ("audio", "text")
    combine: Literal["mean", "product"] = "mean"  # of the modalities' class probabilities

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.modalities) < 2:
            raise ValueError(f"late fusion needs two or more modalities, got {self.modalities}")
        if self.combine not in ("mean", "product"):
            raise ValueError(f"combine must be 'mean' or 'product', got {self.combine!r}")


@dataclass(kw_only=True)
class TransformerConfig(ModelConfig):
    """Transformer baseline; ``projection_dim`` is the model width."""

    projection_dim: int | None = 256
    num_heads: int = 4
    num_layers: int = 2
    feedforward_dim: int = 512
    dropout: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.modalities) != 1:
            raise ValueError(f"the transformer baseline reads one stream, got {self.modalities}")


class RecurrentEncoder(nn.Module):
    """One stream to one vector: front-end, (Bi)LSTM, last-state or mean pooling."""

    def __init__(self, config: LSTMConfig, modality: str):
        super().__init__()
        self.pooling = config.pooling
        self.front_end = config.front_end(modality)
        self.lstm = nn.LSTM(
            self.front_end.output_dim,
            config.lstm_hidden,
            num_layers=config.lstm_layers,
            bidirectional=config.bidirectional,
            dropout=config.lstm_dropout if config.lstm_layers > 1 else 0.0,
            batch_first=True,
        )
        self.output_dim = config.lstm_hidden * (2 if config.bidirectional else 1)

    def forward(self, features: Tensor, lengths: Tensor) -> Tensor:
        states, last_state = run_lstm(self.lstm, self.front_end(features), lengths)
        if self.pooling == "last":
            return last_state
        return masked_mean(states, lengths_to_mask(lengths, states.shape[1]))


class LSTMClassifier(EmotionModel):
    """LSTM baseline; with several modalities, concatenation (early) fusion."""

    config: LSTMConfig

    def __init__(self, config: LSTMConfig):
        super().__init__(config)
        self.encoders = nn.ModuleDict({m: RecurrentEncoder(config, m) for m in config.modalities})
        self.dropout = nn.Dropout(config.output_dropout)
        pooled_dim = sum(encoder.output_dim for encoder in self.encoders.values())
        self.classifier = nn.Linear(pooled_dim, config.num_classes)

    def forward(self, **inputs: Tensor | None) -> ModelOutput:
        streams = self.streams(inputs)
        pooled = [self.encoders[m](*streams[m]) for m in self.config.modalities]
        return ModelOutput(logits=self.classifier(self.dropout(torch.cat(pooled, dim=-1))))


class LateFusion(EmotionModel):
    """Late fusion of independent per-modality LSTM classifiers: mean or product of probabilities."""

    config: LateFusionConfig

    def __init__(self, config: LateFusionConfig):
        super().__init__(config)
        self.encoders = nn.ModuleDict({m: RecurrentEncoder(config, m) for m in config.modalities})
        self.dropout = nn.Dropout(config.output_dropout)
        self.heads = nn.ModuleDict(
            {m: nn.Linear(self.encoders[m].output_dim, config.num_classes) for m in config.modalities}
        )

    def forward(self, **inputs: Tensor | None) -> LateFusionOutput:
        streams = self.streams(inputs)
        modality_logits = {
            m: self.heads[m](self.dropout(self.encoders[m](*streams[m]))) for m in self.config.modalities
        }
        log_probabilities = torch.stack([logits.log_softmax(-1) for logits in modality_logits.values()])
        if self.config.combine == "product":
            fused = log_probabilities.sum(0).log_softmax(-1)
        else:
            fused = log_probabilities.logsumexp(0) - math.log(len(modality_logits))
        return LateFusionOutput(logits=fused, modality_logits=modality_logits)

    def loss(self, output: LateFusionOutput, labels: Tensor) -> LossOutput:
        """Sum of the per-modality cross-entropies: each classifier learns as if alone."""
        parts = {
            f"ce_{m}": self.classification_loss(logits, labels)
            for m, logits in output.modality_logits.items()
        }
        return LossOutput(total=torch.stack(list(parts.values())).sum(), parts=parts)


class TransformerClassifier(EmotionModel):
    """Unimodal transformer-encoder baseline."""

    config: TransformerConfig

    def __init__(self, config: TransformerConfig):
        super().__init__(config)
        (modality,) = config.modalities
        self.front_end = config.front_end(modality)
        width = self.front_end.output_dim
        layer = nn.TransformerEncoderLayer(
            width, config.num_heads, config.feedforward_dim, config.dropout, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, config.num_layers, enable_nested_tensor=False)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(width, config.num_classes)

    def forward(self, **inputs: Tensor | None) -> ModelOutput:
        (modality,) = self.config.modalities
        features, lengths = self.streams(inputs)[modality]
        mask = lengths_to_mask(lengths, features.shape[-2])
        frames = self.front_end(features)
        frames = frames + sinusoidal_positions(frames.shape[1], frames.shape[2], frames.device)
        states = self.encoder(frames, src_key_padding_mask=~mask)
        return ModelOutput(logits=self.classifier(self.dropout(masked_mean(states, mask))))
