"""Building blocks that several methods share, each written once.

Every model reads padded batches of frames: ``(B, T, D)``, or ``(B, L, T, D)`` when the
``L`` layers of a pretrained encoder are stacked, with ``lengths (B,)`` counting the valid
frames of each item. The helpers here keep padding out of every result, so appending
padding to a batch never changes a model's output in eval mode.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def lengths_to_mask(lengths: Tensor, max_length: int) -> Tensor:
    """``(B, max_length)`` bool mask, True on the valid frames of each item."""
    positions = torch.arange(max_length, device=lengths.device)
    return positions[None, :] < lengths[:, None]


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x (B, T, D)`` over the frames where ``mask (B, T)`` is True."""
    weights = mask.to(x.dtype).unsqueeze(-1)
    return (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def sinusoidal_positions(length: int, dim: int, device: torch.device | None = None) -> Tensor:
    """``(length, dim)`` sinusoidal position codes of Vaswani et al. (2017), section 3.5."""
    positions = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    frequencies = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    codes = torch.zeros(length, dim, device=device)
    codes[:, 0::2] = torch.sin(positions * frequencies)
    codes[:, 1::2] = torch.cos(positions * frequencies[: dim // 2])
    return codes


def run_lstm(lstm: nn.LSTM, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """Run a batch-first ``lstm`` over the valid frames only (packed sequences).

    Returns the per-frame outputs ``(B, T, H·directions)`` (zeros on padding) and the
    last layer's final state ``(B, H·directions)``: the state after the last valid frame
    for the forward direction, after the first frame for the backward one.
    """
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    outputs, (final_hidden, _) = lstm(packed)
    outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=x.shape[1])
    directions = 2 if lstm.bidirectional else 1
    last_state = torch.cat(list(final_hidden[-directions:]), dim=-1)
    return outputs, last_state


class LayerWeightedSum(nn.Module):
    """Learnable softmax-weighted sum over the stacked layers of a pretrained encoder.

    The weighted sum is SUPERB's (Yang et al., Interspeech 2021). Normalising each layer
    per frame first, without learned parameters, is our choice: pre-norm encoders such as
    Whisper and WavLM grow their hidden states' norm from layer to layer, and the weights
    should compare what the layers encode, not their scales. The weights start equal. With
    one layer the module is the identity and also accepts the plain ``(B, T, D)`` shape.
    """

    def __init__(self, num_layers: int):
        super().__init__()
        self.num_layers = num_layers
        self.logits = nn.Parameter(torch.zeros(num_layers)) if num_layers > 1 else None

    def forward(self, x: Tensor) -> Tensor:
        if self.logits is None:
            return x.squeeze(1) if x.dim() == 4 else x
        normalised = F.layer_norm(x, x.shape[-1:])
        return torch.einsum("l,bltd->btd", self.logits.softmax(0), normalised)


class FrameFrontEnd(nn.Module):
    """Pretrained frames to model frames: standardisation, layer mix, input norm and
    dropout, projection.

    ``(B, L, T, D)`` or ``(B, T, D)`` in, ``(B, T, output_dim)`` out. With
    ``standardise``, each layer and dimension is first shifted and scaled by the moments
    of the training frames (:meth:`set_input_moments`, kept as buffers so a checkpoint
    carries them): the z-scoring a linear probe gets from its scaler. Per-frame LayerNorm
    alone cannot do that: a few huge dimensions of Whisper and WavLM states (orders of
    magnitude above the rest) dominate each frame's norm. The projection is Linear +
    LayerNorm + GELU; with ``projection_dim=None`` it is skipped and the output keeps the
    input width.
    """

    def __init__(
        self,
        modality: str,
        input_dim: int,
        num_layers: int,
        input_norm: bool,
        input_dropout: float,
        projection_dim: int | None,
        standardise: bool = False,
    ):
        super().__init__()
        self.modality = modality
        self.input_dim = input_dim
        if standardise:
            self.register_buffer("input_mean", torch.zeros(num_layers, input_dim))
            self.register_buffer("input_std", torch.ones(num_layers, input_dim))
        else:
            self.input_mean = self.input_std = None
        self.layer_sum = LayerWeightedSum(num_layers)
        self.norm = nn.LayerNorm(input_dim) if input_norm else nn.Identity()
        self.dropout = nn.Dropout(input_dropout)
        if projection_dim is None:
            self.projection: nn.Module = nn.Identity()
            self.output_dim = input_dim
        else:
            self.projection = nn.Sequential(
                nn.Linear(input_dim, projection_dim), nn.LayerNorm(projection_dim), nn.GELU()
            )
            self.output_dim = projection_dim

    def forward(self, x: Tensor) -> Tensor:
        layers = self.layer_sum.num_layers
        shape_ok = x.shape[-1] == self.input_dim and (
            (x.dim() == 4 and x.shape[1] == layers) or (x.dim() == 3 and layers == 1)
        )
        if not shape_ok:
            expected = f"(B, {layers}, T, {self.input_dim})"
            if layers == 1:
                expected = f"(B, T, {self.input_dim}) or {expected}"
            raise ValueError(f"expected frames of shape {expected}, got {tuple(x.shape)}")
        if self.input_mean is not None:
            mean, std = (self.input_mean, self.input_std) if x.dim() == 4 else (self.input_mean[0], self.input_std[0])
            x = (x - mean.unsqueeze(-2)) / std.unsqueeze(-2)
        return self.projection(self.dropout(self.norm(self.layer_sum(x))))

    def set_input_moments(self, mean: Tensor, std: Tensor) -> None:
        """Standardise inputs with these ``(layers, dims)`` moments of the training frames."""
        if self.input_mean is None:
            raise ValueError(f"the {self.modality} front-end was built without standardise=True")
        if mean.shape != self.input_mean.shape or std.shape != self.input_std.shape:
            raise ValueError(f"{self.modality} moments {tuple(mean.shape)} do not match {tuple(self.input_mean.shape)}")
        self.input_mean.copy_(mean)
        self.input_std.copy_(std)
