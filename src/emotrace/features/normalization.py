"""Per-speaker feature normalisation: what makes the *speaker-adaptive* protocol.

A speaker's voice shifts every frame feature (pitch, timbre, recording channel); removing
each speaker's own mean and scale, estimated from that speaker's unlabelled recordings,
leaves mostly what varies within the speaker, emotion among it. It is worth +8 to +10 UA
on RAVDESS, but it needs several recordings of the test speaker, so it is a protocol of
its own and never applied silently: reports and predictions say when it was used.

Statistics are pooled over all frames of all of a speaker's recordings, per layer and
dimension, in float64 so that long recordings do not lose precision.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

#: floor on the standard deviation, so constant dimensions do not blow up
MIN_STD = 1e-5


@dataclass(frozen=True)
class Moments:
    """Mean and standard deviation ``(layers, dims)`` of a speaker's frames."""

    mean: np.ndarray
    std: np.ndarray
    frames: int
    recordings: int

    def normalise(self, data: np.ndarray) -> np.ndarray:
        """``(layers, frames, dims)`` features with this speaker's moments removed."""
        if data.shape[0] != self.mean.shape[0] or data.shape[2] != self.mean.shape[1]:
            raise ValueError(f"features {data.shape} do not match moments {self.mean.shape}")
        return ((data - self.mean[:, None, :]) / self.std[:, None, :]).astype(np.float32)


class MomentAccumulator:
    """Running sums of frames, for :class:`Moments` without holding every frame."""

    def __init__(self) -> None:
        self.count = 0
        self.recordings = 0
        self.total: np.ndarray | None = None
        self.squares: np.ndarray | None = None

    def add(self, data: np.ndarray) -> None:
        """Add one recording's ``(layers, frames, dims)`` features."""
        frames = data.astype(np.float64)
        if self.total is None:
            self.total = np.zeros((frames.shape[0], frames.shape[2]))
            self.squares = np.zeros_like(self.total)
        self.total += frames.sum(1)
        self.squares += np.square(frames).sum(1)
        self.count += frames.shape[1]
        self.recordings += 1

    def moments(self) -> Moments:
        if self.total is None or self.count == 0:
            raise ValueError("no frames to estimate speaker moments from")
        mean = self.total / self.count
        variance = np.maximum(self.squares / self.count - np.square(mean), 0.0)
        std = np.maximum(np.sqrt(variance), MIN_STD)
        return Moments(mean.astype(np.float32), std.astype(np.float32), self.count, self.recordings)


def speaker_moments(features: Iterable[tuple[str, np.ndarray]]) -> dict[str, Moments]:
    """Moments per speaker from ``(speaker, (layers, frames, dims) features)`` pairs."""
    accumulators: dict[str, MomentAccumulator] = {}
    for speaker, data in features:
        accumulators.setdefault(speaker, MomentAccumulator()).add(data)
    return {speaker: accumulator.moments() for speaker, accumulator in accumulators.items()}


def standardise_utterance(data: np.ndarray) -> np.ndarray:
    """``(layers, frames, dims)`` features minus their mean over frames, over their std
    (floored at :data:`MIN_STD`): per-utterance normalisation, which needs nothing beyond
    the clip and so belongs to the utterance-level protocol."""
    frames = data.astype(np.float64)
    mean = frames.mean(1, keepdims=True)
    std = np.maximum(frames.std(1, keepdims=True), MIN_STD)
    return ((frames - mean) / std).astype(np.float32)
