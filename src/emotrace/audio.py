"""Audio in: any audio or video file becomes 16 kHz mono float32, and every bad input
becomes one clear :class:`~emotrace.errors.InputError` here, never deeper down.

libsndfile (through soundfile) decodes what it knows (wav, flac, ogg, mp3, ...); FFmpeg
(through PyAV) decodes the rest (m4a, the audio track of mp4/mkv/webm, ...). Either way
the file is read in bounded blocks, averaged over channels and resampled by a streaming
soxr resampler, so one path serves a 2 s clip and a 2 h recording alike, and limits on
duration are checked from the header before a single sample is decoded.

Files are hostile until checked: a header's sample rate, channel count and sizes are
held to plausible bounds before anything is allocated from them (a WAV claiming 1 Hz
would make the resampler ask for gigabytes), every decoded block is checked for
non-finite and absurd sample values (no NaN may reach a model), and a file whose data
and header disagree is refused by name rather than read as garbage or silently cut.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

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
#: Hz; what real recordings use (telephone 8 kHz .. studio 384 kHz). A header outside
#: lies, and resampling from it would allocate without bound.
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 2000, 384000
MAX_CHANNELS = 64  # a read block is then at most 16 MB
#: float samples beyond this are not audio (full scale is 1; integer-scaled floats reach
#: 32768): larger values overflow the features' power spectra into inf and NaN
MAX_SAMPLE_MAGNITUDE = 65536.0

_READ_FRAMES = 65536  # native frames per soundfile read: bounds memory whatever the length
# Corpus annotations (IEMOCAP-style segment times) may overrun the end of their
# recording by a few milliseconds; that is rounding, not a wrong segment.
_SEGMENT_SLACK = 0.05
# Writers streaming a WAV to a pipe cannot go back to fill in the RIFF size and leave 0
# or a value near 2**31 or 2**32; only a real size that overshoots the file is truncation.
_UNSET_RIFF_SIZE = 0x7FFF0000
# A compressed stream that ends this much before its header's length is cut off (a
# lossy codec's padding accounts for a few milliseconds).
_TRUNCATION_SLACK = 0.1


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
    pieces = list(_mono_resampled(info, decoder, begin, end, sr, max_duration))
    audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    seconds = len(audio) / sr
    if seconds < MIN_DURATION:
        raise InputError(info.path, f"is too short ({seconds:.2f} s; at least {MIN_DURATION:g} s needed)")
    if not audio.any():
        raise InputError(info.path, "audio is silent (all samples are zero)")
    return audio


def stream_audio(
    path: str | Path,
    block_seconds: float = 30.0,
    sr: int = SAMPLE_RATE,
    max_duration: float | None = None,
) -> Iterator[tuple[float, np.ndarray]]:
    """(start time in seconds, mono float32 block at ``sr``) over a whole file of any length.

    Memory stays at about one block, so hour-long recordings are fine. Blocks are
    contiguous and together equal what :func:`load_audio` would return. The file is
    checked when this is called (``max_duration`` from its header); decoding errors, and
    audio that runs past ``max_duration`` whatever its header said, surface during iteration.
    """
    if block_seconds <= 0:
        raise ValueError(f"block_seconds must be positive, got {block_seconds}")
    info, decoder = _inspect(path)
    _check_segment(info, None, None, max_duration, long_hint="")
    return _rebuffered(_mono_resampled(info, decoder, 0.0, None, sr, max_duration), round(block_seconds * sr), sr)


def _inspect(path: str | Path) -> tuple[AudioInfo, _Decoder]:
    """The header of ``path`` and the decoder that can read it."""
    path = checked_file(path)
    try:
        header = sf.info(path)
    except sf.SoundFileError:
        info = _inspect_container(path)
        _check_plausible(info)
        return info, _pyav_blocks
    _check_plausible(AudioInfo(path, header.samplerate, header.channels, header.frames, 0.0, header.format))
    if header.format == "WAV":
        _check_wav_layout(path, header.channels, header.frames)
    info = AudioInfo(
        path,
        header.samplerate,
        header.channels,
        header.frames,
        header.frames / header.samplerate,
        header.format,
    )
    return info, _soundfile_blocks


def _check_plausible(info: AudioInfo) -> None:
    """Header values every later allocation is sized from, held to what real audio has."""
    if not MIN_SAMPLE_RATE <= info.sample_rate <= MAX_SAMPLE_RATE:
        raise InputError(
            info.path,
            f"its header gives an implausible sample rate of {info.sample_rate} Hz "
            f"({MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz accepted); the file is corrupt or mislabelled",
        )
    if not 1 <= info.channels <= MAX_CHANNELS:
        raise InputError(info.path, f"its header gives {info.channels} channels (1-{MAX_CHANNELS} accepted)")
    if info.frames < 0:
        raise InputError(info.path, f"its header gives a negative length ({info.frames} frames)")


def checked_file(path: str | Path) -> str:
    """``path`` as a string when it names a non-empty regular file; a one-line InputError
    (not found, unreadable, a folder or device, empty) otherwise, before any decoder sees it."""
    path = str(path)
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
    return path


def _check_wav_layout(path: str, channels: int, frames: int) -> None:
    """A WAV whose sizes disagree with the file. libsndfile quietly reads what is left of a
    cut-off file, and stops at the size a data chunk declares even when more audio follows
    it: catch the first from the RIFF size, the second from what follows the data chunk."""
    size = os.path.getsize(path)
    with open(path, "rb") as file:
        head = file.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return
        riff_size = int.from_bytes(head[4:8], "little")
        if 0 < riff_size < _UNSET_RIFF_SIZE and riff_size + 8 > size:
            raise InputError(path, f"is truncated (its header promises {riff_size + 8} bytes, the file has {size})")
        data = _find_chunk(file, b"data", size)
        if data is None:
            return
        data_start, data_size = data
        if not 0 < data_size < _UNSET_RIFF_SIZE:
            return  # sizes left unset by a writer that streamed to a pipe: read to the end
        data_end = data_start + data_size + (data_size & 1)
        if data_end < size and not _chunks_follow(file, data_end, size):
            extra = size - data_start - data_size
            raise InputError(
                path,
                f"its header is shorter than its data: it declares {data_size} bytes of audio "
                f"({frames} frames), but {extra} more bytes of audio follow them, which would be "
                "silently cut; repair the header (e.g. ffmpeg -ignore_length 1 -i in.wav out.wav)",
            )


def _find_chunk(file: BinaryIO, name: bytes, size: int) -> tuple[int, int] | None:
    """(offset of the payload, declared size) of the first chunk ``name`` of a RIFF file."""
    offset = 12
    while offset + 8 <= size:
        file.seek(offset)
        header = file.read(8)
        chunk_size = int.from_bytes(header[4:8], "little")
        if header[:4] == name:
            return offset + 8, chunk_size
        offset += 8 + chunk_size + (chunk_size & 1)
    return None


def _chunks_follow(file: BinaryIO, offset: int, size: int) -> bool:
    """Whether ``offset``..end of file is a run of well-formed chunks (LIST, id3, ...), as
    writers put after the audio, rather than more audio."""
    while offset + 8 <= size:
        file.seek(offset)
        header = file.read(8)
        chunk_size = int.from_bytes(header[4:8], "little")
        if not all(32 <= byte < 127 for byte in header[:4]) or offset + 8 + chunk_size > size + 1:
            return False
        offset += 8 + chunk_size + (chunk_size & 1)
    return all(byte == 0 for byte in _read_at(file, offset, size - offset))  # padding, if any


def _read_at(file: BinaryIO, offset: int, length: int) -> bytes:
    file.seek(offset)
    return file.read(length)


def _inspect_container(path: str) -> AudioInfo:
    """Header of a file libsndfile cannot open, read by FFmpeg."""
    try:
        with av.open(path) as container:
            stream = _audio_stream(container, path)
            duration = _container_duration(container, stream)
            kind = f"{container.format.name.split(',')[0]}/{stream.codec_context.name}"
            return AudioInfo(path, stream.rate, stream.channels, round(duration * stream.rate), duration, kind)
    except av.FFmpegError as error:
        raise InputError(path, f"is not an audio file that libsndfile or FFmpeg can read ({error.strerror})") from None


def _audio_stream(container: av.container.InputContainer, path: str) -> av.AudioStream:
    stream = container.streams.best("audio")
    if stream is None:
        kinds = sorted({s.type for s in container.streams})
        raise InputError(path, f"has no audio track (only {', '.join(kinds)})" if kinds else "has no audio track")
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
        (float((p.pts + p.duration) * stream.time_base) for p in container.demux(stream) if p.pts is not None),
        default=0.0,
    )
    return max(0.0, last - _stream_origin(stream))


def _check_segment(
    info: AudioInfo,
    start: float | None,
    end: float | None,
    max_duration: float | None,
    long_hint: str = "for one utterance; use a long-recording path (stream_audio)",
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
        raise InputError(info.path, f"segment end {end:.2f} s lies outside the file ({info.duration:.2f} s long)")
    length = (info.duration if end is None else min(end, info.duration)) - begin
    if max_duration is not None and length > max_duration:
        what = (
            "audio"
            if start is None and end is None
            else f"segment {begin:.2f}-{info.duration if end is None else end:.2f} s"
        )
        raise InputError(
            info.path,
            f"{what} is {timedelta(seconds=round(length))} long, over the {max_duration:g} s limit " + long_hint,
        )
    return begin


def _soundfile_blocks(info: AudioInfo, start: float, end: float | None) -> Iterator[np.ndarray]:
    """Fresh arrays of what libsndfile actually decoded. (SoundFile.blocks reuses one buffer
    and, when a stream ends before its header says, hands out stale memory as audio: a cut
    MP3 came out as different noise on every run.) Such a shortfall is refused."""
    first = round(start * info.sample_rate)
    last = info.frames if end is None else min(round(end * info.sample_rate), info.frames)
    remaining = last - first
    with sf.SoundFile(info.path) as file:
        file.seek(first)
        while remaining > 0:
            block = file.read(min(_READ_FRAMES, remaining), dtype="float32", always_2d=True)
            if not len(block):
                break
            remaining -= len(block)
            yield block
    if remaining / info.sample_rate > _TRUNCATION_SLACK + 0.01 * info.duration:
        ended = (last - remaining) / info.sample_rate
        raise InputError(
            info.path,
            f"is truncated or corrupt: its header promises {info.duration:.2f} s, its audio ends at {ended:.2f} s",
        )


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
            if frame.sample_rate != info.sample_rate:
                raise InputError(
                    info.path,
                    f"changes sample rate mid-stream ({info.sample_rate} Hz, then {frame.sample_rate} Hz)",
                )
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
    info: AudioInfo,
    decoder: _Decoder,
    start: float,
    end: float | None,
    sr: int,
    max_duration: float | None = None,
) -> Iterator[np.ndarray]:
    """Decoded blocks averaged over channels and resampled to ``sr``; decoder failures,
    non-finite or absurd samples and audio running past ``max_duration`` (a header that
    understated the length) become InputErrors."""
    resampler = (
        None if info.sample_rate == sr else soxr.ResampleStream(info.sample_rate, sr, 1, dtype="float32", quality="HQ")
    )
    position = start
    try:
        for block in decoder(info, start, end):
            _check_samples(info, block, position)
            mono = block.mean(axis=1, dtype=np.float32)
            position += len(mono) / info.sample_rate
            if max_duration is not None and position - start > max_duration + _SEGMENT_SLACK:
                raise InputError(
                    info.path,
                    f"holds more audio than its header says: over the {max_duration:g} s limit",
                )
            yield mono if resampler is None else resampler.resample_chunk(mono)
        if resampler is not None:
            yield resampler.resample_chunk(np.zeros(0, np.float32), last=True)
    except sf.LibsndfileError as error:
        raise _corrupt(info, position, error.error_string) from None
    except av.FFmpegError as error:
        raise _corrupt(info, position, error.strerror) from None


def _check_samples(info: AudioInfo, block: np.ndarray, position: float) -> None:
    """NaN, infinite and absurdly large samples, named by where the first one lies."""
    bad = ~(np.abs(block) <= MAX_SAMPLE_MAGNITUDE).all(axis=1)  # NaN compares False
    if not bad.any():
        return
    index = int(np.argmax(bad))
    where = f"first at {position + index / info.sample_rate:.2f} s"
    if not np.isfinite(block[index]).all():
        raise InputError(info.path, f"contains NaN or infinite samples ({where})")
    peak = float(np.abs(block[index]).max())
    raise InputError(
        info.path,
        f"contains sample values of {peak:.3g} ({where}); audio lies within ±1 "
        f"(at most ±{MAX_SAMPLE_MAGNITUDE:g} is accepted), so the file is corrupt",
    )


def _corrupt(info: AudioInfo, position: float, reason: str) -> InputError:
    return InputError(info.path, f"is corrupt or truncated: decoding failed near {position:.2f} s ({reason})")


def _rebuffered(pieces: Iterator[np.ndarray], block_size: int, sr: int) -> Iterator[tuple[float, np.ndarray]]:
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
