"""Files built to hurt: a header that lies about its sample rate, float samples near the
float32 limit, a cut MP3, a WAV whose header is shorter than its data, six hours of
silence. Each must give a one-line error naming the file (or a valid result), in bounded
memory, the same on every run, and never a NaN in JSON."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emotrace.audio import MAX_SAMPLE_MAGNITUDE, SAMPLE_RATE, load_audio, probe, stream_audio
from emotrace.errors import InputError
from emotrace.inference.sanity import check_probabilities

SRC = Path(__file__).resolve().parent.parent / "src"
ADDRESS_SPACE_LIMIT = 1 << 30  # bytes: 1 GiB; the 1 Hz header used to grow past 16 GB


def speechlike(seconds: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A voiced-sounding signal: harmonics of a gliding pitch under a syllable-rate envelope."""
    t = np.arange(round(seconds * sr)) / sr
    pitch = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / sr
    voice = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)
    return (0.2 * voice * envelope).astype(np.float32)


def one_hertz_wav(path: Path) -> Path:
    """131 KB of real 16 kHz audio whose header says 1 Hz, as in the review."""
    sf.write(path, speechlike(4.1)[:65536], 1, subtype="PCM_16")
    return path


def short_header_wav(path: Path) -> Path:
    """A WAV whose data chunk declares half of the audio that follows it."""
    sf.write(path, speechlike(2.0), SAMPLE_RATE, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    chunk = data.find(b"data")
    declared = int.from_bytes(data[chunk + 4 : chunk + 8], "little") // 2
    data[chunk + 4 : chunk + 8] = declared.to_bytes(4, "little")
    data[4:8] = (len(data) - 8 - declared).to_bytes(4, "little")  # a RIFF size that agrees with the header
    path.write_bytes(data)
    return path


def cut_mp3(path: Path) -> Path:
    """An MP3 (with the Xing header lame writes) cut off halfway."""
    whole = path.with_name("whole.mp3")
    sf.write(whole, speechlike(10.0), SAMPLE_RATE)
    data = whole.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 37])
    return path


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    sf.write(folder / "huge.wav", speechlike(2.0) * 1e38, SAMPLE_RATE, subtype="FLOAT")
    return {
        "one_hertz": one_hertz_wav(folder / "one_hertz.wav"),
        "huge": folder / "huge.wav",
        "cut_mp3": cut_mp3(folder / "cut.mp3"),
        "short_header": short_header_wav(folder / "short_header.wav"),
    }


def one_line(error: InputError | str, path: Path, *words: str) -> None:
    message = str(error)
    assert "\n" not in message and str(path) in message, message
    for word in words:
        assert word in message, f"{word!r} missing from {message!r}"


