"""Where the voice and the face carry the emotion: method A's regions on audio and on video.

Desai, Cao and Shah ran the same attention model on the audio and on the face video of
the same CREMA-D clips and compared where each found the emotion. Here both attention
curves are put on one time axis and compared per clip:

- **resampling**: each curve is a distribution of attention over its own frames (50 Hz
  audio frames pooled, 30 Hz video samples); its cumulative mass is interpolated at the
  common grid's bin edges, so every bin gets exactly the attention that falls in it,
  whatever the two rates. Only the span both streams cover is compared (their lengths
  differ by a frame or two), each curve renormalised to 1 over it.
- **region IoU**: the regions of interest of each stream (method A's rule,
  :func:`~emotrace.models.regions.roi_segments`, on the stream's own frames) as sets
  of time, their intersection over their union (None when neither stream has a region).
- **Pearson r** of the two resampled curves (None when either is flat).
- **lag**: the shift of the video curve against the audio curve, within ``max_lag``
  seconds, that maximises their normalised cross-correlation; positive when the face's
  attention comes later than the voice's. ``lag_correlation`` is the correlation there.

Per emotion and over all clips, :func:`summarise_agreement` gives mean ± std of each, and
:func:`shuffled_agreement` the same figures for mismatched clips (each clip's audio curve
against another clip's video curve): the level that agreement must beat to mean anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emotrace.models.base import EmotionModel
from emotrace.models.outputs import ROIOutput
from emotrace.models.regions import roi_segments

#: the rate both curves are resampled to (bins per second)
COMMON_RATE = 50.0
MAX_LAG = 0.5  # seconds
_COLOURS = {"audio": "#0072B2", "video": "#D55E00"}


@dataclass(frozen=True)
class AttentionCurve:
    """Method A's attention over one stream's valid frames (sums to 1) and its frame rate."""

    weights: np.ndarray
    frame_rate: float

    def __post_init__(self) -> None:
        weights = np.asarray(self.weights, np.float64)
        if weights.ndim != 1 or not len(weights) or self.frame_rate <= 0:
            raise ValueError(f"an attention curve needs (T,) weights and a positive rate, got {weights.shape}")
        if not np.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError("attention weights must be finite, non-negative and not all zero")
        object.__setattr__(self, "weights", weights / weights.sum())

    @property
    def duration(self) -> float:
        return len(self.weights) / self.frame_rate

    def regions(self, rule: str = "above_uniform", **options: Any) -> list[tuple[float, float]]:
        """Method A's regions of interest in seconds."""
        attention = torch.from_numpy(self.weights)[None]
        lengths = torch.tensor([len(self.weights)])
        (segments,) = roi_segments(attention, lengths, self.frame_rate, rule=rule, **options)  # type: ignore[arg-type]
        return [(segment.start, segment.end) for segment in segments]

    def resampled(self, rate: float, duration: float) -> np.ndarray:
        """Attention mass in bins of ``1 / rate`` s over ``[0, duration)``, renormalised to 1."""
        edges = np.arange(int(np.ceil(duration * rate - 1e-9)) + 1) / rate
        edges[-1] = duration
        frame_edges = np.arange(len(self.weights) + 1) / self.frame_rate
        cumulative = np.concatenate([[0.0], np.cumsum(self.weights)])
        mass = np.diff(np.interp(edges, frame_edges, cumulative))
        total = mass.sum()
        return mass / total if total > 0 else mass


def attention_curve(model: EmotionModel, frames: np.ndarray, frame_rate: float) -> AttentionCurve:
    """Method A's attention over one clip's model input ``(L, T, D)`` (the form training and
    prediction make, :func:`~emotrace.features.transforms.model_frames`) at ``frame_rate``."""
    problem = f"{type(model).__name__} has no attention over one stream's frames (method A's ROIAttention has)"
    if len(model.config.modalities) != 1:
        raise TypeError(problem)
    (modality,) = model.config.modalities
    tensor = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))[None]
    if model.config.layers_in(modality) == 1:
        tensor = tensor[:, 0]
    model.eval()
    with torch.no_grad():
        output = model(**{modality: tensor})
    if not isinstance(output, ROIOutput):
        raise TypeError(problem)
    return AttentionCurve(output.attention[0].double().numpy(), frame_rate)


