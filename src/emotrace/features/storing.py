"""The steps local and distributed extraction share: key an input, decode it, store a batch.

Each returns an :class:`InputError` per failed input instead of raising, so a bad file is
reported and skipped while the rest of its batch is stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from emotrace.audio import SAMPLE_RATE, load_audio
from emotrace.corpora.records import Utterance
from emotrace.errors import InputError
from emotrace.features.asr import WhisperASR
from emotrace.features.base import Extractor
from emotrace.features.isolation import extract_isolated
from emotrace.features.keys import audio_key, text_key
from emotrace.features.store import Entry, FeatureStore
from emotrace.features.transcripts import TranscriptStore


def store_audio_features(
    extractor: Extractor, store: FeatureStore, batch: Sequence[tuple[str, str, np.ndarray]]
) -> list[InputError | None]:
    """Extract ``(utterance id, audio key, waveform)`` inputs and store them as one shard;
    per input, None or why it failed."""
    outcomes = extract_isolated(extractor, [waveform for _, _, waveform in batch])
    store.put_many(
        [
            Entry(utt_id, key, features, {"seconds": len(waveform) / SAMPLE_RATE})
            for (utt_id, key, waveform), features in zip(batch, outcomes)
            if not isinstance(features, InputError)
        ]
    )
    return [outcome if isinstance(outcome, InputError) else None for outcome in outcomes]


def store_text_features(
    extractor: Extractor, store: FeatureStore, batch: Sequence[tuple[str, str]]
) -> list[InputError | None]:
    """Extract ``(utterance id, text)`` inputs and store them as one shard; per input, None or why it failed."""
    outcomes = extract_isolated(extractor, [text for _, text in batch])
    store.put_many(
        [
            Entry(utt_id, text_key(text), features, {"text": text})
            for (utt_id, text), features in zip(batch, outcomes)
            if not isinstance(features, InputError)
        ]
    )
    return [outcome if isinstance(outcome, InputError) else None for outcome in outcomes]


def store_transcripts(asr: WhisperASR, store: TranscriptStore, batch: Sequence[tuple[str, str, np.ndarray]]) -> None:
    """Transcribe ``(utterance id, audio key, waveform)`` inputs and append them to ``store``."""
    store.put_many([(utt_id, key, asr.transcribe(waveform)) for utt_id, key, waveform in batch])


def audio_key_or_error(utterance: Utterance) -> str | InputError:
    """The content key of an utterance's audio, or why it cannot be read."""
    return _media_key_or_error(utterance.id, "audio", utterance.audio, utterance.start, utterance.end)


def video_key_or_error(utterance: Utterance) -> str | InputError:
    """The content key of an utterance's video (or its segment), or why it cannot be read."""
    return _media_key_or_error(utterance.id, "video", utterance.video, utterance.video_start, utterance.video_end)


def _media_key_or_error(
    utt_id: str, kind: str, path: str | Path | None, start: float | None, end: float | None
) -> str | InputError:
    if path is None:
        return InputError(utt_id, f"has no {kind} file")
    try:
        return audio_key(path, start, end)
    except FileNotFoundError:
        return InputError(path, "file not found")
    except OSError as error:
        return InputError(path, f"cannot be read ({error.strerror})")


def load_or_error(utterance: Utterance) -> np.ndarray | InputError:
    """An utterance's audio at the extractors' rate, or why it cannot be decoded."""
    try:
        return load_audio(utterance.audio, start=utterance.start, end=utterance.end, sr=SAMPLE_RATE)
    except InputError as error:
        return error
