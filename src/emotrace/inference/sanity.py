"""Checks around a model that keep it from answering nonsense: is there speech to read at
all, and is what came out a probability distribution.

An emotion model labels whatever it is given: a beep, a door slam or a hum comes out as
"sad 31 %". :func:`speech_presence` asks silero-vad first, so a prediction can be
:class:`~emotrace.inference.predictions.NoSpeech` instead (the predictors decide:
:meth:`~emotrace.inference.media.MediaPredictor.predict_file`). :func:`check_prediction`
stops NaN or infinite outputs (from audio no check upstream caught) before they reach a
JSON writer, which would otherwise write invalid JSON or fail with a 500.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from emotrace.audio import SAMPLE_RATE
from emotrace.errors import InputError
from emotrace.inference.predictions import AudioVisualPrediction, Prediction, UtterancePrediction
from emotrace.inference.segmentation import (
    FRAME,
    FRAME_SECONDS,
    MIN_SILENCE_SECONDS,
    MIN_SPEECH_SECONDS,
    frame_probabilities,
    load_vad,
    speech_runs,
)

#: silero's frame probability that counts as speech here: lower than segmentation's 0.5, since
#: a quiet or sobbing emotional clip must not be refused. benchmarks/speech_check.py chose it:
#: one step (0.05) above the lowest threshold of its grid at which no synthetic non-speech
#: (tones, beeps, hum, noise, clicks, chords) counts as speech; it reports what each threshold
#: refuses of real speech (0.35: 0.7 % of RAVDESS, 3.5 % of ASED, 0 of nEMO; 0.5: 0.9, 4.7, 0).
SPEECH_THRESHOLD = 0.35
_PRESENCE_STEP_FRAMES = 16  # 0.5 s of audio through the VAD between looks at its runs
_vad_lock = threading.Lock()  # the VAD is recurrent: one waveform at a time through it


@dataclass(frozen=True)
class SpeechPresence:
    """How much of a waveform silero-vad heard as speech."""

    speech_seconds: float
    duration: float
    min_speech: float = MIN_SPEECH_SECONDS

    @property
    def present(self) -> bool:
        return self.speech_seconds >= self.min_speech


def speech_presence(
    waveform: np.ndarray, *, threshold: float = SPEECH_THRESHOLD, min_speech: float = MIN_SPEECH_SECONDS
) -> SpeechPresence:
    """Seconds of speech in ``waveform`` (16 kHz mono float32), counting only runs of at
    least ``min_speech`` seconds, under silero's hysteresis (as :mod:`segmentation` does).

    The VAD reads the clip a little at a time and stops once a run of speech is long enough:
    a run can only grow with more audio, so the answer is the whole clip's, while a clip that
    speaks early costs a fraction of the pass (``speech_seconds`` then counts the audio read).
    """
    audio = np.asarray(waveform, dtype=np.float32)
    frames = np.pad(audio, (0, -len(audio) % FRAME)).reshape(-1, FRAME)
    duration = len(audio) / SAMPLE_RATE
    probabilities: list[np.ndarray] = []
    with _vad_lock:
        vad = _shared_vad()
        vad.reset_states()
        for start in range(0, max(len(frames), 1), _PRESENCE_STEP_FRAMES):
            probabilities.append(frame_probabilities(vad, frames[start : start + _PRESENCE_STEP_FRAMES].ravel()))
            presence = presence_from_probabilities(
                np.concatenate(probabilities), duration, threshold=threshold, min_speech=min_speech
            )
            if presence.present:
                break
    return presence


def speech_probabilities(waveform: np.ndarray) -> np.ndarray:
    """silero-vad's speech probability of each frame of ``waveform`` (16 kHz mono)."""
    audio = np.asarray(waveform, dtype=np.float32)
    padded = np.pad(audio, (0, -len(audio) % FRAME))
    with _vad_lock:
        vad = _shared_vad()
        vad.reset_states()
        return frame_probabilities(vad, padded)


def presence_from_probabilities(
    probabilities: np.ndarray,
    duration: float,
    *,
    threshold: float = SPEECH_THRESHOLD,
    min_speech: float = MIN_SPEECH_SECONDS,
) -> SpeechPresence:
    """:func:`speech_presence` from frame probabilities already computed (to try thresholds)."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
    runs = speech_runs(probabilities, threshold, round(MIN_SILENCE_SECONDS / FRAME_SECONDS))
    frames = sum(end - start for start, end in runs if (end - start) * FRAME_SECONDS >= min_speech)
    return SpeechPresence(min(frames * FRAME_SECONDS, duration), duration, min_speech)


@cache
def _shared_vad() -> Any:
    """Loaded once per process (a fifth of a second each time otherwise)."""
    return load_vad()


def check_probabilities(source: str, labels: Sequence[str], probabilities: np.ndarray) -> np.ndarray:
    """``probabilities`` when they are finite and sum to 1; else an InputError naming
    ``source``: the input drove the model out of range, and nothing it says can be trusted."""
    values = np.asarray(probabilities, dtype=np.float64)
    if values.shape != (len(labels),) or not np.isfinite(values).all():
        raise InputError(
            source,
            "the model's output is not a finite probability for every class (NaN or infinite), "
            "so the input drove it out of range; no prediction is given",
        )
    if abs(values.sum() - 1.0) > 1e-3 or (values < 0).any():
        raise InputError(source, f"the model's output is not a probability distribution (sums to {values.sum():.4g})")
    return probabilities


def check_prediction(prediction: UtterancePrediction, labels: Sequence[str]) -> UtterancePrediction:
    """``prediction`` when its probabilities (and each stream's, for an audio-visual one) pass
    :func:`check_probabilities` and every other figure it carries (attention, frame
    posteriors, mixture, the streams' comparison) is finite; else an InputError naming its
    source, so that one file is skipped rather than a JSON writer failing for them all."""
    streams = [prediction]
    figures: list[tuple[str, Any]] = []
    if isinstance(prediction, AudioVisualPrediction):
        streams += [p for p in (prediction.audio, prediction.video, prediction.fused) if p is not None]
        if prediction.comparison is not None:
            comparison = prediction.comparison
            figures += [(f"ROI comparison's {name}", getattr(comparison, name)) for name in _COMPARISON_FIGURES]
    for stream in streams:
        check_probabilities(prediction.source, labels, np.array(list(stream.probabilities.values())))
        if isinstance(stream, Prediction):
            figures += [
                ("attention", stream.attention),
                ("frame posteriors", stream.frame_posteriors),
                ("mixture", None if stream.mixture is None else list(stream.mixture.values())),
            ]
    for name, value in figures:
        if not _finite(value):
            raise InputError(
                prediction.source,
                f"the model's {name} holds NaN or infinite numbers, so the input drove it out of range; "
                "no prediction is given",
            )
    return prediction


#: the numbers of a :class:`~emotrace.inference.roi_compare.ClipAgreement` that reach an output
_COMPARISON_FIGURES = ("seconds", "roi_iou", "pearson", "lag", "lag_correlation", "audio_regions", "video_regions")


def _finite(value: Any) -> bool:
    """Whether every number in ``value`` (None, a number, an array, nested lists or tuples) is finite."""
    if value is None:
        return True
    if isinstance(value, (list, tuple)):
        return all(_finite(item) for item in value)
    return bool(np.isfinite(np.asarray(value, dtype=np.float64)).all())
