"""What can be wrong with what an extractor is given, and the one place that says so.

Inputs (a waveform, a transcript) that cannot be used are the user's data and become an
:class:`~emotrace.errors.InputError`, which batch code records and skips. A spec or model
that cannot be used is a configuration mistake that stops the run before any work is
lost: :class:`ExtractorConfigError`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emotrace.audio import MAX_SAMPLE_MAGNITUDE
from emotrace.errors import EmotraceError, InputError


class ExtractorConfigError(EmotraceError, ValueError):
    """An extractor spec, option or model that cannot be used (unknown name, bad layer, ...)."""


def checked_waveforms(inputs: Sequence[np.ndarray] | Sequence[str]) -> list[np.ndarray]:
    """The inputs as 1-D float32 arrays; an InputError names the first one that is not audio."""
    waveforms = []
    for position, waveform in enumerate(inputs):
        source = f"input {position}"
        if isinstance(waveform, str):
            raise InputError(source, "expected a waveform, got text")
        array = np.asarray(waveform)
        if array.ndim != 1:
            raise InputError(source, f"expected a mono waveform (1-D), got shape {array.shape}")
        if array.size == 0:
            raise InputError(source, "empty waveform")
        if not np.issubdtype(array.dtype, np.floating):
            raise InputError(source, f"expected float samples in [-1, 1], got {array.dtype}")
        if not np.isfinite(array).all():
            raise InputError(source, "waveform contains NaN or infinite samples")
        peak = float(np.abs(array).max())
        if peak > MAX_SAMPLE_MAGNITUDE:  # finite, but its power spectrum is not
            raise InputError(
                source,
                f"waveform has sample values of {peak:.3g}; audio lies within ±1 "
                f"(at most ±{MAX_SAMPLE_MAGNITUDE:g} is accepted)",
            )
        waveforms.append(np.ascontiguousarray(array, dtype=np.float32))
    return waveforms


def checked_texts(inputs: Sequence[np.ndarray] | Sequence[str]) -> list[str]:
    """The inputs as strings; an InputError names the first one that is not text."""
    texts = []
    for position, text in enumerate(inputs):
        if not isinstance(text, str):
            raise InputError(f"input {position}", f"expected a transcript (str), got {type(text).__name__}")
        texts.append(text)
    return texts
