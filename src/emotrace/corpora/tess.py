"""TESS: two actresses (OAF older, YAF younger) say "Say the word ..." in 7 emotions.

Folders such as ``OAF_angry/`` hold ``OAF_back_angry.wav``: speaker, target word, emotion
(``ps`` is pleasant surprise). The transcript is the carrier phrase with the word. With
two speakers the folds are leave-one-speaker-out, which leaves a single training speaker
and therefore no speaker-independent validation set (``val`` is empty).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from emotrace.corpora.folds import Folds, leave_one_speaker_out
from emotrace.corpora.reader import Reader, audio_files
from emotrace.corpora.records import Utterance
from emotrace.errors import BatchReport, InputError
from emotrace.labels import TESS_7

_NAME = re.compile(r"(OAF|YAF)_([a-z]+)_(angry|disgust|fear|happy|neutral|ps|sad)", re.IGNORECASE)
EMOTIONS: Mapping[str, str] = {
    "angry": "angry",
    "disgust": "disgusted",
    "fear": "fearful",
    "happy": "happy",
    "neutral": "neutral",
    "ps": "surprised",
    "sad": "sad",
}


def read_tess(root: Path, report: BatchReport) -> list[Utterance]:
    utterances = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in audio_files(folder):
            match = _NAME.fullmatch(path.stem)
            if match is None:
                report.skip(InputError(path, "not a TESS file name (OAF_back_angry)"))
                continue
            speaker, word, emotion = match.groups()
            utterances.append(
                Utterance(
                    id=path.stem,
                    audio=str(path),
                    label=EMOTIONS[emotion.lower()],
                    speaker=speaker.upper(),
                    dataset="tess",
                    transcript=f"Say the word {word.lower()}",
                )
            )
    return utterances


def tess_folds(root: Path, utterances: Sequence[Utterance], seed: int) -> Folds:
    return leave_one_speaker_out(utterances, seed=seed)


READER = Reader(
    name="tess",
    description="TESS, 2 speakers, 7 emotions, 200 target words",
    read=read_tess,
    folds=tess_folds,
    label_sets=(TESS_7,),
)
