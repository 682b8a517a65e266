"""Video in: frames of any file FFmpeg reads, at a fixed rate, with one-line errors.

Every problem with a video file becomes an :class:`~emotrace.errors.InputError` here
(no such file, not a video, no video stream, corrupt data), never deeper down. Frames are
handed out as PyAV frames, not arrays, so that each consumer converts only what it needs
(the face detector a 128-pixel thumbnail, the landmark model a crop at its own scale):
colour conversion of whole frames would cost more than decoding them.

:func:`frames_at_rate` turns a stream's own timestamps (often not quite the nominal
rate, sometimes variable) into a fixed rate: sample ``k`` shows what was on screen at
``k / rate`` seconds after the start, so frame ``k`` of every clip means the same time.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av

from emotrace.audio import checked_file
from emotrace.errors import InputError

#: the rate features are sampled at unless told otherwise (frames per second)
DEFAULT_RATE: float = 30.0


@dataclass(frozen=True)
class VideoClip:
    """What a video extractor is given: a file, and optionally the segment ``[start, end)``
    seconds of it (corpora that film whole dialogues but label sentences)."""

    path: str
    start: float | None = None
    end: float | None = None


@dataclass(frozen=True)
class VideoInfo:
    """What a file's header says about its video stream."""

    path: str
    width: int
    height: int
    frame_rate: float  # the stream's average rate (frames per second)
    duration: float  # seconds, from the header (0.0 when it gives none)
    codec: str
    has_audio: bool


@dataclass(frozen=True)
class TimedFrame:
    """A decoded frame and its time in seconds from the start of the clip (or segment)."""

    time: float
    frame: av.VideoFrame
    index: int  # position in decoding order, so a frame shown twice is known to be the same


def probe_video(path: str | Path) -> VideoInfo:
    """The header of ``path``'s video stream; InputError when there is none."""
    path = checked_file(path)
    try:
        with av.open(path) as container:
            stream = _video_stream(container, path)
            return _info(container, stream, path)
    except av.FFmpegError as error:
        raise InputError(path, f"is not a video file FFmpeg can read ({error.strerror})") from None


def read_frames(clip: VideoClip) -> Iterator[TimedFrame]:
    """Every decoded frame of ``clip`` in display order, timed from the clip's start.

    The file is checked when this is called; decoding errors surface during iteration
    as InputErrors naming the time they happened at.
    """
    path = checked_file(clip.path)
    start = 0.0 if clip.start is None else float(clip.start)
    if start < 0 or (clip.end is not None and clip.end <= start):
        raise InputError(path, f"video segment {clip.start}-{clip.end} s is empty or negative")
    try:
        container = av.open(path)
    except av.FFmpegError as error:
        raise InputError(path, f"is not a video file FFmpeg can read ({error.strerror})") from None
    try:
        stream = _video_stream(container, path)
    except InputError:
        container.close()
        raise
    return _decoded(container, stream, path, start, clip.end)


def frames_at_rate(frames: Iterator[TimedFrame], rate: float) -> Iterator[tuple[int, TimedFrame]]:
    """``(k, frame on screen at k / rate s)`` for every ``k`` up to the end of the last frame.

    A frame is on screen from its own time to the next frame's; the last one for one frame
    interval (the gap before it). A source slower than ``rate`` repeats frames (same
    ``index``), a faster one skips some.
    """
    if rate <= 0:
        raise ValueError(f"frame rate must be positive, got {rate}")
    k = 0
    previous: TimedFrame | None = None
    interval = 1.0 / rate
    for current in frames:
        if previous is not None:
            interval = max(current.time - previous.time, 1e-6)
            while k / rate < current.time - 1e-9:
                yield k, previous
                k += 1
        elif current.time > 1e-9:  # the first frame comes late: it also stands for the time before it
            while k / rate < current.time - 1e-9:
                yield k, current
                k += 1
        previous = current
    if previous is None:
        return
    while k / rate < previous.time + interval - 1e-9:
        yield k, previous
        k += 1


def _decoded(
    container: av.container.InputContainer, stream: av.VideoStream, path: str, start: float, end: float | None
) -> Iterator[TimedFrame]:
    origin = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    position, index = start, 0
    with container:
        try:
            if start > 0:
                container.seek(int((start + origin) / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.time is not None:
                    position = frame.time - origin
                if end is not None and position >= end:
                    break
                if position + 1e-6 < start:
                    continue  # decoded from the key frame before the segment
                yield TimedFrame(position - start, frame, index)
                index += 1
        except av.FFmpegError as error:
            raise InputError(
                path, f"is corrupt or truncated: video decoding failed near {position:.2f} s ({error.strerror})"
            ) from None
    if index == 0:
        where = "" if start == 0 and end is None else f" in the segment {start:.2f}-{end if end else 'end'} s"
        raise InputError(path, f"has no decodable video frames{where}")


def _video_stream(container: av.container.InputContainer, path: str) -> av.VideoStream:
    stream = next((s for s in container.streams.video if s.codec_context is not None), None)
    if stream is None:
        kinds = sorted({s.type for s in container.streams})
        raise InputError(path, f"has no video stream (only {', '.join(kinds)})" if kinds else "has no video stream")
    stream.thread_type = "AUTO"  # frame threads where the codec has them (H.264); VP6 decodes in one
    return stream


def _info(container: av.container.InputContainer, stream: av.VideoStream, path: str) -> VideoInfo:
    rate = float(stream.average_rate) if stream.average_rate else 0.0
    if stream.duration is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    else:
        duration = 0.0
    has_audio = any(s.type == "audio" for s in container.streams)
    return VideoInfo(
        path,
        stream.codec_context.width,
        stream.codec_context.height,
        rate if math.isfinite(rate) else 0.0,
        duration,
        stream.codec_context.name,
        has_audio,
    )
