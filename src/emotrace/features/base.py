"""What every feature extractor returns, and the interface the store and pipeline rely on.

An extractor turns a batch of waveforms (16 kHz mono float32), transcripts or video clips
(:class:`~emotrace.features.video.reader.VideoClip`) into one :class:`Features` per input.
Its :meth:`Extractor.config` is everything that determines the numbers (model id and
revision, layers, version of the extractor code): the store keys cached entries by it, so
changing any of it invalidates exactly those entries.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Modality = Literal["audio", "text", "video"]


@dataclass(frozen=True)
class Features:
    """Features of one input.

    ``data`` is ``(layers, frames, dims)`` float32 (``layers == 1`` for single-layer
    extractors; ``frames == 1`` for utterance-level functionals). ``frame_rate`` is in
    frames per second of the input audio or video (``0.0`` for utterance-level features and
    for text). ``layers`` names the encoder layer of each slice (0 = embeddings). For text,
    ``tokens`` holds the token strings and ``word_index`` maps each token to the index of
    the word it came from (-1 for special tokens), keeping the word/token alignment.
    """

    data: np.ndarray
    frame_rate: float
    layers: tuple[int, ...] = (0,)
    tokens: tuple[str, ...] | None = None
    word_index: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.data.ndim != 3 or self.data.shape[0] != len(self.layers):
            raise ValueError(f"features must be (layers={len(self.layers)}, frames, dims), got {self.data.shape}")


class Extractor(ABC):
    """A named feature extractor over a batch of waveforms or transcripts."""

    #: registry name, e.g. ``"whisper-base"``
    name: str
    modality: Modality
    #: bump when the extractor code changes its numbers; part of :meth:`config`
    version: int = 1

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-serialisable description of everything that determines the output."""

    @abstractmethod
    def extract(self, inputs: Sequence[np.ndarray] | Sequence[str]) -> list[Features]:
        """Features for each input, in order (waveforms are 16 kHz mono float32; video
        extractors take clips)."""
