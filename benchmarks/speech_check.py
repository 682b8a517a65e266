"""The "no speech" check: how often it refuses real emotional speech, and whether non-speech
gets through, at each silero-vad threshold.

Real speech: every clip of RAVDESS, ASED and nEMO (acted emotions, three languages; a clip the
check refuses loses its prediction, so the miss rate per corpus and per emotion is what users
feel: quiet sad speech is the risk). Non-speech: synthetic signals built here (pure tones at
three levels, vibrato tones, a beep train, mains hum with harmonics, white, pink and brown
noise at four levels, amplitude-modulated noise, clicks, a chord, a sweep), each 3 to 4 s.
Every clip's frame probabilities are computed once; each threshold of the grid then decides
(:func:`emotrace.inference.sanity.presence_from_probabilities`, runs of at least
``MIN_SPEECH_SECONDS``). The rule that set ``SPEECH_THRESHOLD``: the lowest threshold of the
grid at which no synthetic signal counts as speech, one grid step (0.05) higher for margin,
since a handful of synthetic signals cannot stand for every hum and beep a microphone meets.

    EMOTRACE_DATA=../shared/data python benchmarks/speech_check.py [--limit N]

Results: ``benchmarks/results/speech_check.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import track

from emotrace.audio import SAMPLE_RATE, load_audio
from emotrace.corpora import load_corpus
from emotrace.errors import InputError
from emotrace.inference.sanity import (
    MIN_SPEECH_SECONDS,
    SPEECH_THRESHOLD,
    presence_from_probabilities,
)
from emotrace.inference.segmentation import frame_probabilities

sys.path.insert(0, str(Path(__file__).parent))
from common import write_results

CORPORA = ("ravdess", "ased", "nemo")
THRESHOLDS = (0.5, 0.45, 0.4, 0.35, 0.3, 0.25, 0.2, 0.15, 0.1)
MARGIN = 0.05  # one grid step above the lowest threshold that lets no synthetic signal through
PROTOCOL = (
    "Real speech: every clip of RAVDESS (English), ASED (Amharic) and nEMO (Polish) (or the first --limit of "
    "each, shuffled with seed 0); non-speech: {synthetic} synthetic signals (tones, vibrato, beeps, mains hum, "
    "white/pink/brown and modulated noise, clicks, chord, sweep). Per silero-vad threshold: the share of real "
    "clips refused as 'no speech' (missed), per corpus and for the worst emotion of each, and the synthetic "
    "signals let through as speech. A clip has speech when runs of at least {min_speech} s add up to at "
    "least {min_speech} s."
)


def synthetic_signals(seed: int = 0) -> dict[str, np.ndarray]:
    """Non-speech a microphone meets or a user tries: tones, beeps, hum, noise, clicks, music."""
    rng = np.random.default_rng(seed)

    def times(seconds: float) -> np.ndarray:
        return np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE

    t = times(3.0)
    signals: dict[str, np.ndarray] = {}
    for frequency in (200, 440, 1000, 2000, 3000):
        for level in (0.05, 0.3, 0.9):
            signals[f"tone {frequency} Hz at {level}"] = level * np.sin(2 * np.pi * frequency * t)
    for frequency in (300, 600, 1000):
        signals[f"vibrato tone {frequency} Hz"] = 0.3 * np.sin(
            2 * np.pi * frequency * t + 3 * np.sin(2 * np.pi * 5 * t)
        )
    for mains in (50, 60):
        hum = sum(np.sin(2 * np.pi * mains * k * times(4.0)) / k for k in range(1, 8))
        for level in (0.2, 0.02):
            signals[f"hum {mains} Hz at {level}"] = level * hum / np.abs(hum).max()
    for level in (0.001, 0.01, 0.1, 0.5):
        white = rng.standard_normal(len(t))
        brown = np.cumsum(rng.standard_normal(len(t)))
        pink = np.fft.irfft(np.fft.rfft(rng.standard_normal(len(t))) / np.sqrt(np.arange(1, len(t) // 2 + 2)), len(t))
        for name, noise in (("white", white), ("brown", brown - brown.mean()), ("pink", pink)):
            signals[f"{name} noise at {level}"] = level * noise / np.abs(noise).max()
    beeps = np.zeros(len(t))
    beep = 0.5 * np.sin(2 * np.pi * 1000 * times(0.2))
    for k in range(5):
        start = round((0.2 + 0.5 * k) * SAMPLE_RATE)
        beeps[start : start + len(beep)] = beep
    signals["beep train (1 kHz)"] = beeps
    clicks = np.zeros(len(t))
    clicks[:: SAMPLE_RATE // 4] = 0.9
    signals["clicks"] = clicks
    signals["C major chord"] = 0.2 * sum(np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0)) / 3
    signals["sweep 200-3800 Hz"] = 0.3 * np.sin(2 * np.pi * (200 * t + 600 * t**2))
    signals["noise modulated at 4 Hz"] = 0.3 * rng.standard_normal(len(t)) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
    return {name: signal.astype(np.float32) for name, signal in signals.items()}


def corpus_probabilities(name: str, root: Path, limit: int | None) -> list[tuple[str, np.ndarray, float]]:
    """``(label, frame probabilities, duration)`` of a corpus's clips (a bad file is reported and skipped)."""
    utterances = list(load_corpus(name, root / name).utterances)
    np.random.default_rng(0).shuffle(utterances)
    clips = []
    for utterance in track(utterances[:limit], description=name):
        try:
            waveform = load_audio(utterance.audio, start=utterance.start, end=utterance.end)
        except InputError as error:
            print(f"skipped: {error}")
            continue
        clips.append((utterance.label, frame_probabilities(waveform), len(waveform) / SAMPLE_RATE))
    return clips


