"""The generic manifest: any corpus as one JSONL or CSV file, one utterance a line.

The columns are EmoBox's (``key, dataset, wav, sample_rate, num_frame, length, emo,
channel``), so EmoBox's metadata for its 32 corpora reads as is, plus ``speaker`` and
``transcript`` and our optional ``start, end, group, video, video_start, video_end``.
``key``, ``wav`` and ``emo`` are required fields; ``wav`` may be empty for a text-only
utterance that has a transcript, ``emo`` for an unlabelled one. Labels are read through
the canonical vocabulary (``neu`` and ``neutral`` alike). The audio columns
(``sample_rate, num_frame, length, channel``) describe the utterance's audio (its
segment, when it has ``start``/``end``) and are written for people and other tools;
reading ignores them. Paths under the manifest's folder are written relative to it, so
that a folder holding data and manifest can move; others are written absolute. Reading
resolves relative paths against the manifest's folder, so ``read(write(x)) == x`` for
utterances with absolute paths (empty CSV cells read back as None).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from emotrace.atomic import write_text_atomically
from emotrace.audio import probe
from emotrace.corpora.folds import SPEAKER_INDEPENDENT, Folds, speaker_kfold
from emotrace.corpora.reader import Reader
from emotrace.corpora.records import Utterance
from emotrace.errors import BatchReport, InputError
from emotrace.labels import canonical

FIELDS: tuple[str, ...] = (
    "key",
    "dataset",
    "wav",
    "sample_rate",
    "num_frame",
    "length",
    "emo",
    "channel",
    "speaker",
    "transcript",
    "start",
    "end",
    "group",
    "video",
    "video_start",
    "video_end",
)
REQUIRED: tuple[str, ...] = ("key", "wav", "emo")
SUFFIXES: tuple[str, ...] = (".jsonl", ".csv")
_TIMES = ("start", "end", "video_start", "video_end")

Row = Mapping[str, Any]


def read_manifest(path: str | Path, report: BatchReport) -> list[Utterance]:
    """The manifest's utterances; each bad line goes to ``report`` (as ``path:line``)."""
    path = Path(os.path.abspath(path))
    if not path.is_file():
        raise InputError(path, "no such manifest file")
    rows = jsonl_rows(path) if _format(path) == ".jsonl" else _csv_rows(path)
    utterances: list[Utterance] = []
    keys: set[str] = set()
    for line, row in rows:
        source = f"{path}:{line}"
        try:
            if isinstance(row, str):
                raise InputError(source, row)
            utterance = row_utterance(row, path.parent, source)
            if utterance.id in keys:
                raise InputError(source, f"duplicate key {utterance.id!r}")
        except InputError as error:
            report.skip(error)
            continue
        keys.add(utterance.id)
        utterances.append(utterance)
    return utterances


