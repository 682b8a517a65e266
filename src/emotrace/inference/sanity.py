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

from collections.abc import Sequence
from dataclasses import dataclass
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
    VadStream,
    speech_runs,
)

#: silero's frame probability that counts as speech here: lower than segmentation's 0.5, since
#: a quiet or sobbing emotional clip must not be refused. benchmarks/speech_check.py chose it:
#: one step (0.05) above the lowest threshold of its grid at which no synthetic non-speech
#: (tones, beeps, hum, noise, clicks, chords) counts as speech; it reports what each threshold
#: refuses of real speech (0.35: 0.7 % of RAVDESS, 3.5 % of ASED, 0 of nEMO; 0.5: 0.9, 4.7, 0).
SPEECH_THRESHOLD = 0.35
_PRESENCE_STEP_FRAMES = 16  # 0.5 s of audio through the VAD between looks at its runs
#: clips whose speech the VAD looks for side by side: a step for 16 costs about 2 for one
VAD_ROWS = 16


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
    return speech_presences([waveform], threshold=threshold, min_speech=min_speech)[0]


def speech_presences(
    waveforms: Sequence[np.ndarray],
    *,
    threshold: float = SPEECH_THRESHOLD,
    min_speech: float = MIN_SPEECH_SECONDS,
) -> list[SpeechPresence]:
    """:func:`speech_presence` of each waveform, the VAD reading up to :data:`VAD_ROWS` of them
    side by side (one batched step for all): each keeps its own state from a fresh start, so
    each answer is the one it gets alone. Reading stops once every clip of a batch has a long
    enough run of speech or has ended."""
    audio = [np.asarray(waveform, dtype=np.float32) for waveform in waveforms]
    order = sorted(range(len(audio)), key=lambda index: len(audio[index]))  # rows of similar length pad little
    found: dict[int, SpeechPresence] = {}
    for first in range(0, len(order), VAD_ROWS):
        batch = order[first : first + VAD_ROWS]
        counts = [max(1, -(-len(audio[index]) // FRAME)) for index in batch]
        frames = np.zeros((len(batch), max(counts) * FRAME), np.float32)
        for row, index in enumerate(batch):
            frames[row, : len(audio[index])] = audio[index]
        vad, probabilities = VadStream(len(batch)), np.zeros((len(batch), 0), np.float32)
        undecided = set(range(len(batch)))
        for start in range(0, max(counts), _PRESENCE_STEP_FRAMES):
            stop = min(start + _PRESENCE_STEP_FRAMES, max(counts))
            read = vad.probabilities(frames[:, start * FRAME : stop * FRAME])
            probabilities = np.concatenate([probabilities, read], axis=1)
            for row in sorted(undecided):
                index = batch[row]
                presence = presence_from_probabilities(
                    probabilities[row, : counts[row]],
                    len(audio[index]) / SAMPLE_RATE,
                    threshold=threshold,
                    min_speech=min_speech,
                )
                if presence.present or stop >= counts[row]:
                    found[index] = presence
                    undecided.discard(row)
            if not undecided:
                break
    return [found[index] for index in range(len(audio))]


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
