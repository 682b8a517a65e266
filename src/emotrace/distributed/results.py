"""Exactly-once prediction results: one part per input in a folder beside the output, then
one document assembled from them in input order.

``OUTPUT.parts/`` holds ``job.json`` (what the job is: model files, options) and one
``<key>.json`` per input, written atomically by the worker that predicted it, keyed by the
input (its resolved path, transcript and speaker). A part records the input's size and
modification time, so a restarted job skips every input whose part is there and still
matches its file, however many workers died on the way; a retried input overwrites its own
part, never adds one. The assembled output lists each input once, in input order, and the
parts folder is removed once it is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from emotrace.atomic import atomic_path, write_json_atomically
from emotrace.errors import BatchReport, EmotraceError, InputError
from emotrace.inference.predictions import NO_SPEECH
from emotrace.inference.writers import predictions_document

JOB_FILE = "job.json"
PARTS_SUFFIX = ".parts"
#: Parquet rows written per row group
PARQUET_CHUNK = 1024


@dataclass(frozen=True)
class Item:
    """One input of a prediction job: a file (as given), its transcript and speaker group."""

    index: int
    path: str
    text: str | None
    speaker: str | None

    @property
    def key(self) -> str:
        """The part's name: the input, named by its resolved path, transcript and speaker."""
        identity = json.dumps([os.path.realpath(self.path), self.text, self.speaker])
        return hashlib.blake2b(identity.encode(), digest_size=12).hexdigest()


def file_state(path: str) -> list[int] | None:
    """Size and modification time of ``path`` (None when it cannot be read): a part made
    from other bytes than the file holds now is stale."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return [status.st_size, status.st_mtime_ns]


class ResultParts:
    """The parts folder of one output file."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    @classmethod
    def for_job(cls, output: Path, job: Mapping[str, Any]) -> ResultParts:
        """The parts folder of ``output``, created for ``job``, or found holding its parts
        (an EmotraceError when it holds another job's)."""
        output = Path(output)
        parts = cls(output.parent / f"{output.name}{PARTS_SUFFIX}")
        job = json.loads(json.dumps(job))  # as it reads back
        job_file = parts.directory / JOB_FILE
        if job_file.exists():
            if json.loads(job_file.read_text()) != job:
                raise EmotraceError(
                    f"{parts.directory} holds the unfinished results of another job (other model or options); "
                    "finish that job, or delete the folder to start this one"
                )
        else:
            write_json_atomically(job_file, job)
        return parts

    def path(self, item: Item) -> Path:
        return self.directory / f"{item.key}.json"

    def finished(self, item: Item) -> bool:
        """Whether ``item`` has a part made from its file as it is now."""
        part = self.read(item)
        return part is not None and part["state"] == file_state(item.path)

    def read(self, item: Item) -> dict[str, Any] | None:
        try:
            return json.loads(self.path(item).read_text())
        except FileNotFoundError:
            return None

    def write(
        self, item: Item, state: list[int] | None, result: Mapping[str, Any] | None, skipped: Sequence[InputError]
    ) -> None:
        """Record ``item``'s outcome: its prediction (as JSON) or none, and what was skipped."""
        write_json_atomically(
            self.path(item),
            {
                "input": item.path,
                "state": state,
                "result": result,
                "skipped": [{"source": error.source, "problem": error.problem} for error in skipped],
            },
        )

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def assembled(parts: ResultParts, items: Sequence[Item], report: BatchReport) -> Iterator[dict[str, Any]]:
    """Each item's prediction (JSON dict) in input order; what each skipped goes to ``report``
    as it is met. A missing part is a bug of the job that should have written it."""
    for item in items:
        part = parts.read(item)
        if part is None:
            raise EmotraceError(f"{item.path}: no result was recorded in {parts.directory}")
        for error in part["skipped"]:
            report.skip(InputError(error["source"], error["problem"]))
        if part["result"] is not None:
            report.done += 1
            yield part["result"]


def no_speech_notices(parts: ResultParts, items: Sequence[Item]) -> list[tuple[str, str]]:
    """(source, notice) of each recorded result without speech, in input order, for the summary."""
    results = [part["result"] if (part := parts.read(item)) is not None else None for item in items]
    return [(r["source"], r["notice"]) for r in results if r is not None and r["label"] == NO_SPEECH]


def write_results(
    output: Path, output_format: str, parts: ResultParts, items: Sequence[Item], report: BatchReport
) -> int:
    """Assemble the parts into ``output`` (``json`` or ``parquet``); returns how many results it
    holds (JSON: files; Parquet: utterances). With none, nothing is written (as on one
    machine), and the report is still filled."""
    if not any((part := parts.read(item)) is not None and part["result"] is not None for item in items):
        for _ in assembled(parts, items, report):
            pass
        return 0
    if output_format == "parquet":
        return write_parquet(output, parts, items, report)
    return write_json(output, parts, items, report)


