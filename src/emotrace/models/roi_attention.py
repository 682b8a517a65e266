"""Method A: attention-based region-of-interest (ROI) detection.

Desai, Cao, Shah, "Attention-based Region of Interest (ROI) Detection for Speech Emotion
Recognition", arXiv:2203.03428 (2022). An utterance holds a few emotion-salient frames
among many emotionless ones; additive attention over a recurrent encoding finds them.

Paper to code, for frames x_1..x_T of one stream (audio or face video)::

    h_t = (Bi)LSTM stack(x)_t                          self.lstm
    e_t = v · tanh(W h_t + b)                          AdditiveAttention
    a_t = exp(e_t) / sum over valid s of exp(e_s)      AdditiveAttention (padding gets 0)
    c   = sum_t a_t h_t                                attention-weighted pooling
    y   = softmax(U c + d)                             self.classifier
    p_t = softmax(U h_t + d)                           frame posteriors (same classifier)
    m   = sum_t a_t p_t                                the utterance's emotion mixture
    ROI = frames with high a_t                         emotrace.models.regions.roi_segments()

With ``join_mean_pool=False`` (the default, the paper's pooling) the utterance logits are
exactly the attention-weighted mean of the frame logits, U c + d = sum_t a_t (U h_t + d), so
the frame posteriors and the regions of interest are the evidence the label was built from;
the classifier is linear for that reason. Whether the regions carry the decision is measured,
not assumed: :mod:`emotrace.training.faithfulness` deletes the top-attention frames and
random frames of the same duration and compares the accuracy lost.

``join_mean_pool=True`` is a hybrid, not the paper's model: the classifier reads
``[c; mean_t h_t]``, so the logits are U1 c + U2 mean(h) + d and a part of every decision
(:meth:`ROIAttention.logit_parts` splits it) comes from all frames equally, not from the
regions of interest. Its frame posteriors apply the classifier to ``[h_t, h_t]``, the vector a
one-frame utterance made of h_t would get; its mixture and regions are then a reading of the
attention, no longer the decomposition of the label.

Choices the paper leaves open (defaults in :class:`ROIAttentionConfig`): LSTM width and
depth (128 per direction, 2 layers, bidirectional), attention width (128), the rule that
turns weights into ROI segments (``"above_uniform"``: a_t > 1/T_valid; or ``"mass"``: the
fewest frames holding a given share of the attention) and how nearby frames merge into
spans (gaps up to 0.1 s merged).

Additions for frozen pretrained frames, where the plain model overfits: a learnable weighted
sum over stacked encoder layers, input LayerNorm and dropout, a projection (Linear +
LayerNorm + GELU) before the LSTM, and dropout after it. None of them changes how the
decision is built from the frames. The paper's model on one plain stream is
``num_layers_in={}, input_norm=False, input_dropout=0, projection_dim=None,
output_dropout=0``. Augmentation (time masking, random crops) is training code's business,
not the model's.

``finetune_top_layers`` (not in the paper, which trains on fixed features) fine-tunes the
pretrained encoder's top layers on the cached states of its frozen lower ones: see
:mod:`emotrace.models.encoder_top`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from emotrace.models.base import EmotionModel, ModelConfig
from emotrace.models.encoder_top import EncoderTop
from emotrace.models.layers import lengths_to_mask, masked_mean, run_lstm
from emotrace.models.outputs import ROIOutput


@dataclass(kw_only=True)
class ROIAttentionConfig(ModelConfig):
    """Method A; one stream, named by ``modalities`` (``("audio",)`` or ``("video",)``).

    Sizes are per LSTM direction. The paper fixes none of them; these defaults are the
    starting point for validation on training speakers, not its result.
    """

    input_dropout: float = 0.2
    lstm_hidden: int = 128
    lstm_layers: int = 2
    bidirectional: bool = True
    lstm_dropout: float = 0.2  # between stacked LSTM layers
    output_dropout: float = 0.3  # on the LSTM outputs, before attention and classifier
    attention_dim: int = 128  # rows of W in v · tanh(W h_t + b)
    join_mean_pool: bool = False  # True: the hybrid that also classifies the mean-pooled states
    # Fine-tuning the encoder's top layers (emotrace.models.encoder_top): this many of the
    # stacked input's top states, the top one being state `encoder_top_layer` of `encoder`,
    # are recomputed by trainable copies of the encoder's layers from the cached state below
    # them; the input is then read unpooled and pooled here by `frame_pooling`.
    finetune_top_layers: int = 0
    encoder: str = "whisper-base"
    encoder_top_layer: int = 5
    frame_pooling: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.modalities) != 1:
            raise ValueError(f"ROI attention reads one stream, got modalities {self.modalities}")
        if self.finetune_top_layers < 0 or self.frame_pooling < 1:
            raise ValueError("finetune_top_layers must be at least 0 and frame_pooling at least 1")
        if self.finetune_top_layers and self.layers_in(self.modalities[0]) <= self.finetune_top_layers:
            raise ValueError(
                f"fine-tuning {self.finetune_top_layers} top layers needs the cached state below them: "
                f"at least {self.finetune_top_layers + 1} stacked input layers"
            )
        if self.frame_pooling > 1 and not self.finetune_top_layers:
            raise ValueError("frame_pooling in the model is for fine-tuned top layers; otherwise the input spec pools")


class AdditiveAttention(nn.Module):
    """``a = softmax over valid frames of v · tanh(W h_t + b)``; exactly 0 on padding."""

    def __init__(self, input_dim: int, attention_dim: int):
        super().__init__()
        self.project = nn.Linear(input_dim, attention_dim)  # W, b
        self.score = nn.Linear(attention_dim, 1, bias=False)  # v

    def forward(self, states: Tensor, mask: Tensor) -> Tensor:
        scores = self.score(torch.tanh(self.project(states))).squeeze(-1)
        return scores.masked_fill(~mask, float("-inf")).softmax(-1)


class ROIAttention(EmotionModel):
    """Stacked (Bi)LSTM, additive attention pooling, linear classifier; see module doc."""

    config: ROIAttentionConfig

    def __init__(self, config: ROIAttentionConfig):
        super().__init__(config)
        (modality,) = config.modalities
        self.encoder_top = (
            EncoderTop(config.encoder, config.encoder_top_layer, config.finetune_top_layers, config.frame_pooling)
            if config.finetune_top_layers
            else None
        )
        self.front_end = config.front_end(modality)
        self.lstm = nn.LSTM(
            self.front_end.output_dim,
            config.lstm_hidden,
            num_layers=config.lstm_layers,
            bidirectional=config.bidirectional,
            dropout=config.lstm_dropout if config.lstm_layers > 1 else 0.0,
            batch_first=True,
        )
        state_dim = config.lstm_hidden * (2 if config.bidirectional else 1)
        self.output_dropout = nn.Dropout(config.output_dropout)
        self.attention = AdditiveAttention(state_dim, config.attention_dim)
        pooled_dim = 2 * state_dim if config.join_mean_pool else state_dim
        self.classifier = nn.Linear(pooled_dim, config.num_classes)

    def _encode(self, inputs: dict[str, Tensor | None]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(states (B, T, H), mask (B, T), lengths (B,), attention (B, T))``."""
        (modality,) = self.config.modalities
        features, lengths = self.streams(inputs)[modality]
        if self.encoder_top is not None:
            features, lengths = self.encoder_top(features, lengths)
        mask = lengths_to_mask(lengths, features.shape[-2])
        states, _ = run_lstm(self.lstm, self.front_end(features), lengths)
        states = self.output_dropout(states)
        return states, mask, lengths, self.attention(states, mask)

    def forward(self, **inputs: Tensor | None) -> ROIOutput:
        states, mask, lengths, attention = self._encode(inputs)
        pooled = torch.einsum("bt,bth->bh", attention, states)
        frame_inputs = states
        if self.config.join_mean_pool:
            pooled = torch.cat([pooled, masked_mean(states, mask)], dim=-1)
            frame_inputs = torch.cat([states, states], dim=-1)

        frame_posteriors = self.classifier(frame_inputs).softmax(-1) * mask.unsqueeze(-1)
        return ROIOutput(
            logits=self.classifier(pooled),
            attention=attention,
            frame_posteriors=frame_posteriors,
            mixture=torch.einsum("bt,btc->bc", attention, frame_posteriors),
            lengths=lengths,
        )

    def input_frames_per_output(self, modality: str) -> int:
        return self.config.frame_pooling

    def pretrained_parameters(self) -> list[nn.Parameter]:
        return [] if self.encoder_top is None else list(self.encoder_top.parameters())

    def logit_parts(self, **inputs: Tensor | None) -> dict[str, Tensor]:
        """The utterance logits ``(B, C)`` split by the path they come through:
        ``"attention"`` (U1 · sum_t a_t h_t + d) and ``"mean"`` (U2 · mean_t h_t; zeros
        without ``join_mean_pool``). They add up to ``forward``'s logits."""
        states, mask, _, attention = self._encode(inputs)
        width = states.shape[-1]
        weight = self.classifier.weight
        parts = {
            "attention": torch.einsum("bt,bth->bh", attention, states) @ weight[:, :width].T + self.classifier.bias
        }
        if self.config.join_mean_pool:
            parts["mean"] = masked_mean(states, mask) @ weight[:, width:].T
        else:
            parts["mean"] = torch.zeros_like(parts["attention"])
        return parts
