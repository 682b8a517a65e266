"""Hand-crafted and speaker features: log-mel, openSMILE sets, Resemblyzer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import librosa
import numpy as np
import pytest

from emotrace.audio import load_audio
from emotrace.errors import InputError
from emotrace.features.inputs import ExtractorConfigError
from emotrace.features.registry import get_extractor
from emotrace.features.weights import installed_package_folder

RATE = 16000


def test_logmel_frames_and_the_tone_in_its_band(sine: Callable[..., np.ndarray]) -> None:
    tone = sine(440.0, 1.0, RATE)
    features = get_extractor("logmel").extract([tone, tone[:1234]])
    assert features[0].data.shape == (1, 1 + RATE // 160, 80)
    assert features[1].data.shape == (1, 1 + 1234 // 160, 80)
    assert features[0].frame_rate == 100.0 and features[0].data.dtype == np.float32
    centres = librosa.mel_frequencies(n_mels=82, fmax=RATE / 2)[1:-1]
    loudest = features[0].data[0, 50].argmax()
    assert abs(centres[loudest] - 440.0) < 60.0
    assert get_extractor("logmel:bins=40").extract([tone])[0].data.shape[2] == 40


def test_logmel_of_silence_is_finite() -> None:
    features = get_extractor("logmel").extract([np.zeros(800, np.float32)])[0]
    np.testing.assert_allclose(features.data, -100.0, atol=1e-4)


@pytest.mark.parametrize(
    "name, dims, rate", [("egemaps", 25, 100.0), ("egemaps-functionals", 88, 0.0), ("compare", 6373, 0.0)]
)
def test_opensmile_sets(name: str, dims: int, rate: float, fixture_clips: list[Path]) -> None:
    waveform = load_audio(fixture_clips[0])
    features = get_extractor(name).extract([waveform])[0]
    frames = features.data.shape[1]
    if rate:
        assert len(waveform) // 160 - 8 <= frames <= len(waveform) // 160
    else:
        assert frames == 1
    assert features.data.shape == (1, frames, dims) and features.frame_rate == rate
    assert np.isfinite(features.data).all()


def test_opensmile_batches_in_threads_equal_one_input_at_a_time(fixture_clips: list[Path]) -> None:
    import torch

    waveforms = [load_audio(clip) for clip in fixture_clips] * 2
    extractor = get_extractor("egemaps")
    alone = [extractor.extract([waveform])[0].data for waveform in waveforms]
    threads = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        batch = [features.data for features in extractor.extract(waveforms)]
    finally:
        torch.set_num_threads(threads)
    for one, together in zip(alone, batch):
        np.testing.assert_array_equal(one, together)


def test_opensmile_refuses_what_it_cannot_measure() -> None:
    with pytest.raises(InputError, match="too short for egemaps"):
        get_extractor("egemaps").extract([np.full(800, 0.1, np.float32)])


@pytest.fixture(scope="module")
def resemblyzer_installed() -> None:
    if installed_package_folder("resemblyzer") is None:
        pytest.skip("resemblyzer not installed")


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")  # resemblyzer's imports
def test_resemblyzer_windows_and_utterance(resemblyzer_installed: None, fixture_clips: list[Path]) -> None:
    from resemblyzer import VoiceEncoder, audio

    waveform = load_audio(fixture_clips[2])
    frames = get_extractor("resemblyzer").extract([waveform, np.zeros(4000, np.float32)])
    # 1.6 s windows every 100 ms, cut as the library cuts them, until one covers the end
    windows = len(VoiceEncoder.compute_partial_slices(len(waveform), rate=10, min_coverage=0.75)[0])
    assert abs(windows - ((len(waveform) / RATE - 1.6) * 10 + 1)) <= 1.5
    assert frames[0].data.shape == (1, windows, 256)
    assert frames[0].frame_rate == 10.0
    assert frames[1].data.shape == (1, 1, 256) and np.isfinite(frames[1].data).all()
    assert get_extractor("resemblyzer:rate=16").frame_rate == 100 / 6  # a whole number of 10 ms hops

    utterance = get_extractor("resemblyzer-utterance").extract([waveform])[0]
    assert utterance.data.shape == (1, 1, 256) and utterance.frame_rate == 0.0
    normalised = audio.normalize_volume(waveform, -30, increase_only=True)
    library = VoiceEncoder("cpu", verbose=False).embed_utterance(normalised)
    np.testing.assert_allclose(utterance.data[0, 0], library, atol=1e-5)


def test_resemblyzer_rate_bounds() -> None:
    with pytest.raises(ExtractorConfigError, match="rate"):
        get_extractor("resemblyzer:rate=0.5")
