"""Log-mel filterbank: the plain spectral input of the CNN/LSTM baselines (25 ms windows, 10 ms hop).

Frame ``i`` is centred at ``i`` x 10 ms (librosa's centred STFT), so an input of ``n``
samples has ``1 + n // 160`` frames at 100 Hz. Power mel energies in decibels, floored at
-100 dB so that digital silence stays finite.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import librosa
import numpy as np

from emotrace.audio import SAMPLE_RATE
from emotrace.features.base import Extractor, Features
from emotrace.features.inputs import ExtractorConfigError, checked_waveforms

WINDOW = 400  # 25 ms
HOP = 160  # 10 ms


class LogMelExtractor(Extractor):
    """Log-mel energies ``(1, 1 + samples // 160, bins)`` at 100 Hz."""

    modality = "audio"
    version = 1

    def __init__(self, bins: int = 80):
        if not 1 <= bins <= WINDOW // 2:
            raise ExtractorConfigError(f"logmel: bins must be in 1..{WINDOW // 2}, got {bins}")
        self.bins = bins
        self.name = "logmel"

    def config(self) -> dict[str, Any]:
        return {"bins": self.bins, "window": WINDOW, "hop": HOP, "sample_rate": SAMPLE_RATE}

    def extract(self, inputs: Sequence[np.ndarray] | Sequence[str]) -> list[Features]:
        results = []
        for waveform in checked_waveforms(inputs):
            mel = librosa.feature.melspectrogram(
                y=waveform, sr=SAMPLE_RATE, n_fft=WINDOW, hop_length=HOP, n_mels=self.bins, pad_mode="constant"
            )
            decibels = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)
            results.append(Features(data=decibels.T[None].astype(np.float32), frame_rate=SAMPLE_RATE / HOP))
        return results