def write_json(output: Path, parts: ResultParts, items: Sequence[Item], report: BatchReport) -> int:
    """The document ``emotrace predict --format json`` writes, byte for byte, streamed from the
    parts so that memory holds one prediction at a time; returns how many it holds."""
    with atomic_path(output) as temp, open(temp, "w", encoding="utf-8") as handle:
        count = _stream_document(handle, assembled(parts, items, report), report)
        handle.flush()
        os.fsync(handle.fileno())
    return count


def _stream_document(handle: TextIO, predictions: Iterable[dict[str, Any]], report: BatchReport) -> int:
    """``json.dumps(predictions_document(...), indent=2, ensure_ascii=False)`` and a newline,
    written one prediction at a time. The layout comes from :func:`predictions_document`
    itself, with a marker for the predictions: the part before it (which must not depend on
    what is skipped) is written first, the part after once every part has been read."""
    head = _layout(report).split(_MARKER)[0]
    handle.write(head)
    count = 0
    for prediction in predictions:
        if count:
            handle.write(",\n" + _INDENT)
        # nested two levels deep; JSON strings hold no raw newline, so only the layout's are indented
        try:
            text = json.dumps(prediction, indent=2, ensure_ascii=False, allow_nan=False)
        except ValueError:
            raise EmotraceError(
                f"{prediction.get('source', 'a prediction')}: its result holds NaN or infinite numbers, "
                "which JSON cannot hold; nothing was written"
            ) from None
        handle.write(text.replace("\n", "\n" + _INDENT))
        count += 1
    final_head, tail = _layout(report).split(_MARKER)
    if final_head != head:
        raise EmotraceError("the predictions document has a layout that cannot be streamed")
    handle.write(tail + "\n")
    return count


_MARKER_TEXT = "\x00predictions\x00"
_MARKER = json.dumps(_MARKER_TEXT)
_INDENT = " " * 4


def _layout(report: BatchReport) -> str:
    document = predictions_document([], report)
    document["predictions"] = [_MARKER_TEXT]
    return json.dumps(document, indent=2, ensure_ascii=False)


def write_parquet(output: Path, parts: ResultParts, items: Sequence[Item], report: BatchReport) -> int:
    """One row per utterance prediction (a long recording's speech segments each a row), the
    fields of the JSON document as columns; what was skipped in the file's key-value
    metadata as JSON (``emotrace.skipped``, see ``pyarrow.parquet.read_metadata``). Written in
    row groups, so memory stays bounded; returns the rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = parquet_schema()
    count = 0
    with atomic_path(output) as temp, pq.ParquetWriter(temp, schema) as writer:
        for chunk in _chunks(_utterance_rows(assembled(parts, items, report)), PARQUET_CHUNK):
            writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
            count += len(chunk)
        skipped = json.dumps(report.to_dict()["skipped"], ensure_ascii=False)
        writer.add_key_value_metadata({"emotrace.skipped": skipped})
    return count


def parquet_schema() -> Any:
    """The columns of a prediction in Parquet: those of its JSON form, label dicts as maps."""
    import pyarrow as pa

    numbers = pa.map_(pa.string(), pa.float64())
    return pa.schema(
        [
            ("source", pa.string()),
            ("start", pa.float64()),
            ("end", pa.float64()),
            ("duration", pa.float64()),
            ("label", pa.string()),
            ("probabilities", numbers),
            ("protocol", pa.string()),
            ("modalities", pa.map_(pa.string(), pa.bool_())),
            ("transcript", pa.string()),
            ("transcript_source", pa.string()),
            ("mixture", numbers),
            ("segments", pa.list_(pa.struct([("start", pa.float64()), ("end", pa.float64()), ("mass", pa.float64())]))),
            (
                "dynamics",
                pa.struct(
                    [
                        ("frame_rate", pa.float64()),
                        ("times", pa.list_(pa.float64())),
                        ("attention", pa.list_(pa.float64())),
                        ("frame_posteriors", pa.list_(pa.list_(pa.float64()))),
                    ]
                ),
            ),
        ]
    )


def _utterance_rows(results: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Utterance predictions: each result, or each speech segment of a recording's result (a
    result without speech is a row labelled so, without probabilities or modalities)."""
    for result in results:
        for prediction in result.get("timeline", [result]):
            maps = {name: _map(prediction.get(name)) for name in ("probabilities", "modalities", "mixture")}
            yield {**prediction, **maps}


def _map(value: dict[str, Any] | None) -> list[tuple[str, Any]] | None:
    return None if value is None else list(value.items())


def _chunks(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
