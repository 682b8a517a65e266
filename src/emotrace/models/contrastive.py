"""Method C: contrastive regularisation of an audio-text concatenation classifier.

Qian, Han et al., "Contrastive Regularization for Multimodal Emotion Recognition Using
Audio and Text", arXiv:2211.10885 (2022); the authors' code is
github.com/qianfan1996/Contrastive-Regularization-MMER. An audio encoder and a text encoder
produce latent codes whose concatenation is classified (the baseline). A discriminator
D(a, t) tells matched (audio code, text code) pairs from mismatched ones; adding its loss to
the cross-entropy makes both codes hold the same emotional information, which limits the
harm a noisy modality does. Reported on IEMOCAP 4-class: +1.44 WA, +1.53 UA over the
baseline.

Paper to code::

    audio code a = E_a(audio)                 self.audio_encoder
    text code  t = E_t(text)                  self.text_encoder
    y = softmax(U [a; t] + d)                 self.classifier (or self.fresh_classifier)
    D(a, t) = matched pair?                   PairDiscriminator
    positives: (a_i, t_i), same utterance     regulariser_loss, "bce"
    negatives: (a_i, t_pi(i)), a shuffled batch
    L = (1 - alpha) CE + alpha (BCE_pos + BCE_neg)    loss_weighting="authors"

What the options implement, and the defaults (which are this project's, not the authors'):

- ``loss_weighting``: ``"authors"`` is the authors' (1 - alpha) CE + alpha (BCE_pos +
  BCE_neg), each BCE the mean over its pairs; ``"additive"`` (default) is CE + alpha BCE with
  BCE the mean over all 2B pairs, i.e. CE + alpha (BCE_pos + BCE_neg) / 2. At alpha 0.5 the
  regulariser weighs 4x less against CE in "additive" than in "authors".
- ``negatives``: ``"shuffled"`` is the authors': every pair with a shuffled text code is a
  negative, whatever its labels; ``"label_aware"`` (default) labels a shuffled pair positive
  when both items carry the same emotion, so only different-emotion pairs are negatives.
- ``audio_encoder``: ``"cnn_flat"`` is the authors' CNN: 4 blocks of 3x3 convolution with
  ``cnn_filters`` (8) filters, ReLU and 2x2 max pooling, no batch norm, the map flattened
  (128x128 log-spectrogram -> 8 x 8 x 8 = 512-d, about 2k parameters). The authors fed fixed
  128x128 images; here a spectrogram is cut into ``cnn_frames``-frame windows (the last
  zero-padded) and the codes of its windows are averaged, so whole utterances can be tested
  (training crops of ``cnn_frames`` frames give one window, as the authors had).
  ``"cnn"`` is an earlier reading of it: channels ``audio_code_dim/8 .. /1`` with batch norm
  and a mean over what remains (about 1.5M parameters at 512). ``"recurrent"`` (default) is
  a front-end, a BiLSTM and method A's additive attention; ``"mean"`` a front-end, the mean
  over valid frames and Linear + GELU.
- ``text_encoder``: ``"lstm_dot"`` is the authors': a unidirectional LSTM(``text_code_dim``,
  200 in their code) whose states are scored by the dot product with its last state, the
  code being the softmax-weighted sum of states; with the front-end's input dropout (0.75 in
  their code) and, as inputs, word vectors (GloVe-300 there). ``"recurrent"`` (default, a
  BiLSTM of ``text_code_dim / 2`` per direction with additive attention) and ``"mean"`` are
  ours, for pretrained token states.
- ``fresh_classifier``: the authors' third stage trains a new concatenation classifier with
  dropout ``fresh_classifier_dropout`` (0.7), not the second stage's. With this flag the model
  holds a second classifier that only the ``"regularised"`` stage uses and trains; set it in
  every stage of a chained schedule so that ``init_from`` carries it, untrained, into stage 3.

The authors' schedule is staged: unimodal pretraining, then the concatenated ensemble, then
fine-tuning with the regulariser. ``config.stage`` picks the loss of each stage
(``"unimodal"``: the audio head's plus the text head's cross-entropy; ``"fused"``: the
concatenation classifier's; ``"regularised"``: that plus the regulariser, weighted as
``loss_weighting`` says); ``init_from`` chains the stages. At the unimodal stage, whose
concatenation classifier is not trained yet, ``logits`` is the two heads' ensemble (the log
of their mean probability), so validation picks the unimodal stage's epoch by what it trains.

``regulariser="infonce"`` is the CPC-style alternative the authors tried, made label-aware
here: for each audio code, every text code of the same label in the batch is a positive, the
rest are negatives (and symmetrically). Both regularisers use the same critic D(a, t), an
MLP on the concatenated pair (hidden 256); the authors' discriminator class is missing from
their code, so its form is ours. alpha was swept over 0.1-0.9 by the authors; choose it on
validation speakers (``benchmarks/selection.py``).

Other differences from the authors' code: they select the epoch by validation loss (here
validation UA), use one dropout per head (here ``code_dropout`` before every head) and
Adam without weight decay; their split is speaker-dependent, and their published code does
not run (the discriminator is missing). Numbers from it are not comparable with the
speaker-independent protocol this project uses.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from itertools import pairwise
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
    audio_encoder: Literal["cnn_flat", "cnn", "recurrent", "mean"] = "recurrent"  # authors: "cnn_flat"
    text_encoder: Literal["lstm_dot", "recurrent", "mean"] = "recurrent"  # authors: "lstm_dot"
    audio_code_dim: int = 512  # authors: 512 (8 filters x 8 x 8 after the CNN); cnn_flat derives its own
    text_code_dim: int = 200  # authors: LSTM(200)
    cnn_filters: int = 8  # "cnn_flat": filters per block (authors: 8)
    cnn_frames: int = 128  # "cnn_flat": frames per window (authors: 128x128 images)
    attention_dim: int = 128
    code_dropout: float = 0.3  # on the codes, before every classifier head
    regulariser: Literal["bce", "infonce"] = "bce"  # authors: "bce"
    alpha: float = 0.5  # authors: swept 0.1-0.9
    loss_weighting: Literal["additive", "authors"] = "additive"  # authors: "authors"
    negatives: Literal["label_aware", "shuffled"] = "label_aware"  # authors: "shuffled"
    discriminator_hidden: int = 256
    fresh_classifier: bool = False  # authors: True (stage 3 trains a new classifier)
    fresh_classifier_dropout: float = 0.7  # authors: 0.7
    stage: Literal["unimodal", "fused", "regularised"] = "regularised"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.modalities != ("audio", "text"):
            raise ValueError(f"contrastive fusion pairs audio with text, got {self.modalities}")
        choices = {
            "audio_encoder": ("cnn_flat", "cnn", "recurrent", "mean"),
            "text_encoder": ("lstm_dot", "recurrent", "mean"),
            "regulariser": ("bce", "infonce"),
            "loss_weighting": ("additive", "authors"),
            "negatives": ("label_aware", "shuffled"),
            "stage": ("unimodal", "fused", "regularised"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.audio_code_dim % 8 or self.text_code_dim % 2:
            raise ValueError("audio_code_dim must be a multiple of 8 and text_code_dim even")
        if self.audio_encoder in ("cnn", "cnn_flat") and self.layers_in("audio") != 1:
            raise ValueError("the spectrogram CNN reads one log-spectrogram, not stacked layers")
        if self.audio_encoder == "cnn_flat" and self.audio_width < 1:
            raise ValueError(f"cnn_flat needs cnn_frames and the spectrogram's bins to be at least {2**CNN_BLOCKS}")
        if not 0.0 <= self.alpha <= 1.0 and self.loss_weighting == "authors":
            raise ValueError(f"with the authors' weighting alpha lies in [0, 1], got {self.alpha}")

    @property
    def audio_width(self) -> int:
        """The audio code's width: ``audio_code_dim``, except that ``"cnn_flat"``'s follows from
        its filters, window and bins (``filters x frames/16 x bins/16``; 512 for the authors')."""
        if self.audio_encoder != "cnn_flat":
            return self.audio_code_dim
        return self.cnn_filters * (self.cnn_frames // 2**CNN_BLOCKS) * (self.input_dims["audio"] // 2**CNN_BLOCKS)


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
            for c_in, c_out in pairwise(channels)
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


class FlatSpectrogramCNN(nn.Module):
    """The authors' CNN: 4 x (3x3 conv with ``filters`` filters, ReLU, 2x2 max pool), flattened.

    A log-spectrogram ``(B, T, F)`` is cut into windows of ``frames`` frames (frames past an
    item's length zeroed, the last window zero-padded); each window's flattened map is a code
    of ``filters x frames/16 x F/16`` values and an item's code is the mean over its windows.
    Padding a batch changes no item's windows, so it does not change the codes.
    """

    def __init__(self, frequency_bins: int, filters: int, frames: int):
        super().__init__()
        self.frequency_bins, self.frames = frequency_bins, frames
        channels = [1] + [filters] * CNN_BLOCKS
        self.blocks = nn.Sequential(
            *(
                layer
                for c_in, c_out in itertools.pairwise(channels)
                for layer in (nn.Conv2d(c_in, c_out, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
            )
        )

    def forward(self, spectrogram: Tensor, lengths: Tensor) -> Tensor:
        if spectrogram.dim() == 4:  # a one-layer stack (B, 1, T, F)
            spectrogram = spectrogram.squeeze(1)
        if spectrogram.dim() != 3 or spectrogram.shape[-1] != self.frequency_bins:
            expected = f"(B, T, {self.frequency_bins})"
            raise ValueError(f"expected a log-spectrogram {expected}, got {tuple(spectrogram.shape)}")
        batch, length = spectrogram.shape[:2]
        windows = -(-length // self.frames)
        x = spectrogram * lengths_to_mask(lengths, length)[..., None]
        x = F.pad(x, (0, 0, 0, windows * self.frames - length))
        x = x.reshape(batch * windows, 1, self.frames, self.frequency_bins)
        codes = self.blocks(x).flatten(1).reshape(batch, windows, -1)
        starts = torch.arange(windows, device=lengths.device) * self.frames
        valid = (starts[None, :] < lengths[:, None]).to(codes.dtype)
        return (codes * valid[..., None]).sum(1) / valid.sum(1, keepdim=True)


class DotAttentionLSTM(nn.Module):
    """The authors' text encoder: front-end, a unidirectional LSTM, attention scored by each
    state's dot product with the last state, the code being the weighted sum of states."""

    def __init__(self, config: ContrastiveConfig, modality: str, code_dim: int):
        super().__init__()
        self.front_end = config.front_end(modality)
        self.lstm = nn.LSTM(self.front_end.output_dim, code_dim, batch_first=True)

    def forward(self, features: Tensor, lengths: Tensor) -> Tensor:
        states, last_state = run_lstm(self.lstm, self.front_end(features), lengths)
        scores = torch.einsum("bth,bh->bt", states, last_state)
        weights = scores.masked_fill(~lengths_to_mask(lengths, states.shape[1]), float("-inf")).softmax(-1)
        return torch.einsum("bt,bth->bh", weights, states)


class AttentiveRecurrentEncoder(nn.Module):
    """Front-end, one BiLSTM layer, additive attention pooling (as in method A)."""

    def __init__(self, config: ContrastiveConfig, modality: str, code_dim: int):
        super().__init__()
        self.front_end = config.front_end(modality)
        self.lstm = nn.LSTM(self.front_end.output_dim, code_dim // 2, bidirectional=True, batch_first=True)
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
        encoders = {"recurrent": AttentiveRecurrentEncoder, "mean": MeanPoolEncoder, "lstm_dot": DotAttentionLSTM}
        if config.audio_encoder == "cnn":
            self.audio_encoder: nn.Module = SpectrogramCNN(config.input_dims["audio"], config.audio_code_dim)
        elif config.audio_encoder == "cnn_flat":
            self.audio_encoder = FlatSpectrogramCNN(config.input_dims["audio"], config.cnn_filters, config.cnn_frames)
        else:
            self.audio_encoder = encoders[config.audio_encoder](config, "audio", config.audio_code_dim)
        self.text_encoder = encoders[config.text_encoder](config, "text", config.text_code_dim)
        self.dropout = nn.Dropout(config.code_dropout)
        self.audio_head = nn.Linear(config.audio_width, config.num_classes)
        self.text_head = nn.Linear(config.text_code_dim, config.num_classes)
        self.classifier = nn.Linear(config.audio_width + config.text_code_dim, config.num_classes)
        if config.fresh_classifier:
            self.fresh_dropout = nn.Dropout(config.fresh_classifier_dropout)
            self.fresh_classifier = nn.Linear(config.audio_width + config.text_code_dim, config.num_classes)
        self.discriminator = PairDiscriminator(config.audio_width, config.text_code_dim, config.discriminator_hidden)

    def forward(self, **inputs: Tensor | None) -> ContrastiveOutput:
        streams = self.streams(inputs)
        audio_code = self.audio_encoder(*streams["audio"])
        text_code = self.text_encoder(*streams["text"])
        audio, text = self.dropout(audio_code), self.dropout(text_code)
        audio_logits, text_logits = self.audio_head(audio), self.text_head(text)
        if self.config.stage == "unimodal":  # the concatenation is untrained: the heads' ensemble speaks
            heads = torch.stack([audio_logits.log_softmax(-1), text_logits.log_softmax(-1)])
            logits = heads.logsumexp(0) - math.log(2)
        elif self.config.fresh_classifier and self.config.stage == "regularised":
            logits = self.fresh_classifier(self.fresh_dropout(torch.cat([audio_code, text_code], dim=-1)))
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
        """The contrastive term: the pair discriminator's BCE, or label-aware InfoNCE.

        BCE is ``BCE_pos + BCE_neg`` (each the mean over its B pairs) with the authors'
        weighting, their mean ``(BCE_pos + BCE_neg) / 2`` with the additive one. Negatives pair
        each audio code with the text code of a shuffled batch; ``negatives="label_aware"``
        makes such a pair a positive when both items carry the same emotion.
        """
        if self.config.regulariser == "bce":
            shuffled = torch.randperm(labels.shape[0], device=labels.device)
            positive = self.discriminator(audio_code, text_code)
            negative = self.discriminator(audio_code, text_code[shuffled])
            targets = torch.zeros_like(negative)
            if self.config.negatives == "label_aware":
                targets = (labels == labels[shuffled]).to(negative.dtype)
            parts = F.binary_cross_entropy_with_logits(
                positive, torch.ones_like(positive)
            ) + F.binary_cross_entropy_with_logits(negative, targets)
            return parts if self.config.loss_weighting == "authors" else parts / 2
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
        alpha = self.config.alpha
        if self.config.loss_weighting == "authors":
            total = (1 - alpha) * ce + alpha * regulariser
        else:
            total = ce + alpha * regulariser
        return LossOutput(total=total, parts={"ce": ce, self.config.regulariser: regulariser})
