"""Predictions out: the JSON document, CSV, a table for people, and a PNG per result.

The JSON document is one format for every interface: ``emotrace predict --format json``
writes it, :func:`emotrace.api.predict_files` gives it, the HTTP service answers with it.
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

from emotrace.errors import BatchReport
from emotrace.inference.predictions import RecordingPrediction, Result, utterances

TABLE_WIDTH = 160  # characters of a table written to a file


class OutputFormat(str, Enum):
    json = "json"
    csv = "csv"
    table = "table"
    parquet = "parquet"  # written by the Ray engine only (emotrace.distributed.results)


def predictions_document(results: Sequence[Result], report: BatchReport) -> dict[str, Any]:
    """The JSON document of a batch of predictions and what it skipped."""
    return {"predictions": [result.to_dict() for result in results], "skipped": report.to_dict()["skipped"]}


def render(
    results: Sequence[Result], report: BatchReport, labels: Sequence[str], output_format: OutputFormat
) -> str:
    """The predictions as JSON, CSV (one row per utterance and per recording's speech
    segment; an ``abstained`` column last when an abstention threshold was asked for), or
    a plain-text table."""
    if output_format == OutputFormat.parquet:
        raise ValueError("Parquet is written from result parts by the Ray engine (emotrace.distributed.results)")
    if output_format == OutputFormat.json:
        return json.dumps(predictions_document(results, report), indent=2, ensure_ascii=False) + "\n"
    if output_format == OutputFormat.csv:
        predictions = utterances(results)
        abstention = any(p.abstained is not None for p in predictions)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["source", "start", "end", "protocol", "label", *labels, "regions", "transcript",
                         *(["abstained"] if abstention else [])])
        for p in predictions:
            regions = ";".join(f"{region.start:.2f}-{region.end:.2f}" for region in p.segments)
            writer.writerow([
                p.source, f"{p.start:.3f}", f"{p.end:.3f}", p.protocol, p.label,
                *(f"{p.probabilities[label]:.5f}" for label in labels), regions, p.transcript or "",
                *([str(bool(p.abstained)).lower()] if abstention else []),
            ])
        return buffer.getvalue()
    buffer = io.StringIO()
    Console(file=buffer, width=TABLE_WIDTH, no_color=True).print(predictions_table(results))
    return buffer.getvalue()


def predictions_table(results: Sequence[Result]) -> Table:
    """A row per utterance and speech segment: time, label, runner-up, regions of
    interest (and transcripts, when any); each recording's shares in the caption. An
    abstaining prediction's label reads ``uncertain (best guess and its probability)``."""
    predictions = utterances(results)
    protocols = ", ".join(sorted({p.protocol for p in predictions}))
    table = Table(title=f"{protocols} protocol")
    table.add_column("file", overflow="fold")
    for column in ("time (s)", "label", "runner-up", "regions of interest (s)"):
        table.add_column(column)
    with_text = any(p.transcript for p in predictions)
    if with_text:
        table.add_column("transcript")
    for p in predictions:
        ranked = sorted(p.probabilities, key=p.probabilities.__getitem__, reverse=True)
        regions = ", ".join(f"{region.start:.2f}-{region.end:.2f}" for region in p.segments)
        best = f"{ranked[0]} {p.probabilities[ranked[0]]:.0%}"
        row = [
            escape(p.source), f"{p.start:.2f}-{p.end:.2f}", f"{p.label} ({best})" if p.abstained else best,
            f"{ranked[1]} {p.probabilities[ranked[1]]:.0%}", regions,
        ]
        table.add_row(*row, *([escape(p.transcript or "")] if with_text else []))
    captions = []
    for r in results:
        if isinstance(r, RecordingPrediction):
            top = sorted(r.shares, key=r.shares.__getitem__, reverse=True)[:3]
            shares = ", ".join(f"{label} {r.shares[label]:.0%}" for label in top)
            verdict = f" ({r.label})" if r.abstained else ""
            captions.append(f"{escape(r.source)}: {len(r.timeline)} speech segments, {shares}{verdict}")
    table.caption = "\n".join(captions) or None
    return table
