"""ASR with the packaged Whisper tiny.en on real RAVDESS clips, and the WER it is judged by."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import soundfile

from emotrace.corpora.records import Utterance
from emotrace.features.asr import WhisperASR, word_error_rate
from emotrace.features.base import Extractor, Features
from emotrace.features.pipeline import extract_corpus
from emotrace.features.transcripts import TranscriptStore

DATA = Path(os.environ.get("EMOTRACE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
CLIPS = [
    "Actor_01/03-01-01-01-01-01-01.flac",  # neutral, statement 1
    "Actor_02/03-01-05-02-02-01-02.flac",  # angry, strong, statement 2
    "Actor_13/03-01-04-01-01-02-13.flac",  # sad, statement 1
]


def test_word_error_rate_counts_substitutions_insertions_and_deletions() -> None:
    assert word_error_rate(["Kids are talking by the door"], ["kids are talking by the door."]) == 0.0
    assert word_error_rate(["kids are talking"], ["kids were talking"]) == pytest.approx(1 / 3)
    assert word_error_rate(["kids are talking"], ["kids talking"]) == pytest.approx(1 / 3)
    assert word_error_rate(["kids are talking"], ["the kids are talking now"]) == pytest.approx(2 / 3)
    # corpus WER weighs by reference length: 1 error in 2 words, 0 in 4
    assert word_error_rate(["a b", "c d e f"], ["a x", "c d e f"]) == pytest.approx(1 / 6)
    with pytest.raises(ValueError):
        word_error_rate(["a"], [])


@pytest.fixture(scope="module")
def asr() -> WhisperASR:
    if not (DATA / "ravdess").is_dir():
        pytest.skip(f"RAVDESS not found under {DATA} (set EMOTRACE_DATA)")
    return WhisperASR(cpu_threads=2)


def reference(clip: str) -> str:
    return STATEMENTS[clip.split("-")[4]]


def test_packaged_tiny_en_transcribes_ravdess_statements(asr: WhisperASR) -> None:
    references, hypotheses = [], []
    for clip in CLIPS:
        waveform, rate = soundfile.read(DATA / "ravdess" / clip, dtype="float32")
        assert rate == 16000
        transcript = asr.transcribe(waveform)
        references.append(reference(clip))
        hypotheses.append(transcript.text)
        assert transcript.language == "en"
        assert len(transcript.words) >= 5
        times = [time for word in transcript.words for time in (word.start, word.end)]
        assert times == sorted(times) and times[0] >= 0.0 and times[-1] <= len(waveform) / rate + 0.1
        assert all(0.0 <= word.probability <= 1.0 for word in transcript.words)
    assert word_error_rate(references, hypotheses) <= 0.15, hypotheses
    assert asr.config() == {"model": "tiny.en", "beam_size": 5, "language": None, "compute_type": "int8"}


class RecordedText(Extractor):
    """A text extractor that remembers what it was given."""

    name = "recorded-text"
    modality = "text"

    def __init__(self) -> None:
        self.inputs: list[str] = []

    def config(self) -> dict:
        return {}

    def extract(self, inputs: Sequence[str]) -> list[Features]:
        self.inputs.extend(inputs)
        return [Features(np.zeros((1, 1, 1), np.float32), 0.0) for _ in inputs]


def test_extraction_transcribes_utterances_without_a_transcript_once(asr: WhisperASR, tmp_path: Path) -> None:
    utterances = [Utterance(Path(clip).stem, str(DATA / "ravdess" / clip), None, "actor") for clip in CLIPS]
    text = RecordedText()
    summary = extract_corpus(utterances, [text], tmp_path, asr=asr, progress=False)
    assert [(c.extractor, c.computed, c.cached) for c in summary.stores] == [("recorded-text", 3, 0), ("asr", 3, 0)]
    assert word_error_rate([reference(clip) for clip in CLIPS], text.inputs) <= 0.15, text.inputs
    transcripts = TranscriptStore.open(tmp_path, asr.config())
    assert [transcripts.get(u.id).text for u in utterances] == text.inputs
    assert all(len(transcripts.get(u.id).words) >= 5 for u in utterances)

    fresh = WhisperASR(cpu_threads=2)
    again = extract_corpus(utterances, [RecordedText()], tmp_path, asr=fresh, progress=False)
    assert [(c.computed, c.cached) for c in again.stores] == [(0, 3), (0, 3)]
    assert "_model" not in vars(fresh)  # the model was never even loaded
