"""Method C: contrastive regularisation of an audio-text concatenation classifier.

Qian, Han et al., "Contrastive Regularization for Multimodal Emotion Recognition Using
Audio and Text", arXiv:2211.10885 (2022). An audio encoder and a text encoder produce
latent codes whose concatenation is classified (the baseline). A discriminator D(a, t)
tells (audio code, text code) pairs that carry the same emotion from pairs that do not;
adding its loss to the cross-entropy with weight alpha makes both codes hold the same
emotional information, which limits the harm a noisy modality does. Reported on IEMOCAP
4-class: +1.44 WA, +1.53 UA over the baseline.

Paper to code::

    audio code a = E_a(audio)                 self.audio_encoder
    text code  t = E_t(text)                  self.text_encoder
    y = softmax(U [a; t] + d)                 self.classifier
    D(a, t) = same emotion?                   PairDiscriminator
    positives: (a_i, t_i), same utterance     regulariser_loss, "bce"
    shuffled:  (a_i, t_pi(i)), labelled by whether y_i == y_pi(i)
    L = CE + alpha · BCE                      loss() at stage "regularised"

The authors' schedule is staged: unimodal pretraining, then the concatenated ensemble, then
fine-tuning with the regulariser. ``config.stage`` picks the loss of each stage
(``"unimodal"``: the audio head's plus the text head's cross-entropy; ``"fused"``: the
concatenation classifier's; ``"regularised"``: that plus alpha times the regulariser);
training moves through them by setting ``model.config.stage``. The forward pass always
returns all three sets of logits; at the unimodal stage, whose concatenation classifier is
not trained yet, ``logits`` is the two heads' ensemble (the log of their mean probability),
so validation picks the unimodal stage's epoch by what that stage trains.

Encoders. The authors: a 4-block CNN on 128x128 log-spectrogram crops giving a 512-d code
(``audio_encoder="cnn"``: each block 3x3 conv, batch norm, ReLU, 2x2 max pool, with
``audio_code_dim/8, /4, /2, /1`` channels, then the mean over what remains), and GloVe-300
word vectors into an LSTM(200) with attention (``text_encoder="recurrent"`` with
``text_code_dim=200``; the direction is not stated, we use a BiLSTM of 100 per direction).
For pretrained frames and token states: ``"recurrent"`` (front-end, BiLSTM, method A's
additive attention pooling) or ``"mean"`` (front-end, mean over valid frames, Linear + GELU).
Our defaults are ``"recurrent"`` for both, since this project's inputs are pretrained
features; the 512-d audio code is kept from the paper.

Regulariser. ``"bce"`` is the paper's discriminator; negatives come from shuffling the text
codes within the batch. ``"infonce"`` is the CPC-style alternative the authors tried, made
label-aware: for each audio code, every text code of the same label in the batch is a
positive, the rest are negatives (and symmetrically for text). Both use the same critic
D(a, t), an MLP on the concatenated pair (hidden 256). alpha was swept over 0.1-0.9 in the
paper; our default is 0.5 until validation says otherwise.

Caveats about the original: the published code does not run (the discriminator class is
missing), and its split is speaker-dependent; numbers from it are not comparable with the
speaker-independent protocol this project uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from emotrace.models.base import EmotionModel, ModelConfig
from emotrace.models.layers import lengths_to_mask, masked_mean, run_lstm
from emotrace.models.outputs import ContrastiveOutput, LossOutput
from emotrace.models.roi_attention import AdditiveAttention

CNN_BLOCKS = 4


@dataclass(kw_only=True)
class ContrastiveConfig(ModelConfig):
    """Method C; the paper's values are noted where it gives them."""

    modalities: tuple[str, ...] = ("audio", "text")
    audio_encoder: Literal["cnn", "recurrent", "mean"] = "recurrent"  # paper: "cnn"
    text_encoder: Literal["recurrent", "mean"] = "recurrent"  # paper: GloVe + LSTM + attention
    audio_code_dim: int = 512  # paper: 512 (CNN)
    text_code_dim: int = 200  # paper: LSTM(200)
    attention_dim: int = 128
    code_dropout: float = 0.3  # on the codes, before every classifier head
    regulariser: Literal["bce", "infonce"] = "bce"  # paper: "bce"
    alpha: float = 0.5  # paper: swept 0.1-0.9
    discriminator_hidden: int = 256
    stage: Literal["unimodal", "fused", "regularised"] = "regularised"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.modalities != ("audio", "text"):
            raise ValueError(f"contrastive fusion pairs audio with text, got {self.modalities}")
        choices = {
            "audio_encoder": ("cnn", "recurrent", "mean"),
            "text_encoder": ("recurrent", "mean"),
            "regulariser": ("bce", "infonce"),
            "stage": ("unimodal", "fused", "regularised"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.audio_code_dim % 8 or self.text_code_dim % 2:
            raise ValueError("audio_code_dim must be a multiple of 8 and text_code_dim even")
        if self.audio_encoder == "cnn" and self.layers_in("audio") != 1:
            raise ValueError("the spectrogram CNN reads one log-spectrogram, not stacked layers")


class SpectrogramCNN(nn.Module):
    """The authors' 4-block CNN over a log-spectrogram ``(B, T, F)``, padding-aware.

    Frames past each item's length are zeroed before every block, which is what the
    convolution's own zero padding does at the end of an unpadded input, and the final
    mean covers valid frames only: padding a batch does not change the codes (eval mode).
    """

    def __init__(self, frequency_bins: int, code_dim: int):
        super().__init__()
        self.frequency_bins = frequency_bins
        channels = [1] + [code_dim // 2 ** (CNN_BLOCKS - 1 - i) for i in range(CNN_BLOCKS)]
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(c_in, c_out, kernel_size=3, padding=1),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
                nn.MaxPool2d(2),
            )
            for c_in, c_out in zip(channels, channels[1:])
        )

    def forward(self, spectrogram: Tensor, lengths: Tensor) -> Tensor:
        if spectrogram.dim() == 4:  # a one-layer stack (B, 1, T, F)
            spectrogram = spectrogram.squeeze(1)
        if spectrogram.dim() != 3 or spectrogram.shape[-1] != self.frequency_bins:
            expected = f"(B, T, {self.frequency_bins})"
            raise ValueError(f"expected a log-spectrogram {expected}, got {tuple(spectrogram.shape)}")
        if lengths.min() < 2**CNN_BLOCKS:
            raise ValueError(f"the spectrogram CNN needs at least {2**CNN_BLOCKS} frames per item")
        x = spectrogram.unsqueeze(1)
        for block in self.blocks:
            x = x * lengths_to_mask(lengths, x.shape[2])[:, None, :, None]
            x = block(x)
            lengths = lengths // 2  # MaxPool2d drops an odd last frame
        x = x * lengths_to_mask(lengths, x.shape[2])[:, None, :, None]
        return x.sum(dim=(2, 3)) / (lengths * x.shape[3]).unsqueeze(-1)


class AttentiveRecurrentEncoder(nn.Module):
    """Front-end, one BiLSTM layer, additive attention pooling (as in method A)."""

    def __init__(self, config: ContrastiveConfig, modality: str, code_dim: int):
        super().__init__()
        self.front_end = config.front_end(modality)
        self.lstm = nn.LSTM(
            self.front_end.output_dim, code_dim // 2, bidirectional=True, batch_first=True
        )
        self.attention = AdditiveAttention(code_dim, config.attention_dim)

    def forward(self, features: Tensor, lengths: Tensor) -> Tensor:
        states, _ = run_lstm(self.lstm, self.front_end(features), lengths)
        attention = self.attention(states, lengths_to_mask(lengths, states.shape[1]))
        return torch.einsum("bt,bth->bh", attention, states)


class MeanPoolEncoder(nn.Module):
    """Front-end, mean over valid frames, Linear + GELU."""

    def __init__(self, config: ContrastiveConfig, modality: str, code_dim: int):
        super().__init__()
        self.front_end = config.front_end(modality)
        self.mlp = nn.Sequential(nn.Linear(self.front_end.output_dim, code_dim), nn.GELU())

    def forward(self, features: Tensor, lengths: Tensor) -> Tensor:
        frames = self.front_end(features)
        return self.mlp(masked_mean(frames, lengths_to_mask(lengths, frames.shape[1])))


class PairDiscriminator(nn.Module):
    """D(a, t): the logit that audio code ``a`` and text code ``t`` carry the same emotion.

    An MLP on ``[a; t]``, with its first layer split into an audio and a text part so that
    broadcasting ``a (B, 1, Da)`` against ``t (1, B, Dt)`` scores all B x B pairs at once.
    """

    def __init__(self, audio_dim: int, text_dim: int, hidden: int):
        super().__init__()
        self.audio_in = nn.Linear(audio_dim, hidden)
        self.text_in = nn.Linear(text_dim, hidden, bias=False)
        self.out = nn.Linear(hidden, 1)

    def forward(self, audio_code: Tensor, text_code: Tensor) -> Tensor:
        return self.out(F.relu(self.audio_in(audio_code) + self.text_in(text_code))).squeeze(-1)


class ContrastiveFusion(EmotionModel):
    """Audio and text encoders, unimodal heads, concatenation classifier, pair discriminator."""

    config: ContrastiveConfig

    def __init__(self, config: ContrastiveConfig):
        super().__init__(config)
        encoders = {"recurrent": AttentiveRecurrentEncoder, "mean": MeanPoolEncoder}
        if config.audio_encoder == "cnn":
            self.audio_encoder: nn.Module = SpectrogramCNN(
                config.input_dims["audio"], config.audio_code_dim
            )
        else:
            self.audio_encoder = encoders[config.audio_encoder](config, "audio", config.audio_code_dim)
        self.text_encoder = encoders[config.text_encoder](config, "text", config.text_code_dim)
        self.dropout = nn.Dropout(config.code_dropout)
        self.audio_head = nn.Linear(config.audio_code_dim, config.num_classes)
        self.text_head = nn.Linear(config.text_code_dim, config.num_classes)
        self.classifier = nn.Linear(config.audio_code_dim + config.text_code_dim, config.num_classes)
        self.discriminator = PairDiscriminator(
            config.audio_code_dim, config.text_code_dim, config.discriminator_hidden
        )

    def forward(self, **inputs: Tensor | None) -> ContrastiveOutput:
        streams = self.streams(inputs)
        audio_code = self.audio_encoder(*streams["audio"])
        text_code = self.text_encoder(*streams["text"])
        audio, text = self.dropout(audio_code), self.dropout(text_code)
        audio_logits, text_logits = self.audio_head(audio), self.text_head(text)
        if self.config.stage == "unimodal":  # the concatenation is untrained: the heads' ensemble speaks
            heads = torch.stack([audio_logits.log_softmax(-1), text_logits.log_softmax(-1)])
            logits = heads.logsumexp(0) - math.log(2)
        else:
            logits = self.classifier(torch.cat([audio, text], dim=-1))
        return ContrastiveOutput(
            logits=logits,
            audio_logits=audio_logits,
            text_logits=text_logits,
            audio_code=audio_code,
            text_code=text_code,
        )

    def regulariser_loss(self, audio_code: Tensor, text_code: Tensor, labels: Tensor) -> Tensor:
        """The contrastive term: BCE of the pair discriminator, or label-aware InfoNCE."""
        if self.config.regulariser == "bce":
            shuffled = torch.randperm(labels.shape[0], device=labels.device)
            scores = torch.cat(
                [
                    self.discriminator(audio_code, text_code),
                    self.discriminator(audio_code, text_code[shuffled]),
                ]
            )
            same_emotion = torch.cat([torch.ones_like(labels), (labels == labels[shuffled]).long()])
            return F.binary_cross_entropy_with_logits(scores, same_emotion.to(scores.dtype))
        scores = self.discriminator(audio_code[:, None], text_code[None, :])  # (B audio, B text)
        same_emotion = labels[:, None] == labels[None, :]

        def info_nce(rows: Tensor) -> Tensor:  # each row: one code against all of the other kind
            positives = rows.masked_fill(~same_emotion, float("-inf")).logsumexp(1)
            return (rows.logsumexp(1) - positives).mean()

        return (info_nce(scores) + info_nce(scores.T)) / 2

    def loss(self, output: ContrastiveOutput, labels: Tensor, class_mask: Tensor | None = None) -> LossOutput:
        """The loss of ``config.stage``, with its parts."""
        if self.config.stage == "unimodal":
            parts = {
                "ce_audio": self.classification_loss(output.audio_logits, labels, class_mask),
                "ce_text": self.classification_loss(output.text_logits, labels, class_mask),
            }
            return LossOutput(total=parts["ce_audio"] + parts["ce_text"], parts=parts)
        ce = self.classification_loss(output.logits, labels, class_mask)
        if self.config.stage == "fused":
            return LossOutput(total=ce, parts={"ce": ce})
        regulariser = self.regulariser_loss(output.audio_code, output.text_code, labels)
        return LossOutput(
            total=ce + self.config.alpha * regulariser,
            parts={"ce": ce, self.config.regulariser: regulariser},
        )
