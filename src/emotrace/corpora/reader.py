"""The one interface every corpus reader implements, and the file lookups they share.

A reader turns a corpus root in its release layout into :class:`Utterance` records with
canonical labels, names the corpus's standard label sets, and builds its standard folds.
Readers never decode audio: listing a corpus must stay fast, and bad audio is the audio
loader's business. A file whose name breaks the corpus's convention is reported in the
:class:`~emotrace.errors.BatchReport` and skipped; a root that is not the corpus at all
is an :class:`~emotrace.errors.InputError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from emotrace.corpora.folds import Folds
from emotrace.corpora.records import Utterance
from emotrace.errors import InputError
from emotrace.labels import LabelSet

#: Audio file extensions readers accept wherever a corpus ships .wav (users convert to FLAC).
AUDIO_SUFFIXES: tuple[str, ...] = (".wav", ".flac", ".ogg", ".opus", ".mp3")


@dataclass(frozen=True)
class Reader:
    """How to read one corpus.

    ``read(root, report)`` lists the utterances; ``folds(root, utterances, seed)`` builds the
    corpus's standard folds over (label-filtered) utterances; ``label_sets`` are the
    corpus's standard label sets, the default first (empty: every label present). A
    ``seeded`` reader draws something when it reads (the pairing of a built corpus) and is
    called as ``read(root, report, seed=seed)``.
    """

    name: str
    description: str
    read: Callable[..., list[Utterance]]
    folds: Callable[[Path, Sequence[Utterance], int], Folds]
    label_sets: tuple[LabelSet, ...] = ()
    seeded: bool = False


def audio_files(folder: Path) -> list[Path]:
    """The audio files directly in ``folder``, sorted; hidden files (macOS ``._x.wav``) left out."""
    return sorted(
        path
        for path in folder.iterdir()
        if path.suffix.lower() in AUDIO_SUFFIXES and not path.name.startswith(".") and path.is_file()
    )


def find_media(folder: Path, stem: str, suffixes: Sequence[str] = AUDIO_SUFFIXES) -> Path | None:
    """``folder/stem`` with the first of ``suffixes`` that exists, or ``None``."""
    for suffix in suffixes:
        path = folder / f"{stem}{suffix}"
        if path.is_file():
            return path
    return None


def require_folder(folder: Path, corpus: str) -> Path:
    """``folder``, or an :class:`InputError` saying the root is not a ``corpus`` release."""
    if not folder.is_dir():
        raise InputError(folder, f"missing folder: the root is not a {corpus} release")
    return folder
