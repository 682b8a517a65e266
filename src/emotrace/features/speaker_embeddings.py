"""Resemblyzer voice embeddings (256-d): a sequence of windowed embeddings, or one per utterance.

Resemblyzer embeds 1.6 s windows ("partials") of a 40-band mel spectrogram with an LSTM.
``resemblyzer`` keeps the partials as frames: frame ``i`` covers ``[i / rate, i / rate + 1.6)``
seconds, the rate being 100 Hz divided by a whole number of 10 ms mel frames (10 Hz by
default). ``resemblyzer-utterance`` is the library's utterance embedding: the L2-normalised
mean of the partials at its default rate of 1.3 per second.

Volume is normalised as the library does, but long silences are not trimmed (its
``preprocess_wav`` would): trimming would shift frames away from the input's time axis, and
segmenting speech is the job of the audio front end. Partials go through the LSTM in
bounded batches, so memory stays flat on long recordings.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import numpy as np
import torch

from emotrace.features.base import Extractor, Features
from emotrace.features.inputs import ExtractorConfigError, checked_waveforms
from emotrace.features.weights import installed_package_folder, verify_sha256

#: resemblyzer's ``pretrained.pt``, pinned when the package was vetted
PRETRAINED_SHA256 = "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e"
UTTERANCE_RATE = 1.3  # resemblyzer's default for utterance embeddings
MEL_FRAME_RATE = 100.0  # resemblyzer's mel hop is 10 ms
PARTIALS_PER_BATCH = 256


class ResemblyzerExtractor(Extractor):
    """Voice embeddings: ``(1, partials, 256)`` at ``frame_rate``, or ``(1, 1, 256)`` per utterance."""

    modality = "audio"
    version = 1

    def __init__(self, utterance: bool = False, rate: float = 10.0):
        """``utterance``: one embedding per input; else partials at ``rate`` per second (0.625..100)."""
        if not 0.625 <= rate <= MEL_FRAME_RATE:
            raise ExtractorConfigError(f"resemblyzer: rate must be in 0.625..100 per second, got {rate}")
        self.utterance = utterance
        self.name = "resemblyzer-utterance" if utterance else "resemblyzer"
        self.rate = UTTERANCE_RATE if utterance else rate
        self.frame_rate = 0.0 if utterance else MEL_FRAME_RATE / round(MEL_FRAME_RATE / rate)

    def config(self) -> dict[str, Any]:
        return {"model": "resemblyzer pretrained.pt", "utterance": self.utterance, "rate": self.rate}

    @cached_property
    def _encoder(self) -> Any:
        package = installed_package_folder("resemblyzer")
        if package is None:
            raise ExtractorConfigError("resemblyzer extractors need: pip install 'emotrace[voice]'")
        weights = package / "pretrained.pt"
        verify_sha256([weights], PRETRAINED_SHA256, "resemblyzer")
        with warnings.catch_warnings():  # its imports warn of deprecations that are not ours to fix
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            from resemblyzer import VoiceEncoder

        return VoiceEncoder(device="cpu", verbose=False, weights_fpath=weights).eval()

    def extract(self, inputs: Sequence[np.ndarray] | Sequence[str]) -> list[Features]:
        results = []
        for waveform in checked_waveforms(inputs):
            partials = self._partials(waveform)
            if self.utterance:
                mean = partials.mean(axis=0)
                partials = (mean / np.linalg.norm(mean))[None]
            results.append(Features(data=partials[None].astype(np.float32), frame_rate=self.frame_rate))
        return results

    def _partials(self, waveform: np.ndarray) -> np.ndarray:
        """``(partials, 256)`` embeddings of the 1.6 s windows, as ``VoiceEncoder.embed_utterance`` cuts them."""
        encoder = self._encoder  # first: it imports resemblyzer quietly
        from resemblyzer import audio

        if waveform.any():  # the level of pure silence is -inf dBFS: nothing to normalise
            waveform = audio.normalize_volume(waveform, audio.audio_norm_target_dBFS, increase_only=True)
        wav_slices, mel_slices = encoder.compute_partial_slices(len(waveform), self.rate, min_coverage=0.75)
        waveform = np.pad(waveform, (0, max(0, wav_slices[-1].stop - len(waveform))))
        mel = audio.wav_to_mel_spectrogram(waveform)
        embeddings = []
        with torch.inference_mode():
            for start in range(0, len(mel_slices), PARTIALS_PER_BATCH):
                batch = np.stack([mel[part] for part in mel_slices[start : start + PARTIALS_PER_BATCH]])
                embeddings.append(encoder(torch.from_numpy(batch)).numpy())
        return np.concatenate(embeddings)
