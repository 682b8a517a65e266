"""MELD: utterances of Friends dialogues, with an official train/dev/test split.

The labels and transcripts are in ``train_sent_emo.csv``, ``dev_sent_emo.csv`` and
``test_sent_emo.csv`` (columns Sr No., Utterance, Speaker, Emotion, Sentiment,
Dialogue_ID, Utterance_ID, Season, Episode, StartTime, EndTime). The clips, when present,
are ``dia{D}_utt{U}.mp4`` in the release folders ``train_splits/``,
``dev_splits_complete/`` and ``output_repeated_splits_test/`` (beside the CSVs, or inside
``train/``, ``dev/``, ``test/`` as the release archives unpack); a ``.wav`` of the same
name counts as well. Without clip folders the corpus is text-only (``audio`` is None).

Ids and groups carry the split (``test_dia3_utt0`` in group ``test_dia3``) because
dialogue numbers restart in each split. The protocol is the official split, not speaker
folds: the main characters speak in all three parts. Transcripts are decoded as UTF-8
(cp1252 when that fails), mis-decoded text (``’`` read as ``â€™``, or a bare ``\\x92``)
is repaired, and quotes, dashes and spaces are normalised so that text encoders and word
vectors see ordinary ASCII punctuation.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Sequence
from pathlib import Path

from emotrace.corpora.folds import Folds, official_split
from emotrace.corpora.reader import AUDIO_SUFFIXES, Reader, find_media
from emotrace.corpora.records import Utterance
from emotrace.errors import BatchReport, InputError
from emotrace.labels import MELD_7, canonical

#: (split, labels file, clip folder) as the release names them.
SPLITS: tuple[tuple[str, str, str], ...] = (
    ("train", "train_sent_emo.csv", "train_splits"),
    ("dev", "dev_sent_emo.csv", "dev_splits_complete"),
    ("test", "test_sent_emo.csv", "output_repeated_splits_test"),
)
COLUMNS = ("Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID")
_PUNCTUATION = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u00a0": " ",
    }
)


def read_meld(root: Path, report: BatchReport) -> list[Utterance]:
    utterances = []
    for split, labels_file, clip_folder in SPLITS:
        path = root / labels_file
        if not path.is_file():
            raise InputError(path, "missing labels file: the root is not a MELD release")
        clips = next((f for f in (root / clip_folder, root / split / clip_folder) if f.is_dir()), None)
        utterances += _read_split(path, split, clips, report)
    return utterances


def _read_split(path: Path, split: str, clips: Path | None, report: BatchReport) -> list[Utterance]:
    rows = csv.DictReader(io.StringIO(decode(path.read_bytes()), newline=""))
    missing = [column for column in COLUMNS if column not in (rows.fieldnames or ())]
    if missing:
        raise InputError(path, f"missing columns {', '.join(missing)}")
    utterances = []
    for row in rows:
        source = f"{path}:{rows.line_num}"
        if any(row[column] is None for column in COLUMNS):
            report.skip(InputError(source, "fewer cells than columns"))
            continue
        try:
            dialogue, number = int(row["Dialogue_ID"]), int(row["Utterance_ID"])
            label = canonical(row["Emotion"])
        except (ValueError, TypeError):
            report.skip(InputError(source, "Dialogue_ID and Utterance_ID must be integers"))
            continue
        except KeyError:
            report.skip(InputError(source, f"unknown emotion {row['Emotion']!r}"))
            continue
        clip_name = f"dia{dialogue}_utt{number}"
        clip = find_media(clips, clip_name, (".mp4", *AUDIO_SUFFIXES)) if clips else None
        if clips and clip is None:
            report.skip(InputError(clips / f"{clip_name}.mp4", "missing clip"))
            continue
        utterances.append(
            Utterance(
                id=f"{split}_{clip_name}",
                audio=str(clip) if clip else None,
                label=label,
                speaker=normalise(row["Speaker"]),
                dataset="meld",
                group=f"{split}_dia{dialogue}",
                transcript=normalise(row["Utterance"]) or None,
                video=str(clip) if clip and clip.suffix == ".mp4" else None,
            )
        )
    return utterances


def decode(raw: bytes) -> str:
    """Text of a CSV file: UTF-8 (with or without BOM), else Windows-1252."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


def normalise(text: str) -> str:
    """Repair mis-decoded punctuation, then ASCII quotes and dashes, single spaces."""
    text = "".join(_from_cp1252_control(char) for char in _undo_double_decoding(text))
    text = unicodedata.normalize("NFKC", text).translate(_PUNCTUATION)
    return " ".join(text.split())


def _undo_double_decoding(text: str) -> str:
    """``mustâ€™ve`` (UTF-8 bytes read as cp1252 or Latin-1) -> ``must’ve``."""
    if text.isascii():
        return text
    for codec in ("cp1252", "latin-1"):
        try:
            return text.encode(codec).decode("utf-8")
        except UnicodeError:
            continue
    return text


def _from_cp1252_control(char: str) -> str:
    """A C1 control left by reading cp1252 as Latin-1 (``\\x92``) -> its cp1252 character."""
    if "\x80" <= char <= "\x9f":
        return bytes([ord(char)]).decode("cp1252", errors="replace")
    return char


def meld_folds(root: Path, utterances: Sequence[Utterance], seed: int) -> Folds:
    groups = {u.group for u in utterances if u.group}
    return official_split(
        test=(g for g in groups if g.startswith("test_")),
        val=(g for g in groups if g.startswith("dev_")),
        description="MELD official split: train, dev (validation), test; speakers overlap",
    )


READER = Reader(
    name="meld",
    description="MELD (Friends dialogues), official train/dev/test split, 7 emotions",
    read=read_meld,
    folds=meld_folds,
    label_sets=(MELD_7,),
)
