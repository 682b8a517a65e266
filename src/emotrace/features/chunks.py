"""Long inputs in bounded memory: overlapping windows, stitched back by frame index.

Self-attention memory grows with the square of the length, and Whisper cannot see more
than 30 s at once, so a long recording is cut into windows. Each window owns a stretch of
the input and sees ``overlap`` samples of context on either side of it; only the frames of
its own stretch are kept. Window boundaries fall on multiples of the model's frame step,
so window-local frame ``f`` is global frame ``start / frame_step + f`` and the stitched
output has exactly as many frames as one pass over the whole input would give.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Window:
    """Samples ``[start, stop)`` go to the model; its frames ``[keep_start, keep_stop)`` are kept."""

    start: int
    stop: int
    keep_start: int
    keep_stop: int | None  # None: up to the window's last frame


def plan_windows(samples: int, window: int, overlap: int, frame_step: int) -> list[Window]:
    """Windows of at most ``window`` samples covering ``samples``; one window if it fits."""
    if window % frame_step or overlap % frame_step or window <= 2 * overlap:
        raise ValueError(
            f"window {window} and overlap {overlap} must be multiples of the frame step "
            f"{frame_step}, with window > 2 * overlap"
        )
    if samples <= window:
        return [Window(0, samples, 0, None)]
    stride = window - 2 * overlap
    count = math.ceil((samples - overlap) / stride)  # the last window then fits in `window`
    windows = []
    for index in range(count):
        own_start, own_stop = index * stride, (index + 1) * stride
        start = max(0, own_start - overlap)
        last = index == count - 1
        windows.append(
            Window(
                start=start,
                stop=samples if last else own_stop + overlap,
                keep_start=(own_start - start) // frame_step,
                keep_stop=None if last else (own_stop - start) // frame_step,
            )
        )
    return windows


def stitch(outputs: Sequence[np.ndarray], windows: Sequence[Window]) -> np.ndarray:
    """One ``(layers, frames, dims)`` array from the windows' outputs, each cut to its own frames."""
    return np.concatenate(
        [output[:, window.keep_start : window.keep_stop] for output, window in zip(outputs, windows)], axis=1
    )
