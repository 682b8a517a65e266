"""Long recordings to speech segments the emotion models can take, with silero-vad.

The file is streamed (:func:`emotrace.audio.stream_audio`) and fed to the VAD in its
32 ms frames; the VAD's recurrent state and the unfinished frame carry over from block to
block, so a block boundary never cuts or re-starts speech. Only the probabilities are
kept: 31 numbers a second, about 450 kB for an hour, while the audio is never held whole.
From them, speech starts at a frame with probability >= ``threshold`` and ends after
``min_silence`` seconds below ``threshold - 0.15`` (silero's own hysteresis). Segments
longer than ``max_segment`` are cut at their least speech-like frame, because an
utterance-level model was trained on clips of a few seconds.
"""

from __future__ import annotations

import contextlib
import math
import queue
import threading
import warnings
from collections.abc import Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emotrace.audio import SAMPLE_RATE, load_audio, stream_audio
from emotrace.spans import Span

FRAME = 512  # samples per VAD frame at 16 kHz: the only size silero-vad accepts
FRAME_SECONDS = FRAME / SAMPLE_RATE
_CONTEXT = 64  # samples of the previous frame that silero reads before each frame at 16 kHz
_STATE_SIZE = 128  # silero-vad v5's recurrent state, per row
_RATE = np.array(SAMPLE_RATE, dtype=np.int64)
HYSTERESIS = 0.15  # speech ends below threshold - HYSTERESIS, as in silero-vad
MIN_MAX_SEGMENT = 1.0  # seconds; shorter pieces leave a model too little to read
#: seconds; less speech than this is a click or a cough, too little to read an emotion from
MIN_SPEECH_SECONDS = 0.25
#: seconds; pauses shorter than this stay inside a run of speech
MIN_SILENCE_SECONDS = 0.3


def speech_segments(path: str | Path, **options: Any) -> list[Span]:
    """The speech segments of the file at ``path``, in order and without overlap (``options``:
    those of :func:`stream_speech_segments`)."""
    return list(stream_speech_segments(path, **options))


