"""Waveform augmentation: recording conditions a model should not depend on, simulated.

A model trained on a few studios learns their microphones, rooms and levels along with the
emotions. An :class:`Augmenter` applies a chain of transforms to a waveform, each with a
probability and a range from the literature:

* **speed** perturbation by resampling (tempo and pitch together), factors 0.9/1.0/1.1 as
  in Kaldi's and SpeechBrain's recipes (Ko et al. 2015);
* **reverberation** from simulated shoebox rooms (pyroomacoustics' image-source method),
  RT60 0.2-0.8 s: a bank of rooms is simulated once per chain (simulating a room per clip
  costs up to seconds) and each clip draws one room and its positions from the bank;
* **babble**: a sum of several utterances by *other speakers of the same corpus* (never
  the clip's own speaker, never another corpus, so that in a leave-one-corpus-out benchmark
  no held-out corpus leaks into training audio), mixed at an SNR of 5-20 dB. In in-corpus
  folds the pool may hold test speakers' clips, heard as unlabelled background; when the
  fold is known at extraction, build the pool from the training speakers only;
* **noise**: white, pink or brown noise at an SNR of 5-20 dB;
* **gain** of -6..+6 dB, then a peak limit (audio stays within ±1);
* a **codec** round trip through Opus or MP3 at 8-32 kbit/s (PyAV, in memory).

Every draw comes from a generator seeded by (the chain's seed, the copy index, the clip's
key), so a clip's copy *k* is the same waveform on every run and machine, and copies differ.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import av
import numpy as np
import soxr

from emotrace.audio import SAMPLE_RATE, load_audio
from emotrace.errors import EmotraceError

#: codec name -> (container, PyAV encoder)
CODECS = {"opus": ("ogg", "libopus"), "mp3": ("mp3", "libmp3lame")}
#: noise colours by spectral exponent: power falls as 1/f**exponent
NOISE_COLOURS = {"white": 0.0, "pink": 1.0, "brown": 2.0}
PEAK = 0.99  # augmented audio is scaled down to this peak when a transform pushed it past
_SPEED_OF_SOUND = 343.0


class AugmentationConfigError(EmotraceError, ValueError):
    """An augmentation chain's parameter that cannot be used (a probability above 1, ...)."""


