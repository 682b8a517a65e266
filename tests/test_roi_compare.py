"""The audio-video ROI comparison: resampling to one time axis, region IoU, correlation, lag,
summaries against chance, and the plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from emotrace.inference.roi_compare import (
    AttentionCurve,
    attention_curve,
    best_lag,
    compare_clip,
    interval_iou,
    plot_roi_comparison,
    shuffled_agreement,
    summarise_agreement,
)
from emotrace.models import build_model


def bump(rate: float, seconds: float, centre: float, width: float = 0.15) -> AttentionCurve:
    """Attention peaked at ``centre`` seconds, over frames at ``rate``."""
    times = (np.arange(round(rate * seconds)) + 0.5) / rate
    return AttentionCurve(np.exp(-0.5 * ((times - centre) / width) ** 2) + 1e-3, rate)


def test_resampling_keeps_the_mass_where_it_was() -> None:
    curve = AttentionCurve(np.array([0.0, 1.0, 0.0, 0.0]), 4.0)  # all attention in 0.25-0.5 s
    bins = curve.resampled(10.0, 1.0)
    assert bins.shape == (10,) and bins.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(bins, [0, 0, 0.2, 0.4, 0.4, 0, 0, 0, 0, 0], atol=1e-12)
    assert curve.resampled(4.0, 0.5).tolist() == [0.0, 1.0]  # only the first half: renormalised
    up, down = bump(50, 2.0, 0.8), bump(12.5, 2.0, 0.8)
    centres = (np.arange(50) + 0.5) / 25
    for curve in (up, down):  # one time axis whatever the rate: the attention's mean time stays put
        assert centres @ curve.resampled(25, 2.0) == pytest.approx(0.8, abs=0.01)


def test_interval_iou() -> None:
    assert interval_iou([(0.0, 1.0)], [(0.5, 1.5)]) == pytest.approx(1 / 3)
    assert interval_iou([(0.0, 1.0), (2.0, 3.0)], [(0.0, 1.0), (2.0, 3.0)]) == pytest.approx(1.0)
    assert interval_iou([(0.0, 0.5), (0.4, 1.0)], [(1.0, 2.0)]) == 0.0  # overlapping spans merged first
    assert interval_iou([], []) is None


def test_a_video_curve_later_than_the_audio_one_has_a_positive_lag() -> None:
    audio, video = bump(50, 2.0, 0.8), bump(30, 2.0, 1.0)
    agreement = compare_clip(audio, video, clip="x", emotion="angry")
    assert agreement.lag == pytest.approx(0.2, abs=0.021) and agreement.lag_correlation > 0.99
    assert agreement.pearson < agreement.lag_correlation
    assert 0 < agreement.roi_iou < 1 and agreement.seconds == pytest.approx(2.0)
    same = compare_clip(audio, bump(30, 2.0, 0.8))
    assert same.lag == pytest.approx(0.0, abs=0.021) and same.roi_iou > 0.8 and same.pearson > 0.98
    lag, correlation = best_lag(np.array([0, 1, 0, 0, 0.0]), np.array([0, 0, 0, 1, 0.0]), rate=1.0, max_lag=3)
    assert (lag, correlation) == (2.0, pytest.approx(1.0))
    flat = compare_clip(AttentionCurve(np.ones(20), 10.0), AttentionCurve(np.ones(20), 10.0))
    assert flat.pearson is None and flat.roi_iou is None  # nothing above uniform, nothing to correlate


def test_summaries_per_emotion_and_the_chance_level() -> None:
    centres = [0.4, 0.9, 1.4, 0.6, 1.2, 1.0]
    emotions = ["angry", "angry", "sad", "sad", "happy", "happy"]
    audio = [bump(50, 2.0, c) for c in centres]
    video = [bump(30, 2.0, c + 0.05) for c in centres]
    clips = [compare_clip(a, v, clip=str(i), emotion=e) for i, (a, v, e) in enumerate(zip(audio, video, emotions))]
    summary = summarise_agreement(clips)
    assert summary["all"]["clips"] == 6 and set(summary["per_emotion"]) == {"angry", "happy", "sad"}
    assert summary["per_emotion"]["sad"]["clips"] == 2
    chance = shuffled_agreement(audio, video, seed=1)
    assert chance["clips"] == 6
    assert summary["all"]["roi_iou_mean"] > chance["roi_iou_mean"] + 0.3  # matched clips agree, shuffled ones do not
    assert summary["all"]["pearson_mean"] > chance["pearson_mean"] + 0.5
    with pytest.raises(ValueError, match="two or more clips"):
        shuffled_agreement(audio[:1], video[:1])


def test_attention_of_a_video_model_and_the_plot(tmp_path: Path, torch_single_thread) -> None:
    torch.manual_seed(0)
    model = build_model("roi_attention", num_classes=6, input_dims={"video": 39}, modalities=("video",))
    frames = np.random.default_rng(0).normal(size=(1, 45, 39)).astype(np.float32)
    curve = attention_curve(model, frames, 15.0)
    assert curve.weights.shape == (45,) and curve.weights.sum() == pytest.approx(1.0) and curve.duration == 3.0
    fusion = build_model(
        "query_fusion", num_classes=6, input_dims={"audio": 8, "video": 39}, modalities=("audio", "video")
    )
    with pytest.raises(TypeError, match="no attention over one stream"):
        attention_curve(fusion, frames, 15.0)

    agreement = compare_clip(bump(12.5, 3.0, 1.0), curve, clip="1001_DFA_ANG_XX", emotion="angry")
    path = plot_roi_comparison(tmp_path / "plots" / "clip.png", bump(12.5, 3.0, 1.0), curve, agreement)
    image = Image.open(path)
    assert image.format == "PNG" and image.size[0] > 800
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp")]
