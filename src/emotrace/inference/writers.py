"""Predictions out: the JSON document, CSV, a table for people, and a PNG per result.

The JSON document is one format for every interface: ``emotrace predict --format json``
writes it, :func:`emotrace.api.predict_files` gives it, the HTTP service answers with it.
It is strict JSON: a NaN or an infinity is refused, never written. A file without speech
(:class:`~emotrace.inference.predictions.NoSpeech`) is a row of its own in the CSV and the
table, labelled ``no speech``, with no probabilities.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from enum import Enum
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from emotrace.errors import BatchReport, EmotraceError, printable
from emotrace.inference.predictions import (
    AudioVisualPrediction,
    NoSpeech,
    Prediction,
    RecordingPrediction,
    Result,
    UtterancePrediction,
    utterances,
)
from emotrace.spans import Span

TABLE_WIDTH = 160  # characters of a table written to a file


class OutputFormat(str, Enum):
    json = "json"
    csv = "csv"
    table = "table"
    parquet = "parquet"  # written by the Ray engine only (emotrace.distributed.results)


def predictions_document(results: Sequence[Result], report: BatchReport) -> dict[str, Any]:
    """The JSON document of a batch of predictions and what it skipped."""
    return {"predictions": [result.to_dict() for result in results], "skipped": report.to_dict()["skipped"]}


#: the CSV's columns after the transcript when audio and video models predicted together
AUDIOVISUAL_COLUMNS = (
    "modalities",
    "fusion",
    "audio_label",
    "video_label",
    "audio_regions",
    "video_regions",
    "roi_iou",
    "pearson",
    "lag",
    "notes",
)


def render(results: Sequence[Result], report: BatchReport, labels: Sequence[str], output_format: OutputFormat) -> str:
    """The predictions as JSON, CSV (one row per utterance and per recording's speech
    segment; with :data:`AUDIOVISUAL_COLUMNS` too where audio and video models predicted
    together, and an ``abstained`` column last when an abstention threshold was asked for),
    or a plain-text table."""
    if output_format == OutputFormat.parquet:
        raise ValueError("Parquet is written from result parts by the Ray engine (emotrace.distributed.results)")
    if output_format == OutputFormat.json:
        return predictions_json(results, report)
    if output_format == OutputFormat.csv:
        predictions = utterances(results)
        abstention = any(p.abstained is not None for p in predictions)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        audiovisual = any(isinstance(p, AudioVisualPrediction) for p in predictions)
        writer.writerow(
            [
                "source",
                "start",
                "end",
                "protocol",
                "label",
                *labels,
                "regions",
                "transcript",
                *(AUDIOVISUAL_COLUMNS if audiovisual else ()),
                *(["abstained"] if abstention else []),
            ]
        )
        for p in _rows(results):
            if isinstance(p, NoSpeech):
                blank = [""] * (len(labels) + 2 + (len(AUDIOVISUAL_COLUMNS) if audiovisual else 0))  # to transcript
                writer.writerow(
                    [printable(p.source), "0.000", f"{p.duration:.3f}", "", p.label, *blank]
                    + ([""] if abstention else [])
                )
                continue
            writer.writerow(
                [
                    printable(p.source),
                    f"{p.start:.3f}",
                    f"{p.end:.3f}",
                    p.protocol,
                    p.label,
                    *(f"{p.probabilities[label]:.5f}" for label in labels),
                    _regions(p.segments, ";"),
                    p.transcript or "",
                    *(_audiovisual_cells(p) if audiovisual else ()),
                    *([str(bool(p.abstained)).lower()] if abstention else []),
                ]
            )
        return buffer.getvalue()
    buffer = io.StringIO()
    Console(file=buffer, width=TABLE_WIDTH, no_color=True).print(predictions_table(results))
    return buffer.getvalue()


def predictions_json(results: Sequence[Result], report: BatchReport) -> str:
    """The JSON document as text; an EmotraceError, not invalid JSON, if a number in it is not finite."""
    try:
        return json.dumps(predictions_document(results, report), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    except ValueError as error:
        raise EmotraceError(f"the predictions cannot be written as JSON ({error}); nothing was written") from None


def predictions_table(results: Sequence[Result]) -> Table:
    """A row per utterance and speech segment: time, label, runner-up, regions of
    interest (and transcripts, when any); each recording's shares in the caption. Where
    audio and video models predicted together, the label is the fused one, each model's
    label and regions have columns of their own, and what was not used is in the caption.
    An abstaining prediction's label reads ``uncertain (best guess and its probability)``;
    a file without speech is a row labelled ``no speech``, how little speech there was in the caption."""
    predictions = utterances(results)
    protocols = ", ".join(sorted({p.protocol for p in predictions}))
    table = Table(title=f"{protocols} protocol" if protocols else None)
    table.add_column("file", overflow="fold")
    audiovisual = any(isinstance(p, AudioVisualPrediction) for p in predictions)
    columns = ("voice", "face", "voice–face IoU") if audiovisual else ()
    for column in ("time (s)", "label", "runner-up", *columns, "regions of interest (s)"):
        table.add_column(column)
    with_text = any(p.transcript for p in predictions)
    if with_text:
        table.add_column("transcript")
    for p in _rows(results):
        if isinstance(p, NoSpeech):
            empty = [""] * (len(columns) + 2 + with_text)  # runner-up, audio-visual columns, regions, transcript
            table.add_row(escape(printable(p.source)), f"0.00-{p.duration:.2f}", p.label, *empty)
            continue
        ranked = sorted(p.probabilities, key=p.probabilities.__getitem__, reverse=True)
        best = f"{ranked[0]} {p.probabilities[ranked[0]]:.0%}"
        row = [
            escape(printable(p.source)),
            f"{p.start:.2f}-{p.end:.2f}",
            f"{p.label} ({best})" if p.abstained else best,
            f"{ranked[1]} {p.probabilities[ranked[1]]:.0%}",
        ]
        if audiovisual:
            row += _audiovisual_table_cells(p)
        else:
            row.append(_regions(p.segments))
        table.add_row(*row, *([escape(p.transcript or "")] if with_text else []))
    captions = [f"{escape(printable(r.source))}: {r.describe()}" for r in results if isinstance(r, NoSpeech)]
    for p in predictions:
        if isinstance(p, AudioVisualPrediction):
            read = " + ".join(m for m, used in p.modalities.items() if used)
            how = [f"read {read}", *([f"fused by {p.fusion_description}"] if p.fusion_description else []), *p.notes]
            captions.append(f"{escape(printable(p.source))} {p.start:.2f}-{p.end:.2f} s: {'; '.join(how)}")
    for r in results:
        if isinstance(r, RecordingPrediction):
            top = sorted(r.shares, key=r.shares.__getitem__, reverse=True)[:3]
            shares = ", ".join(f"{label} {r.shares[label]:.0%}" for label in top)
            verdict = f" ({r.label})" if r.abstained else ""
            captions.append(f"{escape(printable(r.source))}: {len(r.timeline)} speech segments, {shares}{verdict}")
    table.caption = "\n".join(captions) or None
    return table


def _rows(results: Sequence[Result]) -> list[UtterancePrediction | NoSpeech]:
    """A row per utterance and per recording's speech segment, and one per file without speech, in order."""
    return [row for r in results for row in ((r,) if isinstance(r, NoSpeech) else utterances([r]))]


