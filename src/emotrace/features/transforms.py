"""From cached extractor output to model input, the same way in training and prediction.

An :class:`InputSpec` (stored in every checkpoint) says how a modality's model input is
made; :func:`model_frames` applies it, so training, evaluation, prediction and export
cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emotrace.features.base import Features
from emotrace.features.normalization import Moments, standardise_utterance


@dataclass(frozen=True)
class InputSpec:
    """How one modality's model input is made: extractor, then layer choice, then pooling.

    ``features`` is an extractor spec (see :func:`emotrace.features.registry.get_extractor`);
    ``layers`` names the encoder layers the model reads (``None``: all the extractor gives),
    so one cached store of every layer serves models that read different layers;
    ``frame_pooling`` averages that many frames into one; ``utterance_norm`` standardises
    each utterance's frames by their own mean and standard deviation over time (per layer
    and dimension), which removes what is constant over a clip (channel, microphone, much
    of the voice) along with whatever emotion lives in the clip's average.
    """

    features: str
    layers: tuple[int, ...] | None = None
    frame_pooling: int = 1
    utterance_norm: bool = False

    def __post_init__(self) -> None:
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(layer) for layer in self.layers))
        if self.frame_pooling < 1:
            raise ValueError(f"frame_pooling must be at least 1, got {self.frame_pooling}")


def pool_frames(data: np.ndarray, factor: int) -> np.ndarray:
    """Average each run of ``factor`` frames of ``(layers, frames, dims)`` features.

    Emotion changes over hundreds of milliseconds, so 50 Hz encoder frames can be pooled
    to 25 or 12.5 Hz: recurrent models then train several times faster and see longer
    context per step. The last, shorter run is averaged over the frames it has.
    """
    if factor < 1:
        raise ValueError(f"frame pooling factor must be at least 1, got {factor}")
    if factor == 1 or data.shape[1] == 0:
        return data
    layers, frames, dims = data.shape
    whole = frames // factor * factor
    pooled = data[:, :whole].reshape(layers, whole // factor, factor, dims).mean(2)
    if whole < frames:
        pooled = np.concatenate([pooled, data[:, whole:].mean(1, keepdims=True)], axis=1)
    return pooled.astype(np.float32, copy=False)


def select_layers(features: Features, layers: tuple[int, ...] | None) -> np.ndarray:
    """``(len(layers), frames, dims)``: the named encoder layers of ``features``."""
    if layers is None:
        return features.data
    missing = [layer for layer in layers if layer not in features.layers]
    if missing:
        raise ValueError(f"features hold layers {list(features.layers)}, not {missing}")
    return features.data[[features.layers.index(layer) for layer in layers]]


def model_frames(features: Features, spec: InputSpec, moments: Moments | None = None) -> np.ndarray:
    """Features as the model reads them: chosen layers, speaker-normalised, standardised per
    utterance when the spec says so, then pooled.

    Normalising before pooling matches how the speaker's moments are estimated (over the
    unpooled frames of the chosen layers).
    """
    data = select_layers(features, spec.layers)
    if moments is not None:
        data = moments.normalise(data)
    if spec.utterance_norm:
        data = standardise_utterance(data)
    return pool_frames(data, spec.frame_pooling)


def frame_rate(features: Features, spec: InputSpec) -> float:
    """Frames per second of :func:`model_frames`' output (0 for text and functionals)."""
    return features.frame_rate / spec.frame_pooling
