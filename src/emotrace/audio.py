"""Audio in: any audio or video file becomes 16 kHz mono float32, and every bad input
becomes one clear :class:`~emotrace.errors.InputError` here, never deeper down.

libsndfile (through soundfile) decodes what it knows (wav, flac, ogg, mp3, ...); FFmpeg
(through PyAV) decodes the rest (m4a, the audio track of mp4/mkv/webm, ...). Either way
the file is read in bounded blocks, averaged over channels and resampled by a streaming
soxr resampler, so one path serves a 2 s clip and a 2 h recording alike, and limits on
duration are checked from the header before a single sample is decoded.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import av
import numpy as np
import soundfile as sf
import soxr

from emotrace.errors import InputError

#: Hz; every waveform inside emotrace (extractors, segmentation, prediction) is at this rate
SAMPLE_RATE: int = 16000
MIN_DURATION: float = 0.1  # seconds; shorter clips give an encoder too few frames to read
#: seconds; the longest audio :func:`load_audio` reads whole by default (longer: stream_audio)
MAX_LOAD_SECONDS: float = 600.0

_READ_FRAMES = 65536  # native frames per soundfile read: bounds memory whatever the length
# Corpus annotations (IEMOCAP-style segment times) may overrun the end of their
# recording by a few milliseconds; that is rounding, not a wrong segment.
_SEGMENT_SLACK = 0.05
# Writers streaming a WAV to a pipe cannot go back to fill in the RIFF size and leave 0
# or a value near 2**31 or 2**32; only a real size that overshoots the file is truncation.
_UNSET_RIFF_SIZE = 0x7FFF0000


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says about its audio, read without decoding any of it."""

    path: str
    sample_rate: int
    channels: int
    frames: int
    duration: float
    format: str


# A decoder yields native-rate float32 blocks of shape (frames, channels) covering
# [start, end) seconds of the file (end None: to the end of the file).
_Decoder = Callable[[AudioInfo, float, float | None], Iterator[np.ndarray]]


def probe(path: str | Path) -> AudioInfo:
    """Sample rate, channels and duration from the header; InputError if it is no audio."""
    return _inspect(path)[0]


def load_audio(
    path: str | Path,
    start: float | None = None,
    end: float | None = None,
    sr: int = SAMPLE_RATE,
    max_duration: float | None = MAX_LOAD_SECONDS,
) -> np.ndarray:
    """One utterance (or its ``start``..``end`` segment, seconds) as 1-D float32 mono at ``sr``.

    Rejects, from the header and before decoding, segments outside the file and audio
    longer than ``max_duration`` (``None``: no limit); after decoding, audio that is
    shorter than :data:`MIN_DURATION`, silent, or not finite.
    """
    info, decoder = _inspect(path)
    begin = _check_segment(info, start, end, max_duration)
    pieces = list(_mono_resampled(info, decoder, begin, end, sr))
    audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    seconds = len(audio) / sr
    if seconds < MIN_DURATION:
        raise InputError(
            info.path, f"is too short ({seconds:.2f} s; at least {MIN_DURATION:g} s needed)"
        )
    if not audio.any():
        raise InputError(info.path, "audio is silent (all samples are zero)")
    return audio


def stream_audio(
    path: str | Path, block_seconds: float = 30.0, sr: int = SAMPLE_RATE
) -> Iterator[tuple[float, np.ndarray]]:
    """(start time in seconds, mono float32 block at ``sr``) over a whole file of any length.

    Memory stays at about one block, so hour-long recordings are fine. Blocks are
    contiguous and together equal what :func:`load_audio` would return. The file is
    checked when this is called; decoding errors surface during iteration.
    """
    if block_seconds <= 0:
        raise ValueError(f"block_seconds must be positive, got {block_seconds}")
    info, decoder = _inspect(path)
    return _rebuffered(_mono_resampled(info, decoder, 0.0, None, sr), round(block_seconds * sr), sr)


