"""Speech segmentation of long recordings: boundaries, splitting, original time, bad files."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from emotrace.audio import SAMPLE_RATE, load_audio
from emotrace.errors import InputError
from emotrace.inference.segmentation import segment_audio, speech_segments
from emotrace.spans import Span

SILENCES = (1.5, 2.0, 3.0, 1.0)  # seconds before the first clip, between clips, after the last
TOLERANCE = 0.3  # seconds between a segment boundary and where its clip's speech lies


def speech_span(audio: np.ndarray) -> tuple[float, float]:
    """Where a clip's speech lies, by energy alone (20 ms frames within 35 dB of the loudest)."""
    frames = audio[: len(audio) // 320 * 320].reshape(-1, 320)
    level = 10 * np.log10((frames**2).mean(1) + 1e-12)
    loud = np.flatnonzero(level > level.max() - 35)
    return loud[0] * 0.02, (loud[-1] + 1) * 0.02


@pytest.fixture(scope="module")
def recording(fixture_clips) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The three clips with known silences between them over faint noise, and where
    each clip's speech lies in it (seconds)."""
    noise = np.random.default_rng(0)
    pieces, spans, position = [], [], 0.0
    for silence, clip in zip(SILENCES, fixture_clips):
        audio = load_audio(clip)
        start, end = speech_span(audio)
        position += silence
        spans.append((position + start, position + end))
        pieces += [np.zeros(round(silence * SAMPLE_RATE), np.float32), audio]
        position += len(audio) / SAMPLE_RATE
    pieces.append(np.zeros(round(SILENCES[-1] * SAMPLE_RATE), np.float32))
    audio = np.concatenate(pieces)
    audio += 1e-4 * noise.standard_normal(len(audio)).astype(np.float32)
    return audio, spans


@pytest.fixture
def recording_file(recording, tmp_path) -> Path:
    path = tmp_path / "recording.flac"
    sf.write(path, recording[0], SAMPLE_RATE)
    return path


def test_segments_line_up_with_the_clips(recording, recording_file):
    segments = speech_segments(recording_file)
    assert len(segments) == len(recording[1])
    for segment, (start, end) in zip(segments, recording[1]):
        assert segment.start == pytest.approx(start, abs=TOLERANCE)
        assert segment.end == pytest.approx(end, abs=TOLERANCE)


def test_block_boundaries_do_not_change_the_segments(recording_file):
    # 0.7 s blocks are not a whole number of VAD frames and cut through every clip
    assert speech_segments(recording_file, block_seconds=0.7) == speech_segments(recording_file)


def test_long_speech_is_split_in_pauses(recording, recording_file):
    (whole,) = speech_segments(recording_file, min_silence=10.0, max_segment=math.inf)
    pieces = speech_segments(recording_file, min_silence=10.0, max_segment=4.0)
    assert len(pieces) > 1
    assert all(piece.duration <= 4.0 for piece in pieces)
    assert pieces[0].start == whole.start and pieces[-1].end == whole.end
    assert all(a.end == b.start for a, b in itertools.pairwise(pieces))
    for cut in (piece.start for piece in pieces[1:]):
        in_speech = any(start < cut < end for start, end in recording[1])
        assert not in_speech, f"cut at {cut:.2f} s is in speech"


def test_times_are_in_the_original_files_seconds(recording, recording_file, tmp_path):
    stereo = soxr.resample(recording[0], SAMPLE_RATE, 44100)
    path = tmp_path / "recording-44k-stereo.wav"
    sf.write(path, np.stack([stereo, 0.5 * stereo], axis=1), 44100)
    reference = speech_segments(recording_file)
    segments = speech_segments(path)
    assert len(segments) == len(reference)
    for segment, expected in zip(segments, reference):
        assert segment.start == pytest.approx(expected.start, abs=0.1)
        assert segment.end == pytest.approx(expected.end, abs=0.1)


def test_segment_audio_yields_each_segment(recording, recording_file):
    segments = speech_segments(recording_file)
    for (segment, audio), expected in zip(segment_audio(recording_file, segments), segments):
        assert segment == expected
        assert audio.dtype == np.float32 and audio.ndim == 1
        assert len(audio) == pytest.approx(segment.duration * SAMPLE_RATE, abs=2)


def test_silence_has_no_segments(tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, 1e-4 * np.random.default_rng(0).standard_normal(5 * SAMPLE_RATE), SAMPLE_RATE)
    assert speech_segments(path) == []


def test_non_audio_file_names_the_file(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_bytes(b"these are not samples\n" * 50)
    with pytest.raises(InputError, match=r"notes\.wav"):
        speech_segments(path)


def test_options_are_checked(recording_file):
    with pytest.raises(ValueError, match="threshold"):
        speech_segments(recording_file, threshold=1.5)
    with pytest.raises(ValueError, match="max_segment"):
        speech_segments(recording_file, max_segment=0.1)


def test_segment_duration():
    assert Span(1.5, 4.0).duration == 2.5


def test_vad_stream_matches_silero_and_keeps_rows_apart(recording):
    """The direct ONNX calls give silero's own wrapper's numbers, block by block, and a row
    read beside others gets the numbers it gets alone."""
    import torch
    from silero_vad import load_silero_vad

    from emotrace.inference.segmentation import FRAME, VadStream, frame_probabilities

    audio = recording[0][: 400 * FRAME]
    wrapper = load_silero_vad(onnx=True)
    expected = np.array([wrapper(frame, SAMPLE_RATE).item() for frame in torch.from_numpy(audio).reshape(-1, FRAME)])
    stream = VadStream()
    blocks = [
        stream.probabilities(audio[None, start : start + 96 * FRAME])[0] for start in range(0, len(audio), 96 * FRAME)
    ]
    np.testing.assert_allclose(np.concatenate(blocks), expected, atol=1e-6)
    np.testing.assert_allclose(frame_probabilities(audio), expected, atol=1e-6)
    rows = np.stack([audio, audio[::-1].copy(), np.zeros_like(audio)])
    np.testing.assert_allclose(VadStream(3).probabilities(rows)[0], expected, atol=1e-6)
