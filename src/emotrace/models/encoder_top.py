"""Fine-tuning the top layers of a frozen encoder on its cached lower layers' activations.

Whisper's encoder states are cached per layer (``features.whisper``: state ``k`` is the output
of ``encoder.layers[k - 1]``). A model that reads layers ``(..., k - n, ..., k)`` can recompute
the top ``n`` of them from the cached state ``k - n`` with trainable copies of
``encoder.layers[k - n : k]``, initialised from the pretrained weights: the encoder's top is
fine-tuned while its lower layers, and the features on disk, stay frozen. Untrained, the
copies reproduce the cached states (to float tolerance) on the frames they are given.

The copies need the encoder's own 50 Hz frames: the input is read unpooled
(``frame_pooling: 1`` in the input spec) and this module pools after the recomputation, the
way :func:`~emotrace.features.transforms.pool_frames` pools (the last, shorter run averaged
over the frames it has).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from emotrace.features.whisper import WhisperEncoderExtractor, load_whisper_encoder
from emotrace.models.layers import lengths_to_mask


class EncoderTop(nn.Module):
    """Trainable copies of ``encoder``'s layers ``top_layer - count + 1 .. top_layer`` (state
    indices), applied to state ``top_layer - count`` of ``(B, L, T, D)`` stacked inputs whose
    last ``count + 1`` entries are those states; then frame pooling by ``pooling``."""

    def __init__(self, encoder: str, top_layer: int, count: int, pooling: int):
        super().__init__()
        pretrained = load_whisper_encoder(WhisperEncoderExtractor(encoder).source)
        if not count <= top_layer - 1 or top_layer >= len(pretrained.layers):
            raise ValueError(
                f"{encoder}: can fine-tune layers below its last ({len(pretrained.layers)}, which adds the "
                f"final layer norm) from a cached lower state; got top layer {top_layer} and {count} layers"
            )
        self.layers = nn.ModuleList(pretrained.layers[top_layer - count : top_layer])
        self.count, self.pooling = count, pooling

    def forward(self, states: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``(states with the top ``count`` replaced, pooled; pooled lengths)``."""
        hidden = states[:, -self.count - 1]
        mask = lengths_to_mask(lengths, states.shape[2])
        additive = torch.zeros(mask.shape, dtype=hidden.dtype, device=hidden.device)
        additive = additive.masked_fill(~mask, torch.finfo(hidden.dtype).min)[:, None, None, :]
        recomputed = []
        for layer in self.layers:
            hidden = layer(hidden, additive)
            recomputed.append(hidden)
        states = torch.cat([states[:, : -self.count], torch.stack(recomputed, dim=1)], dim=1)
        return pool_frames(states, lengths, self.pooling)


def pool_frames(states: Tensor, lengths: Tensor, factor: int) -> tuple[Tensor, Tensor]:
    """``(B, L, T, D)`` averaged over runs of ``factor`` valid frames (a shorter last run over
    the frames it has), and the pooled lengths ``ceil(lengths / factor)``."""
    if factor == 1:
        return states, lengths
    batch, layers, frames, dims = states.shape
    padded = -frames % factor
    mask = lengths_to_mask(lengths, frames).to(states.dtype)
    states = nn.functional.pad(states * mask[:, None, :, None], (0, 0, 0, padded))
    counts = nn.functional.pad(mask, (0, padded)).reshape(batch, -1, factor).sum(-1)
    sums = states.reshape(batch, layers, -1, factor, dims).sum(3)
    return sums / counts.clamp(min=1)[:, None, :, None], (lengths + factor - 1) // factor
