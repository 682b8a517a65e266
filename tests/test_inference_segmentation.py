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


def _segments_at_once(probabilities, duration, threshold, min_speech, padding, max_segment):
    """The rule :func:`speech_segments` states, over all frame probabilities at once."""
    from emotrace.inference.segmentation import FRAME_SECONDS, MIN_SILENCE_SECONDS, _split, speech_runs

    spans: list[list[float]] = []
    for start, end in speech_runs(probabilities, threshold, round(MIN_SILENCE_SECONDS / FRAME_SECONDS)):
        if (end - start) * FRAME_SECONDS < min_speech:
            continue
        begin, finish = max(0.0, start * FRAME_SECONDS - padding), min(duration, end * FRAME_SECONDS + padding)
        if spans and begin <= spans[-1][1]:
            spans[-1][1] = finish
        else:
            spans.append([begin, finish])
    return [piece for begin, finish in spans for piece in _split(begin, finish, probabilities, max_segment)]


@pytest.mark.parametrize("seed", range(12))
def test_segments_settled_block_by_block_are_those_of_the_whole(seed):
    """Random speech-like probabilities fed in random blocks: the segments yielded as they settle
    are, in order, the segments of the whole, for paddings that make neighbours merge or not."""
    from emotrace.inference.segmentation import FRAME_SECONDS, MIN_SILENCE_SECONDS, MIN_SPEECH_SECONDS, _Segmenter

    rng = np.random.default_rng(seed)
    levels = rng.choice([0.05, 0.3, 0.45, 0.6, 0.9], size=rng.integers(50, 400))
    probabilities = np.repeat(levels, rng.integers(1, 25, size=len(levels))).astype(np.float32)
    duration = len(probabilities) * FRAME_SECONDS - rng.uniform(0, FRAME_SECONDS)
    padding, max_segment = [(0.1, 10.0), (0.5, 2.0), (0.0, 1.0)][seed % 3]
    segmenter = _Segmenter(0.5, MIN_SPEECH_SECONDS, MIN_SILENCE_SECONDS, padding, max_segment)
    streamed, position = [], 0
    while position < len(probabilities):
        step = int(rng.integers(1, 200))
        streamed += segmenter.add(probabilities[position : position + step])
        position += step
    early = len(streamed)
    streamed += segmenter.finish(duration)
    assert streamed == _segments_at_once(probabilities, duration, 0.5, MIN_SPEECH_SECONDS, padding, max_segment)
    assert streamed, "the probabilities hold speech"
    if seed % 3 == 0:
        assert early > 0  # most segments settle before the end


def test_segments_ahead_come_from_a_thread_that_ends_with_them(recording_file, tmp_path):
    import threading

    from emotrace.inference.segmentation import speech_segments_ahead

    assert list(speech_segments_ahead(recording_file, block_seconds=0.7)) == speech_segments(recording_file)
    ahead = speech_segments_ahead(recording_file, block_seconds=0.5)
    next(ahead)
    ahead.close()  # a caller that stops early stops the reader
    assert not any(thread.name == "emotrace-vad" for thread in threading.enumerate())
    bad = tmp_path / "notes.wav"
    bad.write_bytes(b"these are not samples\n" * 50)
    with pytest.raises(InputError, match=r"notes\.wav"):
        list(speech_segments_ahead(bad))