def test_a_header_that_says_1_hz_fails_fast_in_bounded_memory(hostile):
    """Probe, load and stream, in a process that may not map more than 1 GiB."""
    script = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, ({ADDRESS_SPACE_LIMIT}, {ADDRESS_SPACE_LIMIT}))
        from emotrace.audio import load_audio, probe, stream_audio
        from emotrace.errors import InputError
        for read in (probe, load_audio, lambda path: list(stream_audio(path))):
            try:
                read(sys.argv[1])
            except InputError as error:
                print(error)
            else:
                print("read without error")
        # VmHWM: this process's own peak (ru_maxrss would carry over the parent's from fork)
        status = open("/proc/self/status").read().split("VmHWM:")[1]
        print(status.split()[0])
    """)
    done = subprocess.run(
        [sys.executable, "-c", script, str(hostile["one_hertz"])],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    assert done.returncode == 0, done.stderr
    *errors, peak_kb = done.stdout.splitlines()
    assert len(errors) == 3
    for error in errors:
        one_line(error, hostile["one_hertz"], "1 Hz", "implausible sample rate", "2000-384000 Hz")
    assert int(peak_kb) < 400_000  # KiB: what importing numpy, soundfile and PyAV takes, and no more


@pytest.mark.parametrize("channels", [1, 4])
def test_float_samples_near_the_float32_limit_are_refused_by_name(hostile, tmp_path, channels):
    """1e38 is finite, but a mean over channels or any power spectrum of it is not."""
    path = hostile["huge"]
    if channels > 1:
        path = tmp_path / "huge_quad.wav"
        sf.write(path, np.repeat(speechlike(2.0)[:, None] * 1e38, channels, axis=1), SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(InputError) as caught:
        load_audio(path)
    one_line(caught.value, path, "sample values of", "±1", "corrupt")


def test_loud_but_plausible_float_samples_still_load(tmp_path):
    path = tmp_path / "integer_scaled.wav"  # some writers store int16 values as floats
    sf.write(path, speechlike(1.0) * 32768 / 0.35, SAMPLE_RATE, subtype="FLOAT")
    audio = load_audio(path)
    assert np.isfinite(audio).all() and np.abs(audio).max() <= MAX_SAMPLE_MAGNITUDE


def test_a_cut_mp3_is_refused_the_same_way_every_time(hostile):
    path = hostile["cut_mp3"]
    messages = set()
    for _ in range(3):
        with pytest.raises(InputError) as caught:
            load_audio(path)
        messages.add(str(caught.value))
    (message,) = messages
    one_line(message, path, "truncated or corrupt", "promises 10.00 s")
    # what libsndfile holds of it decodes identically each time: no stale memory as audio
    with sf.SoundFile(path) as file:
        first = file.read(dtype="float32")
    for _ in range(2):
        with sf.SoundFile(path) as file:
            np.testing.assert_array_equal(file.read(dtype="float32"), first)


def test_segments_of_the_cut_mp3_that_it_holds_still_load(hostile):
    audio = load_audio(hostile["cut_mp3"], 0.5, 2.5)
    assert len(audio) == 2 * SAMPLE_RATE and np.isfinite(audio).all()


def test_a_wav_whose_header_is_shorter_than_its_data_is_not_silently_cut(hostile):
    path = hostile["short_header"]
    with pytest.raises(InputError) as caught:
        load_audio(path)
    one_line(caught.value, path, "header is shorter than its data", "32000 more bytes", "silently cut")


def test_a_wav_with_chunks_after_its_data_is_read_as_it_is(tmp_path):
    """Metadata after the audio (a LIST chunk, then zero padding) is no sign of a short header."""
    path = tmp_path / "tagged.wav"
    sf.write(path, speechlike(1.0), SAMPLE_RATE, subtype="PCM_16")
    info = b"INFOINAM" + (6).to_bytes(4, "little") + b"title\0"
    tail = b"LIST" + len(info).to_bytes(4, "little") + info + bytes(4)
    data = bytearray(path.read_bytes() + tail)
    data[4:8] = (len(data) - 8).to_bytes(4, "little")
    path.write_bytes(data)
    assert len(load_audio(path)) == SAMPLE_RATE


def test_six_hours_of_silence_is_refused_from_its_header(tmp_path):
    path = six_hours_of_silence(tmp_path / "six_hours.flac")
    assert path.stat().st_size < 2_000_000 and probe(path).duration == pytest.approx(6 * 3600)
    with pytest.raises(InputError) as caught:
        load_audio(path)
    one_line(caught.value, path, "6:00:00", "600 s limit")
    with pytest.raises(InputError) as caught:
        stream_audio(path, max_duration=3600)
    one_line(caught.value, path, "6:00:00", "3600 s limit")


def six_hours_of_silence(path: Path) -> Path:
    """About half a megabyte of FLAC: digital silence compresses to almost nothing."""
    sr = 8000
    with sf.SoundFile(path, "w", samplerate=sr, channels=1, subtype="PCM_16") as file:
        ten_minutes = np.zeros(600 * sr, np.int16)
        for _ in range(36):
            file.write(ten_minutes)
    return path


def test_a_header_that_understates_the_length_is_caught_while_decoding(tmp_path, monkeypatch):
    """The limit holds while decoding too, whatever the header said."""
    path = tmp_path / "tone.wav"
    sf.write(path, speechlike(3.0), SAMPLE_RATE)
    header = probe(path)
    from emotrace import audio

    real_inspect = audio._inspect

    def lying(path):  # as if the header said a third of the length
        info, decoder = real_inspect(path)
        return audio.AudioInfo(info.path, info.sample_rate, info.channels, info.frames // 3, 1.0, info.format), (
            lambda info_, start, end: decoder(header, start, end)
        )

    monkeypatch.setattr(audio, "_inspect", lying)
    with pytest.raises(InputError) as caught:
        list(stream_audio(path, max_duration=2.0))
    one_line(caught.value, path, "more audio than its header says")


def test_probabilities_that_are_not_finite_never_reach_json():
    labels = ("angry", "happy", "sad")
    assert check_probabilities("clip.wav", labels, np.array([0.2, 0.3, 0.5])) is not None
    for bad in ([np.nan, 0.5, 0.5], [np.inf, 0.0, 0.0], [0.2, 0.2, 0.2], [0.5, 0.5]):
        with pytest.raises(InputError) as caught:
            check_probabilities("clip.wav", labels, np.array(bad))
        assert str(caught.value).startswith("clip.wav: ") and "\n" not in str(caught.value)


@pytest.mark.usefixtures("torch_single_thread")
def test_a_batch_of_hostile_files_predicts_the_good_one_and_writes_strict_json(hostile, fixture_clips, tmp_path):
    """Every hostile file skipped with its reason, the good clip predicted, and JSON that a
    strict parser (no NaN) reads. The command runs in its own process: a crash would show."""
    folder = tmp_path / "batch"
    folder.mkdir()
    for path in hostile.values():
        (folder / path.name).write_bytes(path.read_bytes())
    loud = folder / "loud.wav"  # plausible, loud: must come out finite
    sf.write(loud, load_audio(fixture_clips[0]) * 60000, SAMPLE_RATE, subtype="FLOAT")
    (folder / fixture_clips[1].name).write_bytes(fixture_clips[1].read_bytes())
    out = tmp_path / "out.json"
    done = subprocess.run(
        [sys.executable, "-m", "emotrace", "predict", str(folder), "--format", "json", "--output", str(out)],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    assert done.returncode == 0, done.stderr[-2000:]

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in JSON")

    document = json.loads(out.read_text(), parse_constant=refuse)
    predicted = sorted(Path(p["source"]).name for p in document["predictions"])
    assert predicted == sorted([loud.name, fixture_clips[1].name])
    for prediction in document["predictions"]:
        assert all(math.isfinite(value) for value in prediction["probabilities"].values())
    skipped = {Path(item["source"]).name: item["problem"] for item in document["skipped"]}
    assert set(skipped) == {path.name for path in hostile.values()}
    assert "implausible sample rate" in skipped["one_hertz.wav"]
    assert "sample values of" in skipped["huge.wav"]
    assert "truncated or corrupt" in skipped["cut.mp3"]
    assert "header is shorter than its data" in skipped["short_header.wav"]


def test_a_waveform_passed_as_an_array_is_held_to_the_same_bound():
    from emotrace.features.inputs import checked_waveforms

    with pytest.raises(InputError) as caught:
        checked_waveforms([speechlike(1.0) * 1e38])
    assert str(caught.value).startswith("input 0: waveform has sample values of")
    (plausible,) = checked_waveforms([speechlike(1.0) * 1000])
    assert plausible.dtype == np.float32