def _inspect(path: str | Path) -> tuple[AudioInfo, _Decoder]:
    """The header of ``path`` and the decoder that can read it."""
    path = str(path)
    _check_regular_file(path)
    try:
        header = sf.info(path)
    except sf.SoundFileError:
        return _inspect_container(path), _pyav_blocks
    if header.format == "WAV":
        _check_wav_complete(path)
    info = AudioInfo(
        path,
        header.samplerate,
        header.channels,
        header.frames,
        header.frames / header.samplerate,
        header.format,
    )
    return info, _soundfile_blocks


def _check_regular_file(path: str) -> None:
    try:
        status = os.stat(path)
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except OSError as error:
        raise InputError(path, f"cannot be read ({error.strerror})") from None
    if not stat.S_ISREG(status.st_mode):
        raise InputError(path, "is not a regular file")
    if status.st_size == 0:
        raise InputError(path, "file is empty (0 bytes)")


def _check_wav_complete(path: str) -> None:
    """libsndfile quietly reads what is left of a cut-off WAV; catch that from the RIFF size."""
    with open(path, "rb") as file:
        head = file.read(8)
    if head[:4] != b"RIFF":
        return
    riff_size = int.from_bytes(head[4:8], "little")
    promised, actual = riff_size + 8, os.path.getsize(path)
    if 0 < riff_size < _UNSET_RIFF_SIZE and promised > actual:
        raise InputError(
            path, f"is truncated (its header promises {promised} bytes, the file has {actual})"
        )


def _inspect_container(path: str) -> AudioInfo:
    """Header of a file libsndfile cannot open, read by FFmpeg."""
    try:
        with av.open(path) as container:
            stream = _audio_stream(container, path)
            duration = _container_duration(container, stream)
            kind = f"{container.format.name.split(',')[0]}/{stream.codec_context.name}"
            return AudioInfo(
                path, stream.rate, stream.channels, round(duration * stream.rate), duration, kind
            )
    except av.FFmpegError as error:
        raise InputError(
            path, f"is not an audio file that libsndfile or FFmpeg can read ({error.strerror})"
        ) from None


def _audio_stream(container: av.container.InputContainer, path: str) -> av.AudioStream:
    stream = container.streams.best("audio")
    if stream is None:
        kinds = sorted({s.type for s in container.streams})
        raise InputError(
            path, f"has no audio track (only {', '.join(kinds)})" if kinds else "has no audio track"
        )
    return stream


def _stream_origin(stream: av.AudioStream) -> float:
    """Timestamp of the first sample: codecs with encoder delay (opus, mp3) start after 0."""
    return float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0


def _container_duration(container: av.container.InputContainer, stream: av.AudioStream) -> float:
    """Duration from the header, or, where there is none (webm recorded live by a browser),
    from the last packet's timestamp: demuxing is cheap, and nothing is decoded."""
    if stream.duration is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base - _stream_origin(stream)
    last = max(
        (
            float((p.pts + p.duration) * stream.time_base)
            for p in container.demux(stream)
            if p.pts is not None
        ),
        default=0.0,
    )
    return max(0.0, last - _stream_origin(stream))


def _check_segment(
    info: AudioInfo, start: float | None, end: float | None, max_duration: float | None
) -> float:
    """Start of the requested segment, once it is known to lie in the file and fit the limit."""
    begin = 0.0 if start is None else float(start)
    if start is not None and not 0.0 <= begin < info.duration:
        raise InputError(
            info.path,
            f"segment start {begin:.2f} s lies outside the file ({info.duration:.2f} s long)",
        )
    if end is not None and end <= begin:
        raise InputError(info.path, f"segment end {end:.2f} s is not after its start {begin:.2f} s")
    if end is not None and end > info.duration + _SEGMENT_SLACK:
        raise InputError(
            info.path, f"segment end {end:.2f} s lies outside the file ({info.duration:.2f} s long)"
        )
    length = (info.duration if end is None else min(end, info.duration)) - begin
    if max_duration is not None and length > max_duration:
        what = (
            "audio"
            if start is None and end is None
            else f"segment {begin:.2f}-{info.duration if end is None else end:.2f} s"
        )
        raise InputError(
            info.path,
            f"{what} is {timedelta(seconds=round(length))} long, over the {max_duration:g} s limit "
            "for one utterance; use a long-recording path (stream_audio)",
        )
    return begin