@dataclass(frozen=True)
class AugmentationConfig:
    """A chain: per transform, how often it applies (probability) and its range."""

    seed: int = 0
    speeds: tuple[float, ...] = (0.9, 1.0, 1.1)  # drawn uniformly among these
    reverb: float = 0.3
    rt60: tuple[float, float] = (0.2, 0.8)  # seconds
    rooms: int = 16  # simulated rooms in the bank
    babble: float = 0.25
    babble_talkers: tuple[int, int] = (3, 6)  # utterances summed, inclusive
    noise: float = 0.25
    snr_db: tuple[float, float] = (5.0, 20.0)  # noise and babble
    gain_db: tuple[float, float] = (-6.0, 6.0)
    codec: float = 0.3
    codecs: tuple[str, ...] = ("opus", "mp3")
    bitrate_kbps: tuple[int, int] = (8, 32)

    def __post_init__(self) -> None:
        for name in ("reverb", "babble", "noise", "codec"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise AugmentationConfigError(f"{name} is a probability in [0, 1], got {value}")
        if not self.speeds or not all(0.5 <= speed <= 2.0 for speed in self.speeds):
            raise AugmentationConfigError(f"speeds must be factors in [0.5, 2], got {list(self.speeds)}")
        _check_range("rt60", self.rt60, 0.05, 3.0)
        _check_range("snr_db", self.snr_db, -20.0, 60.0)
        _check_range("gain_db", self.gain_db, -40.0, 40.0)
        _check_range("babble_talkers", self.babble_talkers, 1, 20)
        _check_range("bitrate_kbps", self.bitrate_kbps, 6, 320)
        if self.rooms < 1:
            raise AugmentationConfigError(f"rooms must be at least 1, got {self.rooms}")
        unknown = sorted(set(self.codecs) - set(CODECS))
        if not self.codecs or unknown:
            raise AugmentationConfigError(f"codecs must be among {sorted(CODECS)}, got {list(self.codecs)}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (lists for tuples): what a store key of a copy is made from."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}


def _check_range(name: str, bounds: tuple[float, float], low: float, high: float) -> None:
    if len(bounds) != 2 or not low <= bounds[0] <= bounds[1] <= high:
        raise AugmentationConfigError(f"{name} must be (low, high) with {low} <= low <= high <= {high}, got {bounds}")


# ----------------------------------------------------------------------------- transforms


def change_speed(waveform: np.ndarray, factor: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Played ``factor`` times faster (tempo and pitch, as a tape would): length / factor."""
    if factor <= 0:
        raise AugmentationConfigError(f"speed factor must be positive, got {factor}")
    if factor == 1.0:
        return waveform
    return soxr.resample(waveform, sr * factor, sr, quality="HQ").astype(np.float32)


def apply_gain(waveform: np.ndarray, db: float) -> np.ndarray:
    """``waveform`` made ``db`` decibels louder (negative: quieter)."""
    return (waveform * 10.0 ** (db / 20.0)).astype(np.float32)


def mix_at_snr(waveform: np.ndarray, interference: np.ndarray, snr_db: float) -> np.ndarray:
    """``waveform`` plus ``interference`` (same length) scaled so that the power ratio of the
    two is ``snr_db``; silent interference leaves the waveform as it is."""
    if len(interference) != len(waveform):
        raise ValueError(f"interference has {len(interference)} samples, the waveform {len(waveform)}")
    signal_power = float(np.mean(waveform.astype(np.float64) ** 2))
    noise_power = float(np.mean(interference.astype(np.float64) ** 2))
    if noise_power == 0.0 or signal_power == 0.0:
        return waveform
    scale = np.sqrt(signal_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return (waveform + scale * interference).astype(np.float32)


def coloured_noise(length: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise whose power spectrum falls as 1/f**exponent (white, pink, brown)."""
    if colour not in NOISE_COLOURS:
        raise AugmentationConfigError(f"noise colour must be one of {sorted(NOISE_COLOURS)}, got {colour!r}")
    spectrum = np.fft.rfft(rng.standard_normal(length))
    frequencies = np.fft.rfftfreq(length)
    frequencies[0] = frequencies[1] if length > 1 else 1.0
    spectrum *= frequencies ** (-NOISE_COLOURS[colour] / 2.0)
    noise = np.fft.irfft(spectrum, n=length)
    return (noise / (np.std(noise) + 1e-12)).astype(np.float32)


def babble_of(talkers: Sequence[np.ndarray], length: int, rng: np.random.Generator) -> np.ndarray:
    """The sum of ``talkers``, each looped to ``length`` from a random start and brought to
    the same RMS, so no one voice dominates."""
    total = np.zeros(length, np.float64)
    for talker in talkers:
        if not len(talker):
            continue
        start = int(rng.integers(0, len(talker)))
        looped = np.resize(np.roll(talker, -start), length).astype(np.float64)
        total += looped / (np.sqrt(np.mean(looped**2)) + 1e-12)
    return total.astype(np.float32)


def simulate_rir(rt60: float, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
    """The impulse response between a random source and microphone in a random shoebox room
    (walls absorbing evenly, by Sabine's formula, for ``rt60``), from its direct path on."""
    import pyroomacoustics as pra  # imported on use: only reverberation needs it

    room_size = np.array([rng.uniform(3.0, 8.0), rng.uniform(3.0, 6.0), rng.uniform(2.4, 3.5)])
    try:
        absorption, max_order = pra.inverse_sabine(rt60, room_size)
    except ValueError as error:
        raise AugmentationConfigError(f"RT60 {rt60} s is not reachable in a {room_size.round(1)} m room") from error
    room = pra.ShoeBox(room_size, fs=sr, materials=pra.Material(absorption), max_order=max_order)
    margin = 0.5
    room.add_source(rng.uniform(margin, room_size - margin))
    room.add_microphone(rng.uniform(margin, room_size - margin))
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], np.float64)
    direct = int(np.argmax(np.abs(rir)))
    return (rir[direct:] / np.abs(rir[direct])).astype(np.float32)


def reverberate(waveform: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """``waveform`` convolved with ``rir`` (its direct path first, so nothing is delayed), cut
    to the original length and brought back to the dry RMS."""
    size = 1 << int(len(waveform) + len(rir) - 1).bit_length()  # FFT size: no circular wrap-around
    spectrum = np.fft.rfft(waveform.astype(np.float64), size) * np.fft.rfft(rir.astype(np.float64), size)
    wet = np.fft.irfft(spectrum, size)[: len(waveform)]
    dry_rms, wet_rms = np.sqrt(np.mean(waveform.astype(np.float64) ** 2)), np.sqrt(np.mean(wet**2))
    return (wet * (dry_rms / wet_rms if wet_rms > 0 else 1.0)).astype(np.float32)


def codec_round_trip(waveform: np.ndarray, codec: str, kbps: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """``waveform`` encoded with ``codec`` at ``kbps`` and decoded again, in memory; same
    length and rate as the input (the decoder's rate is resampled back)."""
    if codec not in CODECS:
        raise AugmentationConfigError(f"codec must be one of {sorted(CODECS)}, got {codec!r}")
    container_format, encoder = CODECS[codec]
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container_format) as container:
        stream = container.add_stream(encoder, rate=sr, layout="mono")
        stream.bit_rate = int(kbps * 1000)
        sample_format = "fltp" if codec == "mp3" else "flt"
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(waveform, np.float32)[None], format=sample_format, layout="mono"
        )
        frame.sample_rate = sr
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    blocks, rate = [], sr
    with av.open(io.BytesIO(buffer.getvalue())) as container:
        for decoded in container.decode(audio=0):
            rate = decoded.sample_rate
            samples = decoded.to_ndarray()
            blocks.append(samples.mean(axis=0) if decoded.format.is_planar else samples.reshape(-1))
    decoded_audio = np.concatenate(blocks).astype(np.float32) if blocks else np.zeros(0, np.float32)
    if rate != sr:
        decoded_audio = soxr.resample(decoded_audio, rate, sr, quality="HQ").astype(np.float32)
    result = np.zeros(len(waveform), np.float32)
    result[: min(len(waveform), len(decoded_audio))] = decoded_audio[: len(waveform)]
    return result


def limit_peak(waveform: np.ndarray) -> np.ndarray:
    """Scaled down to a peak of :data:`PEAK` when it exceeds it (never up)."""
    peak = float(np.max(np.abs(waveform))) if len(waveform) else 0.0
    return (waveform * (PEAK / peak)).astype(np.float32) if peak > PEAK else waveform.astype(np.float32)


@lru_cache(maxsize=4)
def room_bank(seed: int, rt60: tuple[float, float], rooms: int) -> tuple[np.ndarray, ...]:
    """``rooms`` simulated responses, RT60 drawn uniformly in ``rt60``: a function of the
    arguments only, kept for the process (simulating one takes up to seconds)."""
    rng = np.random.default_rng([seed, 0x5EED])
    return tuple(simulate_rir(float(rng.uniform(*rt60)), rng) for _ in range(rooms))


# ----------------------------------------------------------------------------- babble pool


@dataclass(frozen=True)
class BabbleSource:
    """An utterance babble may be made of: whose, from which corpus, where its audio is."""

    speaker: str
    corpus: str
    audio: str
    start: float | None = None
    end: float | None = None


class BabblePool:
    """Utterances to make babble from, drawn only among other speakers of a clip's corpus."""

    def __init__(self, sources: Sequence[BabbleSource], load: Callable[[BabbleSource], np.ndarray] | None = None):
        """``load`` decodes a source (default: its audio file at the extractors' rate); the
        sources are sorted, so the draws do not depend on the order they are given in."""
        self.load = load or _load_source
        self.by_corpus: dict[str, list[BabbleSource]] = {}
        self._fingerprints: dict[tuple[str, str], str] = {}
        for source in sorted(set(sources), key=lambda s: (s.corpus, s.speaker, s.audio, s.start or 0.0)):
            self.by_corpus.setdefault(source.corpus, []).append(source)

    def candidates(self, corpus: str, speaker: str) -> list[BabbleSource]:
        """The sources babble for ``speaker``'s clip of ``corpus`` may use."""
        return [source for source in self.by_corpus.get(corpus, ()) if source.speaker != speaker]

    def fingerprint(self, corpus: str, speaker: str) -> str:
        """A short hash of :meth:`candidates`: what a clip's babble may be drawn from."""
        if (corpus, speaker) not in self._fingerprints:
            text = "\n".join(f"{s.speaker}|{s.audio}|{s.start}|{s.end}" for s in self.candidates(corpus, speaker))
            self._fingerprints[corpus, speaker] = hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
        return self._fingerprints[corpus, speaker]

    def draw(self, corpus: str, speaker: str, talkers: int, rng: np.random.Generator) -> list[BabbleSource]:
        """Up to ``talkers`` different sources; none when the corpus has no other speaker."""
        candidates = self.candidates(corpus, speaker)
        chosen = rng.choice(len(candidates), min(talkers, len(candidates)), replace=False) if candidates else []
        return [candidates[int(index)] for index in chosen]


def _load_source(source: BabbleSource) -> np.ndarray:
    return load_audio(Path(source.audio), start=source.start, end=source.end, sr=SAMPLE_RATE)


# ----------------------------------------------------------------------------- the chain


@dataclass(frozen=True)
class Clip:
    """What the chain knows of a clip: its key (content or id) and, for babble, whose it is."""

    key: str
    speaker: str = ""
    corpus: str = ""


class Augmenter:
    """The chain of :class:`AugmentationConfig`, applied to clips reproducibly."""

    def __init__(self, config: AugmentationConfig | None = None, babble_pool: BabblePool | None = None):
        """Without ``babble_pool`` the babble step is left out (noise still applies)."""
        self.config = config or AugmentationConfig()
        self.babble_pool = babble_pool

    def rooms(self) -> tuple[np.ndarray, ...]:
        """The bank of simulated room responses (made on first use, once per process)."""
        return room_bank(self.config.seed, self.config.rt60, self.config.rooms)

    def generator(self, clip: Clip, copy: int) -> np.random.Generator:
        """The draws of copy ``copy`` of ``clip``: a function of (seed, copy, clip key) only."""
        if copy < 0:
            raise AugmentationConfigError(f"copy index must be 0 or more, got {copy}")
        clip_hash = int.from_bytes(hashlib.blake2b(clip.key.encode(), digest_size=8).digest(), "little")
        return np.random.default_rng([self.config.seed, copy, clip_hash])

    def augment(self, waveform: np.ndarray, clip: Clip, copy: int) -> np.ndarray:
        """Copy ``copy`` of ``clip`` (``waveform`` at :data:`SAMPLE_RATE`): the chain with this copy's draws."""
        config, rng = self.config, self.generator(clip, copy)
        # every draw is made whether or not its transform applies, so that one step's
        # probability does not shift the draws of the steps after it
        speed = float(config.speeds[int(rng.integers(len(config.speeds)))])
        reverb, room = rng.random() < config.reverb, int(rng.integers(config.rooms))
        babble, talkers = (
            rng.random() < config.babble,
            int(rng.integers(config.babble_talkers[0], config.babble_talkers[1] + 1)),
        )
        babble_snr = float(rng.uniform(*config.snr_db))
        noise, colour, noise_snr = (
            rng.random() < config.noise,
            str(rng.choice(list(NOISE_COLOURS))),
            float(rng.uniform(*config.snr_db)),
        )
        gain = float(rng.uniform(*config.gain_db))
        codec, codec_name = rng.random() < config.codec, str(config.codecs[int(rng.integers(len(config.codecs)))])
        kbps = float(rng.uniform(*config.bitrate_kbps))
        mixing = np.random.default_rng(rng.integers(2**63))  # offsets, noise samples: any number of draws

        result = change_speed(np.asarray(waveform, np.float32), speed)
        if reverb:
            result = reverberate(result, self.rooms()[room])
        if babble and self.babble_pool is not None:
            sources = self.babble_pool.draw(clip.corpus, clip.speaker, talkers, mixing)
            if sources:
                voices = [self.babble_pool.load(source) for source in sources]
                result = mix_at_snr(result, babble_of(voices, len(result), mixing), babble_snr)
        if noise:
            result = mix_at_snr(result, coloured_noise(len(result), colour, mixing), noise_snr)
        result = limit_peak(apply_gain(result, gain))
        if codec:
            result = limit_peak(codec_round_trip(result, codec_name, kbps))
        return result