def _regions(spans: Sequence[Span], separator: str = ", ") -> str:
    """Regions of interest as ``start-end`` seconds."""
    return separator.join(f"{span.start:.2f}-{span.end:.2f}" for span in spans)


def _audiovisual_cells(p: UtterancePrediction) -> list[str]:
    """The CSV's :data:`AUDIOVISUAL_COLUMNS` of one row (empty for a single model's prediction)."""
    if not isinstance(p, AudioVisualPrediction):
        return [""] * len(AUDIOVISUAL_COLUMNS)
    comparison = p.comparison
    figures = [
        "" if comparison is None or getattr(comparison, name) is None else f"{getattr(comparison, name):.4f}"
        for name in ("roi_iou", "pearson", "lag")
    ]
    return [
        "+".join(m for m, used in p.modalities.items() if used),
        p.fusion or "",
        *(stream.label if stream is not None else "" for stream in (p.audio, p.video)),
        *(_regions(stream.segments, ";") if stream is not None else "" for stream in (p.audio, p.video)),
        *figures,
        "; ".join(p.notes),
    ]


def _audiovisual_table_cells(p: UtterancePrediction) -> list[str]:
    """The table's voice, face, IoU and regions cells of one row."""
    if not isinstance(p, AudioVisualPrediction):
        return ["", "", "", _regions(p.segments)]
    streams: list[Prediction | None] = [p.audio, p.video]
    labels = [f"{s.label} {s.probabilities[s.label]:.0%}" if s is not None else "not used" for s in streams]
    iou = p.comparison.roi_iou if p.comparison is not None else None
    regions = "; ".join(
        f"{name} {_regions(s.segments)}" for name, s in zip(("voice", "face"), streams) if s is not None and s.segments
    )
    return [*labels, "" if iou is None else f"{iou:.2f}", regions or _regions(p.segments)]
