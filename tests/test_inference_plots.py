"""Figures: PNGs are written whole, colours cover every emotion, bad shapes are named."""

from __future__ import annotations

import matplotlib.colors
import matplotlib.image
import numpy as np
import pytest
import torch

from emotrace.audio import SAMPLE_RATE, load_audio
from emotrace.inference.plots import plot_timeline, plot_utterance
from emotrace.labels import EMOTION_COLOURS, EMOTIONS, RAVDESS_8
from emotrace.models import roi_segments

LABELS = RAVDESS_8.classes
FRAME_RATE = 25.0


def utterance(audio: np.ndarray) -> dict:
    """Plausible model outputs for ``audio``: attention and anger follow loudness, neutral
    holds the quiet frames, and the ROI segments come from the attention."""
    hop = round(SAMPLE_RATE / FRAME_RATE)
    frames = audio[: len(audio) // hop * hop].reshape(-1, hop)
    loudness = np.sqrt((frames**2).mean(1))
    loudness /= loudness.max()
    rng = np.random.default_rng(0)
    logits = np.convolve(rng.normal(0, 0.3, len(loudness) * len(LABELS)), np.ones(9) / 9, "same")
    logits = logits.reshape(len(LABELS), -1).T
    logits[:, LABELS.index("angry")] += 4 * loudness
    logits[:, LABELS.index("neutral")] += 2 * (1 - loudness)
    posteriors = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    attention = np.exp(6 * loudness) / np.exp(6 * loudness).sum()
    (segments,) = roi_segments(torch.from_numpy(attention)[None], torch.tensor([len(attention)]), FRAME_RATE)
    return {
        "waveform": audio,
        "sample_rate": SAMPLE_RATE,
        "attention": attention,
        "frame_rate": FRAME_RATE,
        "frame_posteriors": posteriors,
        "labels": LABELS,
        "predicted": "angry",
        "probability": 0.64,
        "segments": [(segment.start, segment.end) for segment in segments],
        "title": "03-01-05-02-01-01-01.flac",
    }


def read_png(path) -> np.ndarray:
    assert path.stat().st_size > 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return matplotlib.image.imread(path)


def test_every_emotion_has_its_own_colour():
    assert set(EMOTION_COLOURS) == set(EMOTIONS)
    assert len(set(EMOTION_COLOURS.values())) == len(EMOTIONS)
    assert all(matplotlib.colors.is_color_like(colour) for colour in EMOTION_COLOURS.values())


def test_utterance_plot_is_a_png(fixture_clips, tmp_path):
    inputs = utterance(load_audio(fixture_clips[2]))
    output = plot_utterance(tmp_path / "plots" / "utterance.png", **inputs)
    image = read_png(output)
    assert output == tmp_path / "plots" / "utterance.png"
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 600
    assert [p.name for p in output.parent.iterdir()] == ["utterance.png"]  # no temporary file left


def test_utterance_plot_rejects_mismatched_frames(fixture_clips, tmp_path):
    inputs = utterance(load_audio(fixture_clips[0]))
    inputs["attention"] = inputs["attention"][:-3]
    with pytest.raises(ValueError, match="attention frames"):
        plot_utterance(tmp_path / "bad.png", **inputs)
    assert not (tmp_path / "bad.png").exists()


def test_utterance_plot_rejects_unknown_labels(fixture_clips, tmp_path):
    inputs = utterance(load_audio(fixture_clips[0]))
    with pytest.raises(ValueError, match="predicted label 'bored'"):
        plot_utterance(tmp_path / "bad.png", **{**inputs, "predicted": "bored"})
    with pytest.raises(ValueError, match="not canonical emotion names"):
        plot_utterance(tmp_path / "bad.png", **{**inputs, "labels": ("ang", *LABELS[1:])})


def test_timeline_plot_is_a_png(tmp_path):
    rng = np.random.default_rng(0)
    gaps = rng.uniform(3, 12, size=40)  # seconds from one segment's start to the next
    segments = [(end - gap, end - 0.2 * gap) for end, gap in zip(5 + np.cumsum(gaps), gaps)]
    probabilities = rng.dirichlet(np.ones(len(LABELS)) * 0.3, size=len(segments))
    output = plot_timeline(
        tmp_path / "timeline.png",
        segments=segments,
        probabilities=probabilities,
        labels=LABELS,
        duration=segments[-1][1] + 5,
        title="meeting.m4a",
    )
    image = read_png(output)
    assert image.ndim == 3 and image.shape[1] > image.shape[0]


def test_timeline_plot_without_speech(tmp_path):
    output = plot_timeline(
        tmp_path / "empty.png",
        segments=[],
        probabilities=np.zeros((0, 4)),
        labels=("neutral", "happy", "sad", "angry"),
        duration=60.0,
    )
    assert read_png(output).ndim == 3


def test_timeline_plot_rejects_mismatched_shapes(tmp_path):
    with pytest.raises(ValueError, match="2 segments and 4 labels"):
        plot_timeline(
            tmp_path / "bad.png",
            segments=[(0.0, 1.0), (2.0, 3.0)],
            probabilities=np.full((2, 3), 1 / 3),
            labels=("neutral", "happy", "sad", "angry"),
        )
