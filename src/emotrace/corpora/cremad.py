"""CREMA-D: 91 actors, 6 emotions, 12 sentences; everything is in the file name.

``AudioWAV/<actor>_<sentence>_<emotion>_<level>.wav`` (``1001_DFA_ANG_XX.wav``; level LO,
MD, HI, or XX unspecified), with the same name in ``VideoFlash/`` (.flv) for the video
when that part of the release is present. A root with only ``VideoFlash/`` is read too:
each clip's audio is then its Flash video's own MP3 track. No official split:
speaker-independent stratified group 5-fold by actor.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from emotrace.corpora.folds import Folds, speaker_kfold
from emotrace.corpora.reader import Reader, audio_files, find_media, require_folder
from emotrace.corpora.records import Utterance
from emotrace.errors import BatchReport, InputError
from emotrace.labels import CREMAD_6

_NAME = re.compile(r"(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})")
EMOTIONS: Mapping[str, str] = {
    "ANG": "angry",
    "DIS": "disgusted",
    "FEA": "fearful",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
LEVELS = frozenset({"LO", "MD", "HI", "XX"})
SENTENCES: Mapping[str, str] = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}


def read_cremad(root: Path, report: BatchReport) -> list[Utterance]:
    videos = root / "VideoFlash"
    if (root / "AudioWAV").is_dir() or not videos.is_dir():
        sources = audio_files(require_folder(root / "AudioWAV", "CREMA-D"))
    else:  # the video part alone: the audio is in the videos
        sources = sorted(path for path in videos.glob("*.flv") if not path.name.startswith(".") and path.is_file())
    utterances = []
    for path in sources:
        match = _NAME.fullmatch(path.stem)
        if match is None:
            report.skip(InputError(path, "not a CREMA-D file name (actor_sentence_emotion_level)"))
            continue
        actor, sentence, emotion, level = match.groups()
        problem = _unknown_code(sentence, emotion, level)
        if problem:
            report.skip(InputError(path, problem))
            continue
        video = find_media(videos, path.stem, (".flv",))
        utterances.append(
            Utterance(
                id=path.stem,
                audio=str(path),
                label=EMOTIONS[emotion],
                speaker=actor,
                dataset="cremad",
                transcript=SENTENCES[sentence],
                video=str(video) if video else None,
            )
        )
    return utterances


def _unknown_code(sentence: str, emotion: str, level: str) -> str | None:
    if sentence not in SENTENCES:
        return f"unknown sentence code {sentence}"
    if emotion not in EMOTIONS:
        return f"unknown emotion code {emotion}"
    if level not in LEVELS:
        return f"unknown intensity level {level}"
    return None


def cremad_folds(root: Path, utterances: Sequence[Utterance], seed: int) -> Folds:
    return speaker_kfold(utterances, 5, seed=seed)


READER = Reader(
    name="cremad",
    description="CREMA-D, 91 actors, 6 emotions, 12 sentences",
    read=read_cremad,
    folds=cremad_folds,
    label_sets=(CREMAD_6,),
)
