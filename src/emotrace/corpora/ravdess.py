"""RAVDESS: 24 actors, 8 emotions, two fixed sentences; everything is in the file name.

``Actor_XX/MM-VV-EE-II-SS-RR-AA.ext``: modality MM (01 audio-visual .mp4, 02 video-only
.mp4, 03 audio-only, any audio extension), vocal channel VV (01 speech, 02 song), emotion
EE, intensity II, statement SS, repetition RR, actor AA. The three modality files of one
take are one utterance: its id is the name without the modality field, its audio is the
audio-only file when there is one and the audio track of the audio-visual mp4 otherwise,
its video is the mp4. Song is left out unless asked for: the speech corpus is what the
field benchmarks, and song has only six of the eight emotions.

Folds are EmoBox's six folds of four test actors, read from ``<root>/folds.json`` when
the root has one (the same folds, in the form the shared data ships them).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from emotrace.corpora.folds import Folds, speaker_folds
from emotrace.corpora.reader import AUDIO_SUFFIXES, Reader
from emotrace.corpora.records import Utterance
from emotrace.errors import BatchReport, InputError
from emotrace.labels import RAVDESS_7, RAVDESS_8

_NAME = re.compile(r"(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)")
AUDIO_VISUAL, VIDEO_ONLY, AUDIO_ONLY = "01", "02", "03"
SPEECH, SONG = "01", "02"
EMOTIONS: Mapping[str, str] = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgusted",
    "08": "surprised",
}
STATEMENTS: Mapping[str, str] = {
    "01": "Kids are talking by the door",
    "02": "Dogs are sitting by the door",
}
#: The EmoBox benchmark's folds: fold name -> test actor numbers.
EMOBOX_TEST_ACTORS: Mapping[str, tuple[int, ...]] = {
    "fold1": (1, 11, 20, 21),
    "fold2": (4, 10, 12, 14),
    "fold3": (8, 9, 19, 23),
    "fold4": (3, 5, 7, 24),
    "fold5": (2, 15, 16, 18),
    "fold6": (6, 13, 17, 22),
}


def actor_name(actor: int) -> str:
    """The speaker name of actor ``actor``, as the release's folders spell it."""
    return f"Actor_{actor:02d}"


def read_ravdess(root: Path, report: BatchReport, *, song: bool = False) -> list[Utterance]:
    """Utterances of a RAVDESS tree; song recordings only when ``song`` is true."""
    takes: dict[str, dict[str, Path]] = {}
    for folder in sorted(root.glob("Actor_*")):
        for path in sorted(folder.iterdir()):
            suffix = path.suffix.lower()
            if path.name.startswith(".") or suffix not in (*AUDIO_SUFFIXES, ".mp4"):
                continue
            try:
                modality, channel, take = _parse(path)
            except InputError as error:
                report.skip(error)
                continue
            if channel == SPEECH or song:
                takes.setdefault(take, {})[modality] = path
    fold_of = {actor_name(actor): fold for fold, actors in fold_actors(root).items() for actor in actors}
    return [_utterance(take, files, fold_of) for take, files in takes.items()]


def _parse(path: Path) -> tuple[str, str, str]:
    """``(modality, vocal channel, take id)`` of a RAVDESS file, or an InputError."""
    match = _NAME.fullmatch(path.stem)
    if match is None:
        raise InputError(path, "not a RAVDESS file name (MM-VV-EE-II-SS-RR-AA)")
    modality, channel, emotion, _, statement, _, _ = match.groups()
    is_video = path.suffix.lower() == ".mp4"
    if modality not in (AUDIO_VISUAL, VIDEO_ONLY, AUDIO_ONLY) or is_video == (modality == AUDIO_ONLY):
        raise InputError(path, f"modality {modality} does not fit a {path.suffix} file")
    if channel not in (SPEECH, SONG):
        raise InputError(path, f"unknown vocal channel {channel}")
    if emotion not in EMOTIONS:
        raise InputError(path, f"unknown emotion code {emotion}")
    if statement not in STATEMENTS:
        raise InputError(path, f"unknown statement code {statement}")
    return modality, channel, "-".join(match.groups()[1:])


def _utterance(take: str, files: Mapping[str, Path], fold_of: Mapping[str, str]) -> Utterance:
    _, emotion, _, statement, _, actor = take.split("-")
    audio = files.get(AUDIO_ONLY) or files.get(AUDIO_VISUAL)
    video = files.get(AUDIO_VISUAL) or files.get(VIDEO_ONLY)
    speaker = actor_name(int(actor))
    return Utterance(
        id=take,
        audio=str(audio) if audio else None,
        label=EMOTIONS[emotion],
        speaker=speaker,
        dataset="ravdess",
        group=fold_of.get(speaker),
        transcript=STATEMENTS[statement],
        video=str(video) if video else None,
    )


def fold_actors(root: Path) -> dict[str, tuple[int, ...]]:
    """Fold name -> test actors: from ``root/folds.json`` if present, else EmoBox's."""
    path = root / "folds.json"
    if not path.is_file():
        return dict(EMOBOX_TEST_ACTORS)
    try:
        listed = json.loads(path.read_text(encoding="utf-8"))["test_actors"]
        folds = {f"fold{name}": tuple(int(actor) for actor in actors) for name, actors in listed.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise InputError(path, f"not a folds file ({{'test_actors': {{fold: [actors]}}}}): {error}") from None
    tested = [actor for actors in folds.values() for actor in actors]
    if len(tested) != len(set(tested)):
        raise InputError(path, "an actor is tested in more than one fold")
    return folds


def ravdess_folds(root: Path, utterances: Sequence[Utterance], seed: int) -> Folds:
    source = "folds.json" if (root / "folds.json").is_file() else "built-in EmoBox folds"
    actors = fold_actors(root)
    return speaker_folds(
        utterances,
        {fold: [actor_name(actor) for actor in tested] for fold, tested in actors.items()},
        f"EmoBox folds, {len(actors)} folds of held-out actors ({source})",
        seed=seed,
    )


READER = Reader(
    name="ravdess",
    description="RAVDESS speech (song left out), 24 actors, 8 emotions",
    read=read_ravdess,
    folds=ravdess_folds,
    label_sets=(RAVDESS_8, RAVDESS_7),
)