def _soundfile_blocks(info: AudioInfo, start: float, end: float | None) -> Iterator[np.ndarray]:
    first = round(start * info.sample_rate)
    frames = -1 if end is None else round(end * info.sample_rate) - first
    with sf.SoundFile(info.path) as file:
        file.seek(first)
        yield from file.blocks(_READ_FRAMES, frames=frames, dtype="float32", always_2d=True)


def _pyav_blocks(info: AudioInfo, start: float, end: float | None) -> Iterator[np.ndarray]:
    """Decoded frames trimmed to [start, end) by their timestamps; seeks rather than
    decoding what comes before ``start``."""
    with av.open(info.path) as container:
        stream = _audio_stream(container, info.path)
        origin = _stream_origin(stream)
        if start > 0:
            container.seek(int((start + origin) / stream.time_base), stream=stream)
        to_float = av.AudioResampler(format="fltp")  # sample format only; soxr resamples
        position = start
        for frame in container.decode(stream):
            if frame.time is not None:
                position = frame.time - origin
            samples = np.concatenate([f.to_ndarray() for f in to_float.resample(frame)], axis=1).T
            skip = max(0, round((start - position) * info.sample_rate))
            keep = len(samples) if end is None else round((end - position) * info.sample_rate)
            if keep <= 0:
                return
            position += len(samples) / info.sample_rate
            if keep > skip:
                yield samples[skip:keep]


def _mono_resampled(
    info: AudioInfo, decoder: _Decoder, start: float, end: float | None, sr: int
) -> Iterator[np.ndarray]:
    """Decoded blocks averaged over channels and resampled to ``sr``; decoder failures and
    non-finite samples become InputErrors."""
    resampler = (
        None
        if info.sample_rate == sr
        else soxr.ResampleStream(info.sample_rate, sr, 1, dtype="float32", quality="HQ")
    )
    position = start
    try:
        for block in decoder(info, start, end):
            mono = block.mean(axis=1, dtype=np.float32)
            finite = np.isfinite(mono)
            if not finite.all():
                first_bad = position + int(np.argmin(finite)) / info.sample_rate
                raise InputError(
                    info.path, f"contains NaN or infinite samples (first at {first_bad:.2f} s)"
                )
            position += len(mono) / info.sample_rate
            yield mono if resampler is None else resampler.resample_chunk(mono)
        if resampler is not None:
            yield resampler.resample_chunk(np.zeros(0, np.float32), last=True)
    except sf.LibsndfileError as error:
        raise _corrupt(info, position, error.error_string) from None
    except av.FFmpegError as error:
        raise _corrupt(info, position, error.strerror) from None


def _corrupt(info: AudioInfo, position: float, reason: str) -> InputError:
    return InputError(
        info.path, f"is corrupt or truncated: decoding failed near {position:.2f} s ({reason})"
    )


def _rebuffered(
    pieces: Iterator[np.ndarray], block_size: int, sr: int
) -> Iterator[tuple[float, np.ndarray]]:
    """Regroup resampler output of any sizes into blocks of ``block_size`` samples."""
    pending: list[np.ndarray] = []
    pending_size = emitted = 0
    for piece in pieces:
        pending.append(piece)
        pending_size += len(piece)
        while pending_size >= block_size:
            buffer = np.concatenate(pending)
            yield emitted / sr, buffer[:block_size]
            emitted += block_size
            pending, pending_size = [buffer[block_size:]], len(buffer) - block_size
    if pending_size:
        yield emitted / sr, np.concatenate(pending)
