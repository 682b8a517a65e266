"""nEMO, emotional speech in Polish: 9 actors, 6 emotions, transcripts in ``data.tsv``.

The release holds ``{speaker}_{emotion}_{n}.wav`` (``EB0_anger_1.wav``) at its root or in
``samples/``, and ``data.tsv`` (tab-separated, a header line) with, per original ``.wav``
name, the emotion, the raw and the normalised transcript, the speaker (padded with
spaces), gender and age. ``data.tsv`` is the index: a row whose audio is missing, a file it
does not list, or a file whose name disagrees with its row is reported and skipped. The
transcript is the raw one (the sentences are phonetically balanced: the text carries no
emotion). Folds: stratified group 5-fold by speaker (1 or 2 test speakers per fold).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from emotrace.corpora.folds import Folds, speaker_kfold
from emotrace.corpora.reader import Reader, audio_files
from emotrace.corpora.records import Utterance
from emotrace.errors import BatchReport, InputError
from emotrace.labels import NEMO_6

INDEX = "data.tsv"
COLUMNS = ("file_id", "emotion", "raw_text", "speaker_id")
_NAME = re.compile(r"([A-Z]{2}\d)_([a-z]+)_(\d+)")
EMOTIONS: Mapping[str, str] = {
    "anger": "angry",
    "fear": "fearful",
    "happiness": "happy",
    "neutral": "neutral",
    "sadness": "sad",
    "surprised": "surprised",
}


def read_nemo(root: Path, report: BatchReport) -> list[Utterance]:
    rows = _index(root / INDEX)
    files = {path.stem: path for folder in (root, root / "samples") if folder.is_dir() for path in audio_files(folder)}
    utterances = []
    for stem, path in sorted(files.items()):
        row = rows.get(stem)
        match = _NAME.fullmatch(stem)
        problem = _problem(match, row)
        if problem:
            report.skip(InputError(path, problem))
            continue
        assert row is not None and match is not None
        utterances.append(
            Utterance(
                id=stem,
                audio=str(path),
                label=EMOTIONS[row["emotion"]],
                speaker=match[1],
                dataset="nemo",
                transcript=row["raw_text"].strip() or None,
            )
        )
    for stem in sorted(set(rows) - set(files)):
        report.skip(InputError(root / f"{stem}.wav", f"listed in {INDEX} but no audio file"))
    return utterances


def _index(path: Path) -> dict[str, dict[str, str]]:
    """``data.tsv`` rows by file stem, with emotion and speaker as the names spell them."""
    if not path.is_file():
        raise InputError(path, f"missing: the root is not an nEMO release (it lists clips in {INDEX})")
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = [column for column in COLUMNS if column not in (reader.fieldnames or ())]
        if missing:
            raise InputError(path, f"no column {', '.join(missing)} in the header")
        return {
            Path(row["file_id"].strip()).stem: {key: (row[key] or "").strip() for key in COLUMNS}
            for row in reader
            if row["file_id"]
        }


def _problem(match: re.Match[str] | None, row: Mapping[str, str] | None) -> str | None:
    if match is None:
        return "not an nEMO file name (speaker_emotion_n, e.g. EB0_anger_1)"
    if row is None:
        return f"not listed in {INDEX}"
    if row["emotion"] not in EMOTIONS:
        return f"unknown emotion {row['emotion']!r} in {INDEX}"
    if (match[1], match[2]) != (row["speaker_id"], row["emotion"]):
        return f"name says {match[1]} {match[2]}, {INDEX} says {row['speaker_id']} {row['emotion']}"
    return None


def nemo_folds(root: Path, utterances: Sequence[Utterance], seed: int) -> Folds:
    return speaker_kfold(utterances, 5, seed=seed)


READER = Reader(
    name="nemo",
    description="nEMO (Polish), 9 actors, 6 emotions, transcripts",
    read=read_nemo,
    folds=nemo_folds,
    label_sets=(NEMO_6,),
)