def stream_speech_segments(
    path: str | Path,
    *,
    threshold: float = 0.5,
    min_speech: float = MIN_SPEECH_SECONDS,
    min_silence: float = MIN_SILENCE_SECONDS,
    padding: float = 0.1,
    max_segment: float = 10.0,
    block_seconds: float = 30.0,
) -> Iterator[Span]:
    """The speech segments of the file at ``path``, in order and without overlap, each yielded
    as soon as no later audio can change it (its speech has ended and the VAD has read past
    where a next one could join it), so a caller can predict the first segments of a long
    file while the VAD reads on.

    Speech shorter than ``min_speech`` seconds is dropped; pauses shorter than
    ``min_silence`` stay inside a segment. Each segment is widened by ``padding`` seconds
    on both sides (within the file; segments that then touch are merged), and segments
    longer than ``max_segment`` are split (``math.inf``: never). Memory stays at about one
    ``block_seconds`` block of audio. Unreadable files raise
    :class:`~emotrace.errors.InputError`.
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
    for name, value in (("min_speech", min_speech), ("min_silence", min_silence), ("padding", padding)):
        if value < 0:
            raise ValueError(f"{name} must not be negative, got {value}")
    if max_segment < MIN_MAX_SEGMENT:
        raise ValueError(f"max_segment must be at least {MIN_MAX_SEGMENT:g} s, got {max_segment}")
    segmenter = _Segmenter(threshold, min_speech, min_silence, padding, max_segment)
    read = 0
    for probabilities, samples in _speech_probabilities(path, block_seconds):
        read = samples
        yield from segmenter.add(probabilities)
    yield from segmenter.finish(read / SAMPLE_RATE)


def speech_segments_ahead(path: str | Path, **options: Any) -> Iterator[Span]:
    """:func:`stream_speech_segments` run by a background thread, which reads on while the
    caller works on the segments it has (the VAD's ONNX calls and the emotion model's
    encoder share the cores). The VAD's errors raise here; the thread ends with the iterator."""
    found: queue.Queue[Any] = queue.Queue(maxsize=256)
    stop = threading.Event()

    def read() -> None:
        try:
            for segment in stream_speech_segments(path, **options):
                if stop.is_set():
                    return
                found.put(segment)
            found.put(_END)
        except BaseException as error:
            found.put(error)

    thread = threading.Thread(target=read, name="emotrace-vad", daemon=True)
    thread.start()
    try:
        while (item := found.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # a reader blocked on a full queue must see the stop
            with contextlib.suppress(queue.Empty):
                found.get(timeout=0.05)
        thread.join()


_END = object()  # the background reader's last word


def segment_audio(path: str | Path, segments: Sequence[Span]) -> Iterator[tuple[Span, np.ndarray]]:
    """Each segment with its audio (1-D float32, 16 kHz mono), decoded one at a time."""
    for segment in segments:
        yield segment, load_audio(path, segment.start, segment.end)


class VadStream:
    """silero-vad over ``rows`` signals side by side, each with its own recurrent state, which
    carries over from call to call (a signal may come a block at a time).

    silero's ONNX session is called directly: its Python wrapper turns every 32 ms frame into
    torch tensors and back, about a third of the cost of a frame, for the same numbers. Rows
    run as one batch, and a step costs little more for 16 rows than for one, so independent
    clips are best read together (:func:`~emotrace.inference.sanity.speech_presences`).
    """

    def __init__(self, rows: int = 1):
        self._session = vad_session()
        self._state = np.zeros((2, rows, _STATE_SIZE), np.float32)
        self._context = np.zeros((rows, _CONTEXT), np.float32)

    def probabilities(self, audio: np.ndarray) -> np.ndarray:
        """``(rows, frames)`` speech probabilities of ``audio`` ``(rows, frames * FRAME)``, 16 kHz."""
        rows = self._state.shape[1]
        frames = np.ascontiguousarray(audio, dtype=np.float32).reshape(rows, -1, FRAME)
        out = np.empty(frames.shape[:2], np.float32)
        run, state, context = self._session.run, self._state, self._context
        for index in range(frames.shape[1]):
            window = np.concatenate([context, frames[:, index]], axis=1)
            probability, state = run(None, {"input": window, "state": state, "sr": _RATE})
            out[:, index] = probability[:, 0]
            context = window[:, -_CONTEXT:]
        self._state, self._context = state, context
        return out


def frame_probabilities(audio: np.ndarray) -> np.ndarray:
    """Speech probability of each :data:`FRAME` of ``audio`` (16 kHz mono; the last frame
    zero-padded), from a fresh state."""
    padded = np.pad(np.asarray(audio, dtype=np.float32), (0, -len(audio) % FRAME))
    return VadStream().probabilities(padded[None])[0]


@cache
def vad_session() -> Any:
    """silero-vad's ONNX session, shipped inside its wheel (nothing is downloaded), loaded once
    per process (a fifth of a second each time otherwise). Sessions run concurrently; the
    state lives in each :class:`VadStream`."""
    threads = torch.get_num_threads()
    try:
        from silero_vad import load_silero_vad
    finally:
        torch.set_num_threads(threads)  # importing silero_vad sets 1 thread for the whole process
    with warnings.catch_warnings():  # it finds its model with a deprecated importlib call
        warnings.simplefilter("ignore", DeprecationWarning)
        return load_silero_vad(onnx=True).session


def _speech_probabilities(path: str | Path, block_seconds: float) -> Iterator[tuple[np.ndarray, int]]:
    """Speech probability of every 32 ms frame of the file, block by block, each with the
    samples read so far.

    The VAD keeps its state from block to block; samples left over at the end of a block
    wait for the next block. The last frame is zero-padded.
    """
    vad = VadStream()
    pending = np.zeros(0, np.float32)
    samples = 0
    for _, block in stream_audio(path, block_seconds):
        samples += len(block)
        pending = np.concatenate([pending, block])
        whole = len(pending) // FRAME * FRAME
        yield vad.probabilities(pending[None, :whole])[0], samples
        pending = pending[whole:]
    if len(pending):
        yield vad.probabilities(np.pad(pending, (0, FRAME - len(pending)))[None])[0], samples


def speech_runs(probabilities: np.ndarray, threshold: float, min_silence_frames: int) -> list[tuple[int, int]]:
    """``[start, end)`` frame runs of speech under silero's hysteresis rule."""
    hysteresis = _Hysteresis(threshold, min_silence_frames)
    runs = hysteresis.feed(probabilities)
    return runs if hysteresis.open_run is None else [*runs, hysteresis.open_run]


class _Hysteresis:
    """silero's rule over frame probabilities fed a block at a time: speech starts at a frame
    at or above ``threshold`` and ends once ``min_silence_frames`` frames in a row fall below
    ``threshold - HYSTERESIS`` (louder frames between them do not end the silence)."""

    def __init__(self, threshold: float, min_silence_frames: int):
        self.on, self.off = threshold, max(threshold - HYSTERESIS, 0.01)
        self.min_silence_frames = min_silence_frames
        self.frames = 0
        self.start: int | None = None
        self.silent_since: int | None = None

    def feed(self, probabilities: np.ndarray) -> list[tuple[int, int]]:
        """The runs that these frames end."""
        runs = []
        for frame, probability in enumerate(probabilities.tolist(), start=self.frames):
            if probability >= self.on:
                if self.start is None:
                    self.start = frame
                self.silent_since = None
            elif self.start is not None and probability < self.off and self.silent_since is None:
                self.silent_since = frame
            if self.silent_since is not None and frame + 1 - self.silent_since >= self.min_silence_frames:
                runs.append((self.start, self.silent_since))
                self.start = self.silent_since = None
        self.frames += len(probabilities)
        return runs

    @property
    def open_run(self) -> tuple[int, int] | None:
        """The run under way, as it would end here."""
        if self.start is None:
            return None
        return self.start, self.frames if self.silent_since is None else self.silent_since


class _Segmenter:
    """Speech segments from frame probabilities as the VAD gives them (see
    :func:`speech_segments`). A span of runs is settled once a next run could no longer join
    it: any later run starts at the run under way, or after the frames read, and joins only
    if its padded start reaches the span's padded end."""

    def __init__(self, threshold: float, min_speech: float, min_silence: float, padding: float, max_segment: float):
        self.hysteresis = _Hysteresis(threshold, round(min_silence / FRAME_SECONDS))
        self.min_speech, self.padding, self.max_segment = min_speech, padding, max_segment
        self.probabilities: list[np.ndarray] = []
        self.spans: list[list[float]] = []  # [begin, end) in seconds, padded, not yet settled

    def add(self, probabilities: np.ndarray) -> list[Span]:
        """The segments settled by these frames."""
        self.probabilities.append(probabilities)
        for run in self.hysteresis.feed(probabilities):
            self._join(run)
        horizon = self.hysteresis.start if self.hysteresis.start is not None else self.hysteresis.frames
        return self._settled(horizon * FRAME_SECONDS - self.padding)

    def finish(self, duration: float) -> list[Span]:
        """The remaining segments, ends within the file's ``duration``."""
        if self.hysteresis.open_run is not None:
            self._join(self.hysteresis.open_run)
        for span in self.spans:
            span[1] = min(span[1], duration)
        return self._settled(math.inf)

    def _join(self, run: tuple[int, int]) -> None:
        start, end = run
        if (end - start) * FRAME_SECONDS < self.min_speech:
            return
        begin = max(0.0, start * FRAME_SECONDS - self.padding)
        finish = end * FRAME_SECONDS + self.padding
        if self.spans and begin <= self.spans[-1][1]:
            self.spans[-1][1] = finish
        else:
            self.spans.append([begin, finish])

    def _settled(self, earliest_join: float) -> list[Span]:
        """The spans no run starting at ``earliest_join`` seconds (padded) or later can join, split."""
        count = 0
        while count < len(self.spans) and self.spans[count][1] < earliest_join:
            count += 1
        if not count:
            return []
        settled, self.spans = self.spans[:count], self.spans[count:]
        self.probabilities = [np.concatenate(self.probabilities)]
        return [
            piece for begin, end in settled for piece in _split(begin, end, self.probabilities[0], self.max_segment)
        ]


def _split(begin: float, end: float, probabilities: np.ndarray, max_segment: float) -> list[Span]:
    """``[begin, end)`` in pieces of at most ``max_segment`` seconds.

    A piece that is too long is cut at the start of its least speech-like frame in its
    middle third, so the cut falls in a pause where there is one and both parts keep at
    least a third of it; the parts are split again as needed.
    """
    if end - begin <= max_segment:
        return [Span(round(begin, 3), round(end, 3))]  # milliseconds: VAD frames are 32
    third = (end - begin) / 3
    first = int(np.ceil((begin + third) / FRAME_SECONDS))
    last = int((end - third) / FRAME_SECONDS)
    cut = (first + int(np.argmin(probabilities[first : last + 1]))) * FRAME_SECONDS
    return _split(begin, cut, probabilities, max_segment) + _split(cut, end, probabilities, max_segment)
