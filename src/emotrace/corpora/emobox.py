"""EmoBox's metadata for a dataset, read as given: its own folds, its label map, its paths.

EmoBox (github.com/emo-box/EmoBox) ships, per dataset, ``data/<dataset>/`` holding
``fold_<n>/<dataset>_train_fold_<n>.jsonl`` and ``..._test_fold_<n>.jsonl`` (manifest
lines: ``key, dataset, wav, emo, ...``; see :mod:`emotrace.corpora.manifest`) and
``label_map.json`` (raw ``emo`` codes such as ASED's ``"S"`` -> label names). The root
here is that dataset folder. ``wav`` paths are relative to EmoBox's repository root (where
its ``downloads/`` lies), so they resolve against the first folder, from the root upwards,
under which the first one exists.

Fold *n* tests exactly the utterances of its test file; everything else trains. The
files name no speakers, so validation utterances are a seeded share of the training side
and may share speakers with it (said in the folds' description); when every line does
carry a ``speaker``, validation speakers are drawn from the training side instead. How
speaker-independent the test sides are is EmoBox's doing (its ASED fold, for one, is
not): the protocol is labelled ``emobox-folds``.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from pathlib import Path

from emotrace.corpora.folds import VAL_FRACTION, Fold, Folds
from emotrace.corpora.manifest import jsonl_rows, row_utterance
from emotrace.corpora.reader import Reader
from emotrace.corpora.records import Utterance
from emotrace.errors import BatchReport, InputError

PROTOCOL = "emobox-folds"
LABEL_MAP = "label_map.json"
_FOLD_FILE = re.compile(r".+_(train|test)_fold_?(\d+)\.jsonl")


def fold_files(root: Path) -> dict[int, dict[str, Path]]:
    """Fold number -> ``{"train": path, "test": path}`` (``fold_3`` spellings preferred over ``fold3``)."""
    files: dict[int, dict[str, Path]] = {}
    for path in sorted(root.glob("fold_*/*.jsonl"), key=lambda p: ("_fold_" not in p.name, p.name)):
        match = _FOLD_FILE.fullmatch(path.name)
        if match:
            files.setdefault(int(match[2]), {}).setdefault(match[1], path)
    if not any("test" in parts for parts in files.values()):
        raise InputError(root, "no fold_<n>/<dataset>_test_fold_<n>.jsonl: the root is not an EmoBox dataset folder")
    return dict(sorted(files.items()))


def read_emobox(root: Path, report: BatchReport) -> list[Utterance]:
    label_map = _label_map(root / LABEL_MAP)
    paths = [path for parts in fold_files(root).values() for path in parts.values()]
    base = _base(root, paths)
    utterances: dict[str, Utterance] = {}
    for path in paths:
        for line, row in jsonl_rows(path):
            source = f"{path}:{line}"
            try:
                if isinstance(row, str):
                    raise InputError(source, row)
                if str(row.get("key")) in utterances:
                    continue
                emo = row.get("emo")
                utterance = row_utterance({**row, "emo": label_map.get(str(emo), emo)}, base, source)
            except InputError as error:
                report.skip(error)
                continue
            utterances[utterance.id] = utterance
    return list(utterances.values())


def emobox_folds(root: Path, utterances: Sequence[Utterance], seed: int) -> Folds:
    known = {utterance.id for utterance in utterances}
    by_speaker = all(utterance.speaker for utterance in utterances)
    folds = []
    for number, parts in fold_files(root).items():
        if "test" not in parts:
            continue
        name = f"fold{number}"
        test = {str(row["key"]) for _, row in jsonl_rows(parts["test"]) if isinstance(row, dict)} & known
        training = [u for u in utterances if u.id not in test]
        folds.append(Fold(name, tuple(sorted(test)), _validation(training, name, seed, by_speaker), "utterance"))
    validation = (
        "validation speakers drawn from the training side"
        if by_speaker
        else f"validation: {VAL_FRACTION:.0%} of the training utterances (seeded); the files name no "
        "speakers, so validation may share speakers with training"
    )
    return Folds(PROTOCOL, f"EmoBox's own {len(folds)} folds as its files give them; {validation}", tuple(folds))


def _validation(training: list[Utterance], fold: str, seed: int, by_speaker: bool) -> tuple[str, ...]:
    draw = random.Random(f"{seed}:{fold}")
    if by_speaker:
        speakers = sorted({u.speaker for u in training})
        if len(speakers) < 2:
            return ()
        chosen = set(draw.sample(speakers, max(1, round(VAL_FRACTION * len(speakers)))))
        return tuple(sorted(u.id for u in training if u.speaker in chosen))
    ids = sorted(u.id for u in training)
    if len(ids) < 2:
        return ()
    return tuple(sorted(draw.sample(ids, max(1, round(VAL_FRACTION * len(ids))))))


def _label_map(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    try:
        mapping = json.loads(path.read_text(encoding="utf-8"))
        return {str(code): str(name) for code, name in mapping.items()}
    except (ValueError, AttributeError) as error:
        raise InputError(path, f"not a label map ({{code: name}}): {error}") from None


def _base(root: Path, paths: list[Path]) -> Path:
    """The folder EmoBox's relative ``wav`` paths start from: the root or the first one above it."""
    first = next(
        (row["wav"] for path in paths for _, row in jsonl_rows(path) if isinstance(row, dict) and row.get("wav")), None
    )
    if first is None or Path(first).is_absolute():
        return root
    for folder in (root, *root.parents):
        if (folder / first).is_file():
            return folder
    raise InputError(
        root / first,
        "not found under the dataset folder or any folder above it; EmoBox lists audio "
        "relative to its repository root (where downloads/ lies)",
    )


READER = Reader(
    name="emobox",
    description="an EmoBox dataset folder (fold_<n>/*_train|test_fold_<n>.jsonl): its own folds and label map",
    read=read_emobox,
    folds=emobox_folds,
)
