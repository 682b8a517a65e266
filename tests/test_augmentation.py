"""Waveform augmentation: each transform on signals built here, the chain's determinism, the
babble pool's speaker and corpus rules, and the errors of bad parameters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emotrace.audio import SAMPLE_RATE, load_audio
from emotrace.augmentation import (
    AugmentationConfig,
    AugmentationConfigError,
    Augmenter,
    BabblePool,
    BabbleSource,
    Clip,
    apply_gain,
    babble_of,
    change_speed,
    codec_round_trip,
    coloured_noise,
    limit_peak,
    mix_at_snr,
    reverberate,
    simulate_rir,
)

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "emotrace" / "samples"
#: every transform of the chain, always; one small room so that simulating it is quick
EVERYTHING = AugmentationConfig(reverb=1.0, babble=1.0, noise=1.0, codec=1.0, rooms=1, rt60=(0.3, 0.3))


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return load_audio(next(SAMPLES.glob("Actor_01/*.flac")))


def rms(waveform: np.ndarray) -> float:
    return float(np.sqrt(np.mean(waveform.astype(np.float64) ** 2)))


def tone(seconds: float = 1.0, frequency: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_changes_the_duration_by_the_factor_and_the_pitch_with_it(factor):
    original = tone(2.0, 400.0)
    faster = change_speed(original, factor)
    assert len(faster) == pytest.approx(len(original) / factor, abs=2)
    peak_frequency = np.argmax(np.abs(np.fft.rfft(faster))) * SAMPLE_RATE / len(faster)
    assert peak_frequency == pytest.approx(400.0 * factor, rel=0.01)
    assert change_speed(original, 1.0) is original


@pytest.mark.parametrize("db", [-6.0, 3.0])
def test_gain_changes_the_rms_by_the_decibels(db):
    original = tone()
    assert 20 * np.log10(rms(apply_gain(original, db)) / rms(original)) == pytest.approx(db, abs=1e-4)


@pytest.mark.parametrize("colour", ["white", "pink", "brown"])
@pytest.mark.parametrize("snr", [5.0, 20.0])
def test_noise_at_a_drawn_snr_gives_that_snr(speech, colour, snr):
    noise = coloured_noise(len(speech), colour, np.random.default_rng(0))
    mixed = mix_at_snr(speech, noise, snr)
    measured = 10 * np.log10(
        np.mean(speech.astype(np.float64) ** 2) / np.mean((mixed - speech).astype(np.float64) ** 2)
    )
    assert measured == pytest.approx(snr, abs=0.05)


def test_noise_colours_tilt_the_spectrum():
    def high_share(colour: str) -> float:
        power = np.abs(np.fft.rfft(coloured_noise(SAMPLE_RATE, colour, np.random.default_rng(1)))) ** 2
        return float(power[len(power) // 2 :].sum() / power.sum())

    assert high_share("white") > 0.4 > high_share("pink") > high_share("brown")


def test_babble_sums_talkers_looped_to_the_length():
    rng = np.random.default_rng(0)
    babble = babble_of([tone(0.3, 200.0), tone(0.5, 300.0)], 16000, rng)
    assert len(babble) == 16000 and rms(babble) > 1.0  # each voice brought to unit RMS


def test_reverberation_lengthens_the_energy_decay():
    burst = np.zeros(SAMPLE_RATE, np.float32)
    burst[:1600] = np.random.default_rng(0).standard_normal(1600).astype(np.float32) * 0.1
    rir = simulate_rir(0.5, np.random.default_rng(0))
    assert np.argmax(np.abs(rir)) == 0  # direct path first: nothing is delayed
    wet = reverberate(burst, rir)
    assert len(wet) == len(burst) and rms(wet) == pytest.approx(rms(burst), rel=1e-4)
    tail = slice(1600 + SAMPLE_RATE // 10, None)  # from 0.1 s after the burst ends
    assert rms(burst[tail]) == 0.0 and rms(wet[tail]) > 0.01 * rms(wet)


@pytest.mark.parametrize("codec", ["opus", "mp3"])
def test_codec_round_trip_keeps_length_and_rate_and_the_signal(speech, codec):
    decoded = codec_round_trip(speech, codec, 32)
    assert decoded.dtype == np.float32 and len(decoded) == len(speech)
    assert np.corrcoef(decoded, speech)[0, 1] > 0.8  # lossy, aligned, still the same speech
    low = codec_round_trip(speech, codec, 8)
    assert np.abs(low - speech).mean() > np.abs(decoded - speech).mean()  # fewer bits, more damage


def test_peak_limit_scales_down_only():
    loud = np.array([0.5, -2.0, 1.0], np.float32)
    assert np.abs(limit_peak(loud)).max() == pytest.approx(0.99) and np.array_equal(limit_peak(loud / 4), loud / 4)


def pool_of(speakers: dict[str, list[str]], loaded: list[BabbleSource]) -> BabblePool:
    """A pool of ``{corpus: [speaker, ...]}`` (three clips each) whose loads are recorded."""

    def load(source: BabbleSource) -> np.ndarray:
        loaded.append(source)
        return tone(0.4, 100.0 + 10 * len(source.audio))

    sources = [
        BabbleSource(speaker, corpus, f"{corpus}/{speaker}/{take}.wav")
        for corpus, names in speakers.items()
        for speaker in names
        for take in range(3)
    ]
    return BabblePool(sources, load)


def test_the_chain_is_a_function_of_clip_copy_and_seed(speech):
    loaded: list[BabbleSource] = []
    augmenter = Augmenter(EVERYTHING, pool_of({"a": ["s1", "s2", "s3"]}, loaded))
    clip = Clip("a/s1/0.wav", "s1", "a")
    first = augmenter.augment(speech, clip, 0)
    assert np.array_equal(first, augmenter.augment(speech, clip, 0))
    assert np.array_equal(first, Augmenter(EVERYTHING, pool_of({"a": ["s1", "s2", "s3"]}, [])).augment(speech, clip, 0))
    assert not np.array_equal(first, augmenter.augment(speech, clip, 1))
    assert not np.array_equal(first, augmenter.augment(speech, Clip("a/s1/1.wav", "s1", "a"), 0))
    other_seed = Augmenter(AugmentationConfig(**{**EVERYTHING.to_dict(), "seed": 1, "rt60": (0.3, 0.3)}))
    assert not np.array_equal(first, other_seed.augment(speech, clip, 0))
    assert first.dtype == np.float32 and np.abs(first).max() <= 0.99


def test_babble_never_uses_the_clips_speaker_or_another_corpus(speech):
    loaded: list[BabbleSource] = []
    pool = pool_of({"a": ["s1", "s2", "s3", "s4"], "b": ["t1", "t2"]}, loaded)
    augmenter = Augmenter(AugmentationConfig(babble=1.0, reverb=0.0, codec=0.0, noise=0.0), pool)
    for copy in range(12):
        augmenter.augment(speech[:8000], Clip(f"clip{copy}", "s2", "a"), copy)
    assert loaded and {source.corpus for source in loaded} == {"a"}
    assert "s2" not in {source.speaker for source in loaded} and len({s.speaker for s in loaded}) == 3
    alone = pool_of({"c": ["only"]}, [])
    assert alone.draw("c", "only", 3, np.random.default_rng(0)) == []  # nobody else: no babble
    assert alone.draw("elsewhere", "x", 3, np.random.default_rng(0)) == []


def test_without_a_pool_babble_is_left_out_and_the_rest_applies(speech):
    config = AugmentationConfig(babble=1.0, reverb=0.0, codec=0.0, noise=0.0, gain_db=(0.0, 0.0), speeds=(1.0,))
    assert np.array_equal(Augmenter(config).augment(speech, Clip("x"), 0), limit_peak(speech))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"noise": 1.5}, "noise is a probability in"),
        ({"speeds": (3.0,)}, "speeds must be factors"),
        ({"speeds": ()}, "speeds must be factors"),
        ({"snr_db": (20.0, 5.0)}, "snr_db must be"),
        ({"rt60": (0.0, 0.5)}, "rt60 must be"),
        ({"codecs": ("aac",)}, "codecs must be among"),
        ({"bitrate_kbps": (1, 8)}, "bitrate_kbps must be"),
        ({"rooms": 0}, "rooms must be at least 1"),
    ],
)
def test_bad_parameters_are_named(options, message):
    with pytest.raises(AugmentationConfigError, match=message):
        AugmentationConfig(**options)


def test_bad_transform_arguments_are_named(speech):
    with pytest.raises(AugmentationConfigError, match="speed factor must be positive"):
        change_speed(speech, 0.0)
    with pytest.raises(AugmentationConfigError, match="codec must be one of"):
        codec_round_trip(speech, "wma", 16)
    with pytest.raises(AugmentationConfigError, match="noise colour"):
        coloured_noise(10, "blue", np.random.default_rng(0))
    with pytest.raises(AugmentationConfigError, match="copy index"):
        Augmenter().augment(speech, Clip("x"), -1)