def missed(clips: list[tuple[str, np.ndarray, float]], threshold: float) -> dict[str, Any]:
    if not clips:
        return {"missed": None, "missed_clips": 0, "clips": 0, "worst_emotion": None}
    refused = [
        label
        for label, p, duration in clips
        if not presence_from_probabilities(p, duration, threshold=threshold).present
    ]
    totals = Counter(label for label, _, _ in clips)
    by_label = {label: Counter(refused)[label] / totals[label] for label in totals}
    worst = max(by_label, key=by_label.__getitem__)
    return {
        "missed": round(100 * len(refused) / len(clips), 2),
        "missed_clips": len(refused),
        "clips": len(clips),
        "worst_emotion": f"{worst} {100 * by_label[worst]:.1f}%",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="clips per corpus (default: all)")
    args = parser.parse_args()
    root = Path(os.environ["EMOTRACE_DATA"])
    synthetic = {name: (frame_probabilities(s), len(s) / SAMPLE_RATE) for name, s in synthetic_signals().items()}
    real = {name: corpus_probabilities(name, root, args.limit) for name in CORPORA}
    rows = []
    for threshold in THRESHOLDS:
        through = [
            name
            for name, (p, duration) in synthetic.items()
            if presence_from_probabilities(p, duration, threshold=threshold).present
        ]
        per_corpus = {name: missed(clips, threshold) for name, clips in real.items()}
        rows.append(
            {
                "system": f"silero-vad threshold {threshold}",
                "threshold": threshold,
                "chosen": threshold == SPEECH_THRESHOLD,
                "per_corpus": per_corpus,
                "synthetic_through": through,
                "synthetic": len(synthetic),
            }
        )
        corpora = "  ".join(f"{name} {figures['missed']:.1f}%" for name, figures in per_corpus.items())
        print(f"threshold {threshold:.2f}: missed {corpora}; non-speech through: {len(through)} {through}")
    by_threshold = sorted(rows, key=lambda row: row["threshold"], reverse=True)
    clean = None  # the lowest threshold at which no synthetic signal gets through, nor at any higher one
    for row in by_threshold:
        if row["synthetic_through"]:
            break
        clean = row["threshold"]
    rule = None if clean is None else round(clean + MARGIN, 2)
    if rule != SPEECH_THRESHOLD:
        print(f"the rule gives {rule}, the code uses {SPEECH_THRESHOLD}: update SPEECH_THRESHOLD and rerun")
    protocol = PROTOCOL.format(synthetic=len(synthetic), min_speech=MIN_SPEECH_SECONDS)
    write_results("speech_check", protocol, rows, lowest_clean=clean, rule_choice=rule)


if __name__ == "__main__":
    main()
