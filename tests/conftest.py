"""Fixtures every test module may use: the real data root, the shipped clips, tones."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data root (``EMOTRACE_DATA``, else ``<repo>/../shared/data``); skips if absent."""
    root = Path(os.environ.get("EMOTRACE_DATA", TESTS.parent.parent / "shared" / "data"))
    if not root.is_dir():
        pytest.skip(f"real data not found at {root} (set EMOTRACE_DATA to its folder)")
    return root


@pytest.fixture(scope="session")
def fixture_clips() -> list[Path]:
    """The three RAVDESS clips shipped in the package (16 kHz mono FLAC; see its README)."""
    from emotrace.samples import sample_clips

    return sample_clips()


def _sine(freq: float, seconds: float, sr: int, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * freq * np.arange(round(seconds * sr)) / sr)).astype(np.float32)


@pytest.fixture(scope="session")
def sine() -> Callable[..., np.ndarray]:
    """``sine(freq, seconds, sr, amplitude=0.5)``: a float32 tone, the signal whose pitch and
    level make conversions checkable."""
    return _sine


@pytest.fixture
def write_tone(tmp_path: Path) -> Callable[..., Path]:
    """``write_tone(name, freq=440, seconds=1, sr=16000, channels=1, subtype=None)`` writes a
    sine tone (the same in every channel) to ``tmp_path/name`` with soundfile."""

    def write(
        name: str,
        freq: float = 440.0,
        seconds: float = 1.0,
        sr: int = 16000,
        channels: int = 1,
        subtype: str | None = None,
    ) -> Path:
        path = tmp_path / name
        tone = _sine(freq, seconds, sr)
        sf.write(path, np.repeat(tone[:, None], channels, axis=1), sr, subtype=subtype)
        return path

    return write


@pytest.fixture(scope="module")
def torch_single_thread():
    """One torch thread for modules of tiny models: on 2 shared cores, two threads made
    them about 13x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
