"""ASED v1, the Amharic Speech Emotion Dataset: 65 speakers, 5 emotions, in the file names.

``01Neutral/ 02Fearful/ 03Happy/ 04Sad/ 05Angry/`` hold ``xn-yy-aa-gg-bb.wav``: the emotion
letter and its folder's number (``n1 f2 h3 s4 a5``; the release spells one sad clip
``S4``), sentence ``yy``, repetition ``aa``, gender ``gg`` (01 female, 02 male) and speaker
``bb`` (01-65). The speaker is ``bb`` alone: a few clips of five speakers carry the other
gender code, a labelling slip rather than another person. A file whose letter disagrees
with its folder is reported and skipped. No transcripts (the release lists none by clip).
Folds: stratified group 5-fold by speaker (13 test speakers per fold).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from emotrace.corpora.folds import Folds, speaker_kfold
from emotrace.corpora.reader import Reader, audio_files
from emotrace.corpora.records import Utterance
from emotrace.errors import BatchReport, InputError
from emotrace.labels import ASED_5

_NAME = re.compile(r"([nfhsa])([1-5])-(\d\d)-(\d\d)-(0[12])-(\d\d)", re.IGNORECASE)
#: Emotion folder -> (letter, folder number, canonical label).
FOLDERS: Mapping[str, tuple[str, str, str]] = {
    "01Neutral": ("n", "1", "neutral"),
    "02Fearful": ("f", "2", "fearful"),
    "03Happy": ("h", "3", "happy"),
    "04Sad": ("s", "4", "sad"),
    "05Angry": ("a", "5", "angry"),
}


def read_ased(root: Path, report: BatchReport) -> list[Utterance]:
    present = [name for name in FOLDERS if (root / name).is_dir()]
    if not present:
        raise InputError(root, f"none of the folders {', '.join(FOLDERS)}: the root is not an ASED release")
    utterances = []
    for folder_name in present:
        letter, number, label = FOLDERS[folder_name]
        for path in audio_files(root / folder_name):
            match = _NAME.fullmatch(path.stem)
            if match is None:
                report.skip(InputError(path, "not an ASED file name (xn-yy-aa-gg-bb, e.g. n1-01-01-01-01)"))
                continue
            if (match[1].lower(), match[2]) != (letter, number):
                report.skip(InputError(path, f"emotion {match[1]}{match[2]} does not fit folder {folder_name}"))
                continue
            utterances.append(Utterance(id=path.stem, audio=str(path), label=label, speaker=match[6], dataset="ased"))
    return utterances


def ased_folds(root: Path, utterances: Sequence[Utterance], seed: int) -> Folds:
    return speaker_kfold(utterances, 5, seed=seed)


READER = Reader(
    name="ased",
    description="ASED v1 (Amharic), 65 speakers, 5 emotions",
    read=read_ased,
    folds=ased_folds,
    label_sets=(ASED_5,),
)
