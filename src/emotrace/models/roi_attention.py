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

With attention pooling alone and a linear classifier, the utterance logits are exactly the
attention-weighted mean of the frame logits, so the frame posteriors are the evidence the
decision was built from; the classifier is linear for that reason.

Choices the paper leaves open (defaults in :class:`ROIAttentionConfig`): LSTM width and
depth (128 per direction, 2 layers, bidirectional), attention width (128), the rule that
turns weights into ROI segments (``"above_uniform"``: a_t > 1/T_valid; or ``"mass"``: the
fewest frames holding a given share of the attention) and how nearby frames merge into
spans (gaps up to 0.1 s merged).

Additions for frozen pretrained frames, where the plain model overfits (the project's
notes: a BiLSTM(128) with attention reached 69.7 UA on Whisper frames of RAVDESS, and
these additions, with time masking and random crops in training, did better): a
learnable weighted sum over stacked encoder layers, input LayerNorm and dropout, a
projection (Linear + LayerNorm + GELU) before the LSTM, dropout after it, and joining the
attention-pooled vector with the mean-pooled one before the classifier. Then the frame
posteriors apply the classifier to ``[h_t, h_t]``: the vector a one-frame utterance made of
h_t would get. The paper's model is ``num_layers_in={}, input_norm=False,
input_dropout=0, projection_dim=None, output_dropout=0, join_mean_pool=False``.
Augmentation (time masking, random crops) is training code's business, not the model's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from emotrace.models.base import EmotionModel, ModelConfig
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
    join_mean_pool: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.modalities) != 1:
            raise ValueError(f"ROI attention reads one stream, got modalities {self.modalities}")


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

    def forward(self, **inputs: Tensor | None) -> ROIOutput:
        (modality,) = self.config.modalities
        features, lengths = self.streams(inputs)[modality]
        mask = lengths_to_mask(lengths, features.shape[-2])

        states, _ = run_lstm(self.lstm, self.front_end(features), lengths)
        states = self.output_dropout(states)
        attention = self.attention(states, mask)
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