@dataclass(frozen=True)
class ClipAgreement:
    """How the audio and video regions of one clip agree (see the module doc)."""

    clip: str
    emotion: str | None
    seconds: float
    roi_iou: float | None
    pearson: float | None
    lag: float
    lag_correlation: float | None
    audio_regions: tuple[tuple[float, float], ...]
    video_regions: tuple[tuple[float, float], ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def interval_iou(first: Sequence[tuple[float, float]], second: Sequence[tuple[float, float]]) -> float | None:
    """Intersection over union of two sets of time spans (each a list of disjoint ``(start, end)``)."""
    first, second = _union(first), _union(second)
    total = sum(end - start for start, end in first) + sum(end - start for start, end in second)
    if total <= 0:
        return None
    inter = sum(
        max(0.0, min(a_end, b_end) - max(a_start, b_start)) for a_start, a_end in first for b_start, b_end in second
    )
    return float(inter / (total - inter))


def _union(spans: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[list[float]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        elif end > start:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


def _pearson(first: np.ndarray, second: np.ndarray) -> float | None:
    if len(first) < 2 or _flat(first) or _flat(second):
        return None
    return float(np.corrcoef(first, second)[0, 1])


def _flat(values: np.ndarray) -> bool:
    """Constant up to rounding (a uniform curve resampled is not exactly constant)."""
    return bool(np.std(values) <= 1e-9 * np.abs(values).mean())


def best_lag(audio: np.ndarray, video: np.ndarray, rate: float, max_lag: float = MAX_LAG) -> tuple[float, float | None]:
    """``(lag seconds, correlation there)``: the shift of ``video`` against ``audio`` (positive:
    video later) maximising the Pearson correlation of the overlapping parts."""
    steps = min(round(max_lag * rate), len(audio) - 2)
    best: tuple[float, float | None] = (0.0, _pearson(audio, video))
    for shift in range(-max(steps, 0), max(steps, 0) + 1):
        if shift >= 0:
            correlation = _pearson(audio[: len(audio) - shift], video[shift:])
        else:
            correlation = _pearson(audio[-shift:], video[: len(video) + shift])
        if correlation is not None and (best[1] is None or correlation > best[1] + 1e-12):
            best = (shift / rate, correlation)
    return best


def compare_clip(
    audio: AttentionCurve,
    video: AttentionCurve,
    *,
    clip: str = "",
    emotion: str | None = None,
    rate: float = COMMON_RATE,
    max_lag: float = MAX_LAG,
    rule: str = "above_uniform",
) -> ClipAgreement:
    """The agreement of one clip's audio and video attention (see the module doc)."""
    span = min(audio.duration, video.duration)
    audio_bins, video_bins = audio.resampled(rate, span), video.resampled(rate, span)
    audio_regions = _clipped(audio.regions(rule), span)
    video_regions = _clipped(video.regions(rule), span)
    lag, lag_correlation = best_lag(audio_bins, video_bins, rate, max_lag)
    return ClipAgreement(
        clip=clip,
        emotion=emotion,
        seconds=round(span, 4),
        roi_iou=interval_iou(audio_regions, video_regions),
        pearson=_pearson(audio_bins, video_bins),
        lag=lag,
        lag_correlation=lag_correlation,
        audio_regions=tuple(audio_regions),
        video_regions=tuple(video_regions),
    )


def _clipped(spans: list[tuple[float, float]], span: float) -> list[tuple[float, float]]:
    return [(start, min(end, span)) for start, end in spans if start < span]


def summarise_agreement(clips: Sequence[ClipAgreement]) -> dict[str, Any]:
    """Mean ± std of each figure over all clips and per emotion (clips without a value left out)."""

    def figures(group: Sequence[ClipAgreement]) -> dict[str, Any]:
        result: dict[str, Any] = {"clips": len(group)}
        for name in ("roi_iou", "pearson", "lag", "lag_correlation"):
            values = [getattr(clip, name) for clip in group if getattr(clip, name) is not None]
            result[f"{name}_mean"] = round(float(np.mean(values)), 4) if values else None
            result[f"{name}_std"] = round(float(np.std(values)), 4) if values else None
        return result

    emotions = sorted({clip.emotion for clip in clips if clip.emotion is not None})
    return {
        "all": figures(clips),
        "per_emotion": {emotion: figures([clip for clip in clips if clip.emotion == emotion]) for emotion in emotions},
    }


def shuffled_agreement(
    audio: Sequence[AttentionCurve], video: Sequence[AttentionCurve], seed: int = 0, **options: Any
) -> dict[str, Any]:
    """:func:`summarise_agreement` of mismatched pairs: clip ``i``'s audio against the video of
    clip ``p(i) != i`` (a seeded derangement); the chance level of every figure."""
    if len(audio) != len(video) or len(audio) < 2:
        raise ValueError("shuffled agreement needs the curves of two or more clips, audio and video alike")
    generator = np.random.default_rng(seed)
    shift = int(generator.integers(1, len(audio)))  # a cyclic shift: no clip keeps its own video
    order = generator.permutation(len(audio))
    partner = {int(order[i]): int(order[(i + shift) % len(order)]) for i in range(len(order))}
    pairs = [compare_clip(audio[i], video[partner[i]], **options) for i in range(len(audio))]
    return summarise_agreement(pairs)["all"]


def plot_roi_comparison(
    output: str | Path,
    audio: AttentionCurve,
    video: AttentionCurve,
    agreement: ClipAgreement,
    *,
    rate: float = COMMON_RATE,
    title: str | None = None,
) -> Path:
    """Both attention curves on one time axis (attention per second), with each stream's
    regions of interest as a band beneath, and the clip's agreement figures in the title.
    (matplotlib is imported here, so comparing clips, as the service does, loads none.)"""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    from emotrace.inference.plots import _save

    span = agreement.seconds
    times = (np.arange(int(np.ceil(span * rate - 1e-9))) + 0.5) / rate
    figure = Figure(figsize=(10, 4), layout="constrained")
    curves, bands = figure.subplots(2, 1, sharex=True, height_ratios=(4, 1))
    for name, curve, regions in (("audio", audio, agreement.audio_regions), ("video", video, agreement.video_regions)):
        density = curve.resampled(rate, span) * rate
        curves.plot(times[: len(density)], density, color=_COLOURS[name], linewidth=1.8, label=f"{name} attention")
        row = 1 if name == "audio" else 0
        for start, end in regions:
            bands.axvspan(start, end, ymin=row / 2 + 0.05, ymax=row / 2 + 0.45, color=_COLOURS[name], alpha=0.6)
    curves.axhline(1 / span if span > 0 else 0, color="#8C8C8C", linewidth=0.8, linestyle="--", label="uniform")
    curves.set_ylabel("attention per second")
    curves.set_ylim(bottom=0)
    curves.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    bands.set_yticks([0.25, 0.75], ["video", "audio"])
    bands.set_ylim(0, 1)
    bands.set_xlim(0, span)
    bands.set_xlabel("time (s)")
    bands.legend(
        handles=[Patch(color="#555555", alpha=0.6, label="region of interest")],
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        frameon=False,
    )

    def number(value: float | None, digits: int = 2) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}"

    heading = (
        f"region IoU {number(agreement.roi_iou)}, Pearson r {number(agreement.pearson)}, "
        f"lag {agreement.lag:+.2f} s (r {number(agreement.lag_correlation)})"
    )
    label = title or " ".join(part for part in (agreement.clip, agreement.emotion) if part)
    figure.suptitle(f"{label}\n{heading}" if label else heading)
    return _save(figure, output)


def agreement_rows(clips: Sequence[ClipAgreement], shuffled: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A JSON-ready record: per-clip figures, the summary, and the shuffled baseline when given."""
    record: dict[str, Any] = {"clips": [clip.to_dict() for clip in clips], **summarise_agreement(clips)}
    if shuffled is not None:
        record["shuffled"] = dict(shuffled)
    return record
