"""Berlin EmoDB: 10 actors, 7 emotions, 10 German sentences; everything is in the file name.

``wav/03a01Fa.wav``: speaker 03, sentence a01, emotion letter (the German initial:
W Wut anger, L Langeweile boredom, E Ekel disgust, A Angst fear, F Freude happiness,
T Trauer sadness, N neutral), version a. Folds: stratified group 5-fold by speaker
(two speakers per test fold).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from emotrace.corpora.folds import Folds, speaker_kfold
from emotrace.corpora.reader import Reader, audio_files, require_folder
from emotrace.corpora.records import Utterance
from emotrace.errors import BatchReport, InputError
from emotrace.labels import EMODB_7

_NAME = re.compile(r"(\d\d)([ab]\d\d)([A-Z])([a-z])")
EMOTIONS: Mapping[str, str] = {
    "W": "angry",
    "L": "bored",
    "E": "disgusted",
    "A": "fearful",
    "F": "happy",
    "T": "sad",
    "N": "neutral",
}
SENTENCES: Mapping[str, str] = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}


def read_emodb(root: Path, report: BatchReport) -> list[Utterance]:
    utterances = []
    for path in audio_files(require_folder(root / "wav", "EmoDB")):
        match = _NAME.fullmatch(path.stem)
        if match is None:
            report.skip(InputError(path, "not an EmoDB file name (03a01Fa)"))
            continue
        speaker, sentence, emotion, _ = match.groups()
        if sentence not in SENTENCES or emotion not in EMOTIONS:
            report.skip(InputError(path, f"unknown sentence {sentence} or emotion letter {emotion}"))
            continue
        utterances.append(
            Utterance(
                id=path.stem,
                audio=str(path),
                label=EMOTIONS[emotion],
                speaker=speaker,
                dataset="emodb",
                transcript=SENTENCES[sentence],
            )
        )
    return utterances


def emodb_folds(root: Path, utterances: Sequence[Utterance], seed: int) -> Folds:
    return speaker_kfold(utterances, 5, seed=seed)


READER = Reader(
    name="emodb",
    description="Berlin EmoDB, 10 actors, 7 emotions, 10 German sentences",
    read=read_emodb,
    folds=emodb_folds,
    label_sets=(EMODB_7,),
)
