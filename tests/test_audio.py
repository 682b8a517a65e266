"""Audio I/O: every format and shape of input comes out as 16 kHz mono float32, and every
bad input is a one-line error naming the file and the problem, alone or in a batch."""

from __future__ import annotations

import time
import tracemalloc
from itertools import chain, zip_longest
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from emotrace.audio import (
    MAX_LOAD_SECONDS,
    SAMPLE_RATE,
    load_audio,
    probe,
    stream_audio,
)
from emotrace.corpora.records import Utterance
from emotrace.errors import BatchReport, InputError

LOSSY_SLACK = 0.05  # seconds of encoder padding or delay a lossy codec may add or drop
TWO_HOURS = 7200.0


def dominant_frequency(audio: np.ndarray, sr: int) -> float:
    return float(np.argmax(np.abs(np.fft.rfft(audio)))) * sr / len(audio)


def write_with_pyav(path: Path, codec: str, pcm: np.ndarray, sr: int) -> Path:
    """Encode ``pcm`` (channels, samples) float32 into a container chosen by the extension."""
    layout = {1: "mono", 2: "stereo"}[len(pcm)]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=sr, layout=layout)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm), format="fltp", layout=layout)
        frame.rate = sr
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return path


def write_video_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        black = np.zeros((48, 64, 3), np.uint8)
        for _ in range(10):
            for packet in stream.encode(av.VideoFrame.from_ndarray(black, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def write_two_hour_wav(path: Path) -> Path:
    """A real 2-hour 8 kHz 16-bit WAV (~115 MB), written a minute at a time: silence with
    a one-second tone in every minute."""
    sr = 8000
    minute = np.zeros(60 * sr, np.float32)
    minute[:sr] = 0.5 * np.sin(2 * np.pi * 440 * np.arange(sr) / sr)
    with sf.SoundFile(path, "w", samplerate=sr, channels=1, subtype="PCM_16") as file:
        for _ in range(round(TWO_HOURS / 60)):
            file.write(minute)
    return path


@pytest.fixture(scope="module")
def two_hour_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_two_hour_wav(tmp_path_factory.mktemp("long") / "two_hours.wav")


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory, sine, two_hour_wav: Path) -> list[tuple[Utterance, list[str]]]:
    """Every kind of bad input, as utterances, with the words its error message must hold."""
    folder = tmp_path_factory.mktemp("bad")
    tone = sine(440, 2.0, 16000)

    (folder / "empty.wav").write_bytes(b"")
    sf.write(folder / "whole.wav", tone, 16000, subtype="PCM_16")
    wav = (folder / "whole.wav").read_bytes()
    (folder / "cut.wav").write_bytes(wav[: len(wav) // 2])
    sf.write(folder / "whole.flac", tone, 16000)
    flac = (folder / "whole.flac").read_bytes()
    (folder / "cut.flac").write_bytes(flac[: len(flac) // 2])
    (folder / "noise.mp3").write_bytes(np.random.default_rng(0).bytes(5000))
    (folder / "notes.wav").write_text("not audio, just a text file with a .wav name\n" * 20)
    write_video_only(folder / "video_only.mp4")
    sf.write(folder / "silent.wav", np.zeros(16000, np.float32), 16000)
    sf.write(folder / "short.wav", sine(440, 0.05, 16000), 16000)
    with_nan = tone.copy()
    with_nan[8000] = np.nan
    sf.write(folder / "nan.wav", with_nan, 16000, subtype="FLOAT")
    with_inf = tone.copy()
    with_inf[4000] = np.inf
    sf.write(folder / "inf.wav", with_inf, 16000, subtype="FLOAT")

    def utterance(name: str, **segment: float) -> Utterance:
        label = f"bad-{name}" + "".join(f"-{key}{value}" for key, value in segment.items())
        return Utterance(id=label, audio=str(folder / name), label=None, speaker="s", **segment)

    return [
        (utterance("empty.wav"), ["empty"]),
        (utterance("cut.wav"), ["truncated"]),
        (utterance("cut.flac"), ["corrupt or truncated"]),
        (utterance("noise.mp3"), ["not an audio file"]),
        (utterance("notes.wav"), ["not an audio file"]),
        (utterance("video_only.mp4"), ["no audio track", "video"]),
        (utterance("silent.wav"), ["silent", "all samples are zero"]),
        (utterance("short.wav"), ["too short", "0.05 s", "0.1 s"]),
        (utterance("nan.wav"), ["NaN or infinite", "0.50 s"]),
        (utterance("inf.wav"), ["NaN or infinite", "0.25 s"]),
        (
            Utterance("bad-two_hours.wav", str(two_hour_wav), None, "s"),
            ["2:00:00", "600 s", "stream_audio"],
        ),
        (utterance("missing.wav"), ["not found"]),
        (utterance("whole.wav", start=2.5, end=3.0), ["start 2.50 s", "outside", "2.00 s long"]),
        (utterance("whole.wav", start=0.5, end=2.5), ["end 2.50 s", "outside"]),
        (utterance("whole.wav", start=1.0, end=0.5), ["not after its start"]),
    ]


@pytest.fixture(scope="module")
def good_inputs(
    tmp_path_factory: pytest.TempPathFactory, sine, fixture_clips: list[Path]
) -> list[tuple[Utterance, float, float]]:
    """Valid inputs of every format and shape, with the duration (seconds) each must come
    out with at 16 kHz and the slack allowed for lossy codecs. All are 440 Hz tones but
    the labelled one, a real RAVDESS clip."""
    folder = tmp_path_factory.mktemp("good")
    stereo_48k = np.stack([sine(440, 1.0, 48000)] * 2)

    sf.write(folder / "eight_channels.wav", np.stack([sine(440, 1.0, 48000)] * 8, axis=1), 48000)
    sf.write(folder / "8khz.wav", sine(440, 1.0, 8000), 8000, subtype="PCM_16")
    sf.write(folder / "192khz.wav", sine(440, 1.0, 192000), 192000, subtype="PCM_24")
    sf.write(folder / "stereo_44k.flac", np.stack([sine(440, 1.0, 44100)] * 2, axis=1), 44100)
    sf.write(folder / "vorbis.ogg", sine(440, 1.0, 22050), 22050)
    sf.write(folder / "lame.mp3", sine(440, 1.0, 24000), 24000)
    write_with_pyav(folder / "aac.m4a", "aac", stereo_48k, 48000)
    write_with_pyav(folder / "opus.mkv", "libopus", stereo_48k, 48000)
    write_with_pyav(folder / "opus.webm", "libopus", stereo_48k[:1], 48000)
    write_with_pyav(folder / "pcm.mkv", "pcm_s16le", stereo_48k, 48000)

    def utterance(path: Path, **segment: float) -> Utterance:
        label = f"good-{path.name}" + "".join(f"-{key}{value}" for key, value in segment.items())
        return Utterance(id=label, audio=str(path), label=None, speaker="s", **segment)

    lossless = [
        folder / name for name in ("eight_channels.wav", "8khz.wav", "192khz.wav", "stereo_44k.flac", "pcm.mkv")
    ]
    lossy = [folder / name for name in ("vorbis.ogg", "lame.mp3", "aac.m4a", "opus.mkv", "opus.webm")]
    clip = fixture_clips[0]
    return [
        *[(utterance(path), 1.0, 0.0) for path in lossless],
        *[(utterance(path), 1.0, LOSSY_SLACK) for path in lossy],
        (utterance(folder / "8khz.wav", start=0.25, end=0.75), 0.5, 0.0),
        (
            Utterance(id=clip.stem, audio=str(clip), label="happy", speaker="Actor_01"),
            sf.info(clip).frames / SAMPLE_RATE,
            0.0,
        ),
    ]


def assert_names_file_and_problem(error: InputError | str, utterance: Utterance, words: list[str]) -> None:
    message = str(error)
    assert "\n" not in message
    assert utterance.audio in message
    for word in words:
        assert word in message, f"{word!r} missing from {message!r}"


def test_bad_inputs_each_raise_one_line_error_naming_file_and_problem(bad_inputs) -> None:
    for utterance, words in bad_inputs:
        with pytest.raises(InputError) as caught:
            load_audio(utterance.audio, utterance.start, utterance.end)
        assert_names_file_and_problem(caught.value, utterance, words)


def test_good_inputs_come_out_16k_mono_float32_with_right_length_and_pitch(good_inputs) -> None:
    for utterance, seconds, slack in good_inputs:
        audio = load_audio(utterance.audio, utterance.start, utterance.end)
        assert audio.dtype == np.float32 and audio.ndim == 1, utterance.id
        assert abs(len(audio) - seconds * SAMPLE_RATE) <= slack * SAMPLE_RATE + 1, utterance.id
        if utterance.label is None:  # a tone, not the labelled speech clip
            assert dominant_frequency(audio, SAMPLE_RATE) == pytest.approx(440, abs=3), utterance.id


def load_each(utterances: list[Utterance], report: BatchReport) -> dict[str, np.ndarray]:
    """What a batch does with load_audio: each bad item goes to ``report`` and the batch goes on."""
    loaded = {}
    for utterance in utterances:
        try:
            loaded[utterance.id] = load_audio(utterance.audio, utterance.start, utterance.end)
        except InputError as error:
            report.skip(error)
            continue
        report.done += 1
    return loaded


def test_a_batch_skips_and_reports_every_bad_input_and_loads_every_good_one(bad_inputs, good_inputs) -> None:
    """Errors and successes interleaved: no bad file stops the batch or leaks into the next one."""
    good = {utterance.id: (seconds, slack) for utterance, seconds, slack in good_inputs}
    bad = [utterance for utterance, _ in bad_inputs]
    interleaved = zip_longest(bad, [utterance for utterance, _, _ in good_inputs])
    mixed = [utterance for utterance in chain.from_iterable(interleaved) if utterance is not None]
    report = BatchReport()

    loaded = load_each(mixed, report)

    assert sorted(loaded) == sorted(good)
    for name, audio in loaded.items():
        seconds, slack = good[name]
        assert abs(len(audio) - seconds * SAMPLE_RATE) <= slack * SAMPLE_RATE + 1, name
    assert report.done == len(good)
    assert len(report.skipped) == len(bad_inputs)
    for (utterance, words), error in zip(bad_inputs, report.skipped):  # bad ones keep their order
        assert_names_file_and_problem(error, utterance, words)
    summary = report.summary()
    assert summary.startswith(f"{len(good)} done, {len(bad_inputs)} skipped")
    assert all(utterance.audio in summary for utterance, _ in bad_inputs)


def test_a_strict_batch_raises_at_the_first_bad_item(bad_inputs, good_inputs) -> None:
    first_good, second_good = good_inputs[0][0], good_inputs[1][0]
    first_bad, second_bad = bad_inputs[5][0], bad_inputs[0][0]
    report = BatchReport(strict=True)
    with pytest.raises(InputError) as caught:
        load_each([first_good, first_bad, second_bad, second_good], report)
    assert str(caught.value).startswith(f"{first_bad.audio}: has no audio track")
    assert report.done == 1 and report.skipped == []


def test_bad_files_fail_when_streamed_too(bad_inputs) -> None:
    """stream_audio reads the same files: what is wrong with the file itself (not a segment or
    length limit, which streaming does not have) is an InputError naming it, when called or
    while iterating."""
    file_problems = ("empty", "truncated", "corrupt", "not an audio file", "no audio track", "NaN or", "not found")
    checked = 0
    for utterance, words in bad_inputs:
        if utterance.start is not None or not any(word.startswith(file_problems) for word in words):
            continue
        with pytest.raises(InputError) as caught:
            for _ in stream_audio(utterance.audio):
                pass
        assert_names_file_and_problem(caught.value, utterance, words)
        checked += 1
    assert checked == 9


def test_downmix_is_the_mean_over_channels(tmp_path: Path, sine) -> None:
    channels = np.stack([sine(440, 1.0, 16000, amplitude=0.1 * (k + 1)) for k in range(8)], axis=1)
    channels[:, 7] = -channels[:, 7]  # an out-of-phase channel must cancel, not add
    sf.write(tmp_path / "eight.wav", channels, 16000, subtype="FLOAT")
    assert probe(tmp_path / "eight.wav").channels == 8
    np.testing.assert_allclose(load_audio(tmp_path / "eight.wav"), channels.mean(axis=1), atol=1e-6)


@pytest.mark.parametrize("rate", [8000, 44100, 192000])
def test_resampling_keeps_pitch_and_level_and_removes_what_16k_cannot_hold(tmp_path: Path, sine, rate: int) -> None:
    above_nyquist = sine(12000, 1.0, rate, amplitude=0.2) if rate > 24000 else 0
    sf.write(tmp_path / "tone.wav", sine(440, 1.0, rate) + above_nyquist, rate, subtype="FLOAT")
    audio = load_audio(tmp_path / "tone.wav")
    assert len(audio) == SAMPLE_RATE
    spectrum = np.abs(np.fft.rfft(audio)) / (SAMPLE_RATE / 2)  # amplitude per 1 Hz bin
    assert np.argmax(spectrum) == 440
    assert spectrum[440] == pytest.approx(0.5, abs=0.01)
    assert spectrum[4000] < 1e-3  # a 12 kHz tone at 192 kHz must not alias to 4 kHz


def test_segments_equal_the_same_slice_of_the_whole_file(tmp_path: Path, write_tone) -> None:
    for path in (
        write_tone("seg.wav", seconds=3.0, sr=16000),
        write_tone("seg.flac", seconds=3.0, sr=16000),
    ):
        whole = load_audio(path)
        np.testing.assert_array_equal(load_audio(path, start=1.25, end=2.0), whole[20000:32000])
        np.testing.assert_array_equal(load_audio(path, start=2.5), whole[40000:])
        np.testing.assert_array_equal(load_audio(path, end=0.5), whole[:8000])


def test_container_segments_seek_to_the_right_place(tmp_path: Path) -> None:
    ramp = np.linspace(-0.9, 0.9, 3 * 48000, dtype=np.float32)  # each value tells its position
    pcm = np.stack([ramp, ramp])
    path = write_with_pyav(tmp_path / "ramp.mkv", "pcm_s16le", pcm, 48000)
    whole = load_audio(path)
    segment = load_audio(path, start=1.0, end=2.0)
    assert len(segment) == SAMPLE_RATE
    # away from its cut edges, where resampling rings, the segment is that slice of the whole
    np.testing.assert_allclose(segment[50:-50], whole[16050:31950], atol=1e-3)


def test_container_segments_are_read_by_seeking_not_by_decoding_what_precedes_them(tmp_path: Path, sine) -> None:
    minutes, frame_size = 20, 1000  # 1000 samples at 8 kHz hold a whole number of 440 Hz cycles
    with av.open(str(tmp_path / "long.mkv"), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000, layout="mono")
        chunk = sine(440, frame_size / 8000, 8000)[None]
        for index in range(minutes * 60 * 8000 // frame_size):
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.rate, frame.pts = 8000, index * frame_size
            for packet in stream.encode(frame):
                container.mux(packet)
    started = time.perf_counter()
    last_second = load_audio(tmp_path / "long.mkv", start=minutes * 60 - 1.0, end=minutes * 60)
    assert time.perf_counter() - started < 0.2  # decoding the 20 minutes before it takes ~0.8 s
    assert len(last_second) == SAMPLE_RATE
    assert dominant_frequency(last_second, SAMPLE_RATE) == pytest.approx(440, abs=2)


def test_a_two_hour_file_is_rejected_from_its_header_and_segments_of_it_are_read_by_seeking(
    two_hour_wav: Path,
) -> None:
    started = time.perf_counter()
    with pytest.raises(InputError, match="2:00:00 long"):
        load_audio(two_hour_wav)
    assert time.perf_counter() - started < 0.2
    assert probe(two_hour_wav).duration == TWO_HOURS
    started = time.perf_counter()
    minute_100 = load_audio(two_hour_wav, start=6000.0, end=6002.0)
    assert time.perf_counter() - started < 0.2
    assert len(minute_100) == 2 * SAMPLE_RATE
    assert dominant_frequency(minute_100[:SAMPLE_RATE], SAMPLE_RATE) == pytest.approx(440, abs=2)
    assert np.abs(minute_100[SAMPLE_RATE + 100 :]).max() < 1e-3  # then silence, bar filter ringing
    over_the_limit = MAX_LOAD_SECONDS + 1
    unlimited = load_audio(two_hour_wav, end=over_the_limit, max_duration=None)
    assert len(unlimited) == over_the_limit * SAMPLE_RATE


def test_streaming_two_hours_keeps_memory_to_a_few_blocks(two_hour_wav: Path) -> None:
    block_seconds = 30.0
    block_size = round(block_seconds * SAMPLE_RATE)
    starts, total = [], 0
    tracemalloc.start()
    try:
        for start, block in stream_audio(two_hour_wav, block_seconds=block_seconds):
            assert len(block) == block_size and block.dtype == np.float32
            starts.append(start)
            total += len(block)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == TWO_HOURS * SAMPLE_RATE
    assert starts == [k * block_seconds for k in range(round(TWO_HOURS / block_seconds))]
    # a few blocks of 1.8 MiB each, where the whole file decoded would be 440 MiB
    assert peak < 8 * block_size * 4, f"peak {peak / 2**20:.1f} MiB"


def test_stream_blocks_join_into_what_load_audio_returns(tmp_path: Path, write_tone) -> None:
    path = write_tone("tone.wav", seconds=2.0, sr=44100, channels=2)
    blocks = list(stream_audio(path, block_seconds=0.3))
    assert [start for start, _ in blocks] == pytest.approx([0.3 * k for k in range(7)])
    np.testing.assert_array_equal(np.concatenate([block for _, block in blocks]), load_audio(path))


def test_stream_audio_checks_the_file_when_called(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"missing\.wav: file not found"):
        stream_audio(tmp_path / "missing.wav")


def test_probe_reads_headers_of_every_kind(tmp_path: Path, sine, write_tone) -> None:
    info = probe(write_tone("tone.flac", seconds=1.5, sr=44100, channels=2))
    assert (info.sample_rate, info.channels, info.frames, info.format) == (44100, 2, 66150, "FLAC")
    assert info.duration == 1.5
    stereo = np.stack([sine(440, 1.0, 48000)] * 2)
    info = probe(write_with_pyav(tmp_path / "tone.m4a", "aac", stereo, 48000))
    assert (info.sample_rate, info.channels, info.format) == (48000, 2, "mov/aac")
    assert info.duration == pytest.approx(1.0, abs=LOSSY_SLACK)


def test_a_webm_recorded_live_without_duration_in_its_header_is_timed_by_its_packets(tmp_path: Path, sine) -> None:
    """A browser's MediaRecorder cannot seek back to write a duration: common uploads."""

    class Pipe:  # a write-only, unseekable sink, like a browser's recorder
        def __init__(self) -> None:
            self.data = bytearray()

        def write(self, chunk: bytes) -> int:
            self.data += chunk
            return len(chunk)

    pipe = Pipe()
    with av.open(pipe, "w", format="webm") as container:
        stream = container.add_stream("libopus", rate=48000, layout="mono")
        frame = av.AudioFrame.from_ndarray(sine(440, 1.5, 48000)[None], format="fltp", layout="mono")
        frame.rate = 48000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    (tmp_path / "live.webm").write_bytes(pipe.data)
    with av.open(str(tmp_path / "live.webm")) as container:
        assert container.duration is None
    assert probe(tmp_path / "live.webm").duration == pytest.approx(1.5, abs=LOSSY_SLACK)
    assert len(load_audio(tmp_path / "live.webm")) == pytest.approx(1.5 * SAMPLE_RATE, abs=LOSSY_SLACK * SAMPLE_RATE)


def test_a_wav_streamed_to_a_pipe_with_unset_sizes_is_not_called_truncated(tmp_path: Path, write_tone) -> None:
    path = write_tone("piped.wav")
    data = bytearray(path.read_bytes())
    data[4:8] = (0xFFFFFFFF).to_bytes(4, "little")  # what a writer that cannot seek back leaves
    path.write_bytes(data)
    assert len(load_audio(path)) == SAMPLE_RATE


def test_shipped_ravdess_clips_load_unchanged(fixture_clips: list[Path]) -> None:
    assert len(fixture_clips) == 3 and sum(path.stat().st_size for path in fixture_clips) < 300_000
    for path in fixture_clips:
        expected, sr = sf.read(path, dtype="float32")
        assert sr == SAMPLE_RATE and 0.5 < len(expected) / sr < 5
        np.testing.assert_array_equal(load_audio(path), expected)


def test_real_ravdess_clips_load_whole_and_streamed(shared_data: Path) -> None:
    paths = sorted((shared_data / "ravdess").glob("Actor_0[12]/*.flac"))[::20]
    utterances = [Utterance(id=path.stem, audio=str(path), label=None, speaker=path.parent.name) for path in paths]
    report = BatchReport(strict=True)
    loaded = load_each(utterances, report)
    assert report.done == len(paths) == 6
    assert {name: len(audio) for name, audio in loaded.items()} == {path.stem: sf.info(path).frames for path in paths}
    for path in paths:
        streamed = np.concatenate([block for _, block in stream_audio(path, block_seconds=1.0)])
        np.testing.assert_array_equal(streamed, loaded[path.stem])