def write_manifest(utterances: Iterable[Utterance], path: str | Path, report: BatchReport) -> int:
    """Write ``utterances`` to ``path`` (.jsonl or .csv) atomically; returns how many.

    The audio of each utterance is probed (header only) for the audio columns; an
    utterance whose audio cannot be read goes to ``report`` and is left out.
    """
    path = Path(os.path.abspath(path))
    suffix = _format(path)
    rows = []
    for utterance in utterances:
        try:
            rows.append(_row(utterance, path.parent))
        except InputError as error:
            report.skip(error)
            continue
        report.done += 1
    buffer = io.StringIO(newline="")
    if suffix == ".jsonl":
        buffer.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    else:
        writer = csv.DictWriter(buffer, FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    write_text_atomically(path, buffer.getvalue())
    return len(rows)


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(path, f"a manifest must end in {' or '.join(SUFFIXES)}")
    return suffix


def jsonl_rows(path: Path) -> Iterator[tuple[int, Row | str]]:
    """(line number, fields or the reason the line is unreadable) for each non-blank line."""
    with path.open(encoding="utf-8") as lines:
        for number, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as error:
                yield number, f"not valid JSON ({error.msg} at column {error.colno})"
                continue
            yield number, row if isinstance(row, dict) else "not a JSON object"


def _csv_rows(path: Path) -> Iterator[tuple[int, Row | str]]:
    with path.open(encoding="utf-8", newline="") as file:
        rows = csv.DictReader(file)
        missing = [field for field in REQUIRED if field not in (rows.fieldnames or ())]
        if missing:
            raise InputError(path, f"no column {', '.join(missing)} in the header")
        for row in rows:
            if None in row:
                yield rows.line_num, "more cells than columns"
            else:
                yield rows.line_num, {name: value for name, value in row.items() if value is not None}


def row_utterance(row: Row, folder: Path, source: str) -> Utterance:
    """The utterance of one manifest row; relative paths resolve against ``folder``."""
    missing = [field for field in REQUIRED if field not in row]
    if missing:
        raise InputError(source, f"missing required field {', '.join(missing)}")
    key = _text(row, "key")
    if key is None:
        raise InputError(source, "empty key")
    transcript = _text(row, "transcript")
    wav = _existing(_text(row, "wav"), folder, source)
    if wav is None and transcript is None:
        raise InputError(source, "neither wav nor transcript")
    emo = _text(row, "emo")
    try:
        label = canonical(emo) if emo is not None else None
    except KeyError:
        raise InputError(source, f"unknown label {emo!r}") from None
    start, end, video_start, video_end = (_number(row, name, source) for name in _TIMES)
    return Utterance(
        id=key,
        audio=wav,
        label=label,
        speaker=_text(row, "speaker") or "",
        dataset=_text(row, "dataset") or "",
        group=_text(row, "group"),
        start=start,
        end=end,
        transcript=transcript,
        video=_existing(_text(row, "video"), folder, source),
        video_start=video_start,
        video_end=video_end,
    )


def _text(row: Row, name: str) -> str | None:
    value = row.get(name)
    return None if value is None or value == "" else str(value)


def _number(row: Row, name: str, source: str) -> float | None:
    value = row.get(name)
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(source, f"{name} is not a number: {value!r}") from None


def _existing(listed: str | None, folder: Path, source: str) -> str | None:
    """The absolute path of a listed file, or an InputError naming it when it is missing."""
    if listed is None:
        return None
    path = os.path.normpath(os.path.join(folder, listed))
    if not os.path.isfile(path):
        raise InputError(path, f"does not exist (listed in {source})")
    return path


def _row(utterance: Utterance, folder: Path) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(FIELDS)
    if utterance.audio is not None:
        info = probe(utterance.audio)
        length = (utterance.end or info.duration) - (utterance.start or 0.0)
        row.update(
            sample_rate=info.sample_rate,
            num_frame=round(length * info.sample_rate),
            length=length,
            channel=info.channels,
        )
    row.update(
        key=utterance.id,
        dataset=utterance.dataset or None,
        wav=_portable(utterance.audio, folder),
        emo=utterance.label,
        speaker=utterance.speaker or None,
        transcript=utterance.transcript,
        start=utterance.start,
        end=utterance.end,
        group=utterance.group,
        video=_portable(utterance.video, folder),
        video_start=utterance.video_start,
        video_end=utterance.video_end,
    )
    return row


def _portable(path: str | None, folder: Path) -> str | None:
    """Relative to ``folder`` when the file lies under it, else absolute."""
    if path is None:
        return None
    absolute = Path(os.path.abspath(path))
    return absolute.relative_to(folder).as_posix() if absolute.is_relative_to(folder) else str(absolute)


def manifest_folds(root: Path, utterances: Sequence[Utterance], seed: int) -> Folds:
    """Group 5-fold by speaker; no folds (saying why) when utterances have no ``speaker``."""
    unnamed = sum(1 for utterance in utterances if not utterance.speaker)
    if unnamed:
        return Folds(
            SPEAKER_INDEPENDENT,
            f"no folds: {unnamed} of {len(utterances)} utterances have no `speaker` "
            "field, and speaker-independent folds need one (add it to every line; for EmoBox's "
            "metadata, read its dataset folder as corpus `emobox` to use its own folds)",
            (),
        )
    return speaker_kfold(utterances, 5, seed=seed)


READER = Reader(
    name="manifest",
    description="a JSONL or CSV manifest (EmoBox fields); folds: group 5-fold by speaker",
    read=read_manifest,
    folds=manifest_folds,
)
