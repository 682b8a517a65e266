"""Figures of what a model heard: one utterance in detail, or a long recording at a glance.

Both take plain arrays, not predictor objects, so anything that has the numbers can draw
them; :func:`write_plot` draws a prediction with the one that fits it. Figures are built
as :class:`matplotlib.figure.Figure` objects without pyplot: no window ever opens, no
global figure list grows in a long-running service, and nothing has to be closed. Each PNG
is written to a temporary file and renamed into place, so a reader never sees half an
image. Every emotion keeps one colour (:data:`emotrace.labels.EMOTION_COLOURS`) in every
figure, and on the service's page.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MultipleLocator

from emotrace.atomic import atomic_path
from emotrace.audio import SAMPLE_RATE
from emotrace.inference.predictions import AudioVisualPrediction, NoSpeech, Prediction, RecordingPrediction, Result
from emotrace.inference.roi_compare import AttentionCurve, plot_roi_comparison
from emotrace.labels import EMOTION_COLOURS

DPI = 120
_ROI_COLOUR = "#F2C14E"  # shading of attention's regions of interest
# Tick spacings a clock reads naturally (seconds), up to one tick per 10 hours.
_CLOCK_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 36000)


def plot_utterance(
    output: str | Path,
    *,
    waveform: np.ndarray,
    sample_rate: int,
    attention: np.ndarray,
    frame_rate: float,
    frame_posteriors: np.ndarray,
    labels: Sequence[str],
    predicted: str,
    probability: float,
    segments: Sequence[tuple[float, float]] = (),
    title: str | None = None,
) -> Path:
    """One utterance as a PNG at ``output``: where the model looked, and what it heard there.

    Top: the waveform, the attention ``(T,)`` over it and the ROI ``segments`` (seconds)
    shaded. Bottom: each class's frame posterior ``frame_posteriors (T, C)`` over time.
    ``frame_rate`` is frames per second of both; ``labels`` name the ``C`` classes.
    """
    waveform = np.asarray(waveform, dtype=np.float32)
    attention = np.asarray(attention, dtype=np.float32)
    frame_posteriors = np.asarray(frame_posteriors, dtype=np.float32)
    if waveform.ndim != 1 or not len(waveform):
        raise ValueError(f"waveform must be 1-D and not empty, got shape {waveform.shape}")
    if sample_rate <= 0 or frame_rate <= 0:
        raise ValueError(f"sample_rate and frame_rate must be positive, got {sample_rate}, {frame_rate}")
    if attention.ndim != 1 or not len(attention):
        raise ValueError(f"attention must be 1-D (T,) and not empty, got shape {attention.shape}")
    if frame_posteriors.shape != (len(attention), len(labels)):
        raise ValueError(
            f"frame_posteriors must have shape (T, C) = ({len(attention)}, {len(labels)}) "
            f"to match {len(attention)} attention frames and {len(labels)} labels, "
            f"got {frame_posteriors.shape}"
        )
    _check_labels(labels)
    if predicted not in labels:
        raise ValueError(f"predicted label {predicted!r} is not one of {list(labels)}")

    figure = Figure(figsize=(10, 6), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(2, 3))
    seconds = len(waveform) / sample_rate
    frame_times = (np.arange(len(attention)) + 0.5) / frame_rate

    for start, end in segments:
        top.axvspan(start, end, color=_ROI_COLOUR, alpha=0.35, linewidth=0)
    times, low, high = _envelope(waveform, sample_rate)
    top.fill_between(times, low, high, color="#9A9A9A", linewidth=0.5)
    peak = float(np.abs(waveform).max()) or 1.0
    top.set_ylim(-1.1 * peak, 1.1 * peak)
    top.set_yticks([])
    top.set_ylabel("waveform")
    weights = top.twinx()
    (attention_line,) = weights.plot(frame_times, attention, color="black", linewidth=1.5, label="attention")
    weights.set_ylim(0, 1.1 * float(attention.max()) or 1.0)
    weights.set_ylabel("attention")
    top.legend(
        handles=[
            Patch(color="#9A9A9A", label="waveform"),
            Patch(color=_ROI_COLOUR, alpha=0.6, label="region of interest"),
            attention_line,
        ],
        loc="upper left",
        bbox_to_anchor=(1.08, 1.0),
        frameon=False,
    )

    for index, label in enumerate(labels):
        linewidth = 2.5 if label == predicted else 1.5
        bottom.plot(
            frame_times,
            frame_posteriors[:, index],
            color=EMOTION_COLOURS[label],
            linewidth=linewidth,
            label=label,
        )
    bottom.set_ylim(0, 1.02)
    bottom.set_xlim(0, max(seconds, len(attention) / frame_rate))
    bottom.set_ylabel("frame posterior")
    bottom.set_xlabel("time (s)")
    bottom.grid(axis="y", alpha=0.3)
    bottom.legend(loc="upper left", bbox_to_anchor=(1.08, 1.0), frameon=False, title="emotion")

    heading = f"predicted: {predicted} ({probability:.0%})"
    figure.suptitle(f"{title}\n{heading}" if title else heading)
    return _save(figure, output)


def plot_timeline(
    output: str | Path,
    *,
    segments: Sequence[tuple[float, float]],
    probabilities: np.ndarray,
    labels: Sequence[str],
    duration: float | None = None,
    title: str | None = None,
) -> Path:
    """A long recording as a PNG at ``output``: each speech segment's emotion over time.

    ``segments`` are ``(start, end)`` seconds and ``probabilities (N, C)`` their class
    probabilities. Top: a band per segment in its most probable emotion's colour; bottom:
    the probabilities stacked, so silence shows as gaps. ``duration`` (seconds) sets the
    end of the time axis; without it the axis ends with the last segment.
    """
    probabilities = np.asarray(probabilities, dtype=np.float32)
    if probabilities.shape != (len(segments), len(labels)):
        raise ValueError(
            f"probabilities must have shape (N, C) = ({len(segments)}, {len(labels)}) to match "
            f"{len(segments)} segments and {len(labels)} labels, got {probabilities.shape}"
        )
    _check_labels(labels)
    if any(end <= start or start < 0 for start, end in segments):
        raise ValueError("every segment needs 0 <= start < end (seconds)")
    end_of_axis = max([end for _, end in segments] + [duration or 0.0]) or 1.0

    figure = Figure(figsize=(12, 4.5), layout="constrained")
    bands, stack = figure.subplots(2, 1, sharex=True, height_ratios=(1, 4))
    starts = np.array([start for start, _ in segments], dtype=np.float64)
    widths = np.array([end - start for start, end in segments], dtype=np.float64)
    predicted = probabilities.argmax(1) if len(segments) else np.zeros(0, dtype=int)

    bands.bar(
        starts,
        1.0,
        widths,
        align="edge",
        linewidth=0,
        color=[EMOTION_COLOURS[labels[index]] for index in predicted],
    )
    bands.set_ylim(0, 1)
    bands.set_yticks([])
    bands.set_ylabel("predicted", rotation=0, ha="right", va="center")
    if not len(segments):
        bands.text(0.5, 0.5, "no speech found", ha="center", va="center", transform=bands.transAxes)

    bottom = np.zeros(len(segments))
    for index, label in enumerate(labels):
        stack.bar(
            starts,
            probabilities[:, index],
            widths,
            bottom=bottom,
            align="edge",
            color=EMOTION_COLOURS[label],
            linewidth=0,
        )
        bottom += probabilities[:, index]
    stack.set_ylim(0, 1)
    stack.set_xlim(0, end_of_axis)
    stack.set_ylabel("probability")
    stack.set_xlabel("time (h:mm:ss)" if end_of_axis >= 3600 else "time (mm:ss)")
    stack.xaxis.set_major_locator(MultipleLocator(next(s for s in _CLOCK_STEPS if end_of_axis / s <= 10)))
    stack.xaxis.set_major_formatter(FuncFormatter(lambda seconds, _: _clock(seconds)))
    stack.legend(
        handles=[Patch(color=EMOTION_COLOURS[label], label=label) for label in labels],
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        frameon=False,
        title="emotion",
    )
    if title:
        figure.suptitle(title)
    return _save(figure, output)


def _check_labels(labels: Sequence[str]) -> None:
    unknown = [label for label in labels if label not in EMOTION_COLOURS]
    if unknown:
        raise ValueError(f"labels {unknown} are not canonical emotion names (emotrace.labels.EMOTIONS)")


def _envelope(waveform: np.ndarray, sample_rate: int, points: int = 2000) -> tuple[np.ndarray, ...]:
    """Times, minima and maxima of the waveform in ``points`` bins: what a plot of every
    sample would show, at a fraction of the cost for long audio."""
    size = max(1, len(waveform) // points)
    bins = waveform[: len(waveform) // size * size].reshape(-1, size)
    times = (np.arange(len(bins)) + 0.5) * size / sample_rate
    return times, bins.min(1), bins.max(1)


def _clock(seconds: float) -> str:
    minutes, second = divmod(round(seconds), 60)
    hours, minute = divmod(minutes, 60)
    return f"{hours}:{minute:02d}:{second:02d}" if hours else f"{minute}:{second:02d}"


def _save(figure: Figure, output: str | Path) -> Path:
    """Write ``figure`` to ``output`` as a PNG, atomically."""
    with atomic_path(output) as temp:
        figure.savefig(temp, format="png", dpi=DPI)
    return Path(output)


def write_plots(
    result: Result,
    path: Path,
    folder: Path,
    labels: tuple[str, ...],
    names: set[str],
    waveform: np.ndarray | None,
) -> list[Path]:
    """Every figure of a result: :func:`write_plot`'s, or for an audio-visual utterance the
    audio model's (``<name>.png``) and the video model's (``<name>.video.png``) attention and
    dynamics over ``waveform``, and their attention compared (``<name>.roi.png``). Empty when
    the result has nothing to draw (no speech, no frame-level dynamics, or no audio to draw them over)."""
    if not isinstance(result, AudioVisualPrediction):
        written = write_plot(result, path, folder, labels, names, waveform)
        return [] if written is None else [written]
    name = _free_name(path.stem, names)
    title = Path(result.source).name
    written = []
    for stream, suffix, model in ((result.audio, "", "audio"), (result.video, ".video", "face video")):
        if stream is not None and stream.frame_posteriors is not None and waveform is not None:
            figure = folder / f"{name}{suffix}.png"
            written.append(_utterance_plot(stream, figure, labels, waveform, f"{title}: the {model} model"))
    if result.comparison is not None and result.audio is not None and result.video is not None:
        curves = [AttentionCurve(p.attention, p.frame_rate) for p in (result.audio, result.video)]  # type: ignore[arg-type]
        written.append(
            plot_roi_comparison(
                folder / f"{name}.roi.png",
                *curves,
                result.comparison,
                title=f"{title}: where the voice and the face carry the emotion",
            )
        )
    return written


def write_plot(
    result: Result,
    path: Path,
    folder: Path,
    labels: tuple[str, ...],
    names: set[str],
    waveform: np.ndarray | None,
) -> Path | None:
    """A timeline PNG for a recording, an attention-and-dynamics PNG for an utterance
    (drawn over ``waveform``, the audio its prediction decoded); None for a file without
    speech, and for an utterance whose model gives no frame-level dynamics. Files are named
    after ``path``, numbered past the ``names`` already taken (which this adds to)."""
    if isinstance(result, NoSpeech) or (isinstance(result, Prediction) and result.frame_posteriors is None):
        return None
    name = _free_name(path.stem, names)
    if isinstance(result, RecordingPrediction):
        return plot_timeline(
            folder / f"{name}.timeline.png",
            segments=[(p.start, p.end) for p in result.timeline],
            probabilities=np.array([[p.probabilities[label] for label in labels] for p in result.timeline]),
            labels=labels,
            duration=result.duration,
            title=Path(result.source).name,
        )
    if waveform is None:
        raise ValueError(f"plotting the utterance {result.source} needs the waveform it was predicted from")
    return _utterance_plot(result, folder / f"{name}.png", labels, waveform, Path(result.source).name)


def _free_name(stem: str, names: set[str]) -> str:
    """``stem``, or ``stem-2``, ``stem-3``... past the ``names`` taken; taken from now on."""
    name, number = stem, 1
    while name in names:
        number += 1
        name = f"{stem}-{number}"
    names.add(name)
    return name


def _utterance_plot(
    result: Prediction, output: Path, labels: tuple[str, ...], waveform: np.ndarray, title: str
) -> Path:
    return plot_utterance(
        output,
        waveform=waveform,
        sample_rate=SAMPLE_RATE,
        attention=result.attention,
        frame_rate=result.frame_rate,
        frame_posteriors=result.frame_posteriors,
        labels=labels,
        predicted=result.top_label,  # an abstaining prediction's plot shows its best guess
        probability=result.probabilities[result.top_label],
        segments=[(span.start - result.start, span.end - result.start) for span in result.segments],
        title=title,
    )
