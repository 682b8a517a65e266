"""SAVEE: 4 male speakers, 7 emotions; the emotion is the file name's prefix.

``AudioData/<speaker>/<code><NN>.wav`` with speakers DC, JE, JK, KL and codes a anger,
d disgust, f fear, h happiness, n neutral, sa sadness, su surprise. With four speakers
the folds are leave-one-speaker-out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from emotrace.corpora.folds import Folds, leave_one_speaker_out
from emotrace.corpora.reader import Reader, audio_files, require_folder
from emotrace.corpora.records import Utterance
from emotrace.errors import BatchReport, InputError
from emotrace.labels import SAVEE_7

_NAME = re.compile(r"(sa|su|a|d|f|h|n)(\d\d)")
EMOTIONS: Mapping[str, str] = {
    "a": "angry",
    "d": "disgusted",
    "f": "fearful",
    "h": "happy",
    "n": "neutral",
    "sa": "sad",
    "su": "surprised",
}


def read_savee(root: Path, report: BatchReport) -> list[Utterance]:
    audio_data = require_folder(root / "AudioData", "SAVEE")
    utterances = []
    for folder in sorted(p for p in audio_data.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in audio_files(folder):
            match = _NAME.fullmatch(path.stem)
            if match is None:
                report.skip(InputError(path, "not a SAVEE file name (a01, sa12, su03, ...)"))
                continue
            utterances.append(
                Utterance(
                    id=f"{folder.name}_{path.stem}",
                    audio=str(path),
                    label=EMOTIONS[match.group(1)],
                    speaker=folder.name,
                    dataset="savee",
                )
            )
    return utterances


def savee_folds(root: Path, utterances: Sequence[Utterance], seed: int) -> Folds:
    return leave_one_speaker_out(utterances, seed=seed)


READER = Reader(
    name="savee",
    description="SAVEE, 4 male speakers, 7 emotions",
    read=read_savee,
    folds=savee_folds,
    label_sets=(SAVEE_7,),
)
