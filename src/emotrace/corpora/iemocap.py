"""IEMOCAP: five sessions of dyadic dialogues, two actors each, labelled per sentence.

Read from the release layout of each ``SessionN/``:

- ``dialog/EmoEvaluation/<dialog>.txt``: one header line per sentence,
  ``[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]``
  (the consensus label), followed by per-evaluator lines (``C-E1: ...``, ``A-E2: ...``)
  that are not the label and are ignored;
- ``dialog/transcriptions/<dialog>.txt``: ``Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.``
  (lines without an utterance id are ignored);
- ``sentences/wav/<dialog>/<utterance>.wav``: the sentence audio;
- ``dialog/avi/DivX/<dialog>.avi`` (optional): the dialogue's video, so an utterance's
  video is that file with ``video_start``/``video_end`` from the header line.

The speaker is the session plus the gender letter of the utterance id's last part
(``Ses01F_impro01_M000`` -> ``Ses01_M``): in every dialogue both actors of the session
speak, so the letter in the dialogue name does not identify the speaker. ``xxx`` (the
evaluators did not agree) leaves the utterance unlabelled. The default label set is the
field's four classes with excited merged into happy (5531 utterances); folds are
leave-one-session-out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from emotrace.corpora.folds import Folds, leave_one_group_out
from emotrace.corpora.reader import Reader, find_media
from emotrace.corpora.records import Utterance
from emotrace.errors import BatchReport, InputError
from emotrace.labels import IEMOCAP_4, IEMOCAP_6

_SESSION = re.compile(r"Session\d+")
_EVALUATION = re.compile(r"\[(\d+(?:\.\d+)?) - (\d+(?:\.\d+)?)\]\t(\S+)\t(\S+)\t\[")
_TRANSCRIPTION = re.compile(r"(Ses\S+) \[\d+(?:\.\d+)?-\d+(?:\.\d+)?\]:(.*)")
#: Raw IEMOCAP codes -> canonical labels; ``xxx`` (no majority) is no label at all.
CODES: Mapping[str, str | None] = {
    "neu": "neutral",
    "hap": "happy",
    "exc": "excited",
    "sad": "sad",
    "ang": "angry",
    "fru": "frustrated",
    "fea": "fearful",
    "sur": "surprised",
    "dis": "disgusted",
    "oth": "other",
    "xxx": None,
}


def speaker_of(utterance_id: str) -> str:
    """``Ses01F_impro01_M000`` -> ``Ses01_M``."""
    return f"{utterance_id[:5]}_{utterance_id.rsplit('_', 1)[1][0]}"


def read_iemocap(root: Path, report: BatchReport) -> list[Utterance]:
    sessions = sorted(p for p in root.iterdir() if p.is_dir() and _SESSION.fullmatch(p.name))
    if not sessions:
        raise InputError(root, "no SessionN folders: the root is not an IEMOCAP release")
    utterances = []
    for session in sessions:
        evaluations = session / "dialog" / "EmoEvaluation"
        if not evaluations.is_dir():
            report.skip(InputError(evaluations, "missing folder of label files"))
            continue
        for label_file in sorted(evaluations.glob("*.txt")):
            if not label_file.name.startswith("."):
                utterances += _dialog(session, label_file, report)
    return utterances


def _dialog(session: Path, label_file: Path, report: BatchReport) -> list[Utterance]:
    dialog = label_file.stem
    transcripts = _transcripts(session / "dialog" / "transcriptions" / f"{dialog}.txt")
    video = session / "dialog" / "avi" / "DivX" / f"{dialog}.avi"
    has_video = video.is_file()
    wav_folder = session / "sentences" / "wav" / dialog
    utterances = []
    lines = label_file.read_text(encoding="utf-8", errors="replace").splitlines()
    for number, line in enumerate(lines, start=1):
        match = _EVALUATION.match(line)
        if match is None:
            continue
        start, end, utterance_id, code = match.groups()
        if code not in CODES:
            report.skip(InputError(f"{label_file}:{number}", f"unknown emotion code {code!r}"))
            continue
        audio = find_media(wav_folder, utterance_id)
        if audio is None:
            report.skip(InputError(wav_folder / f"{utterance_id}.wav", "missing sentence audio"))
            continue
        utterances.append(
            Utterance(
                id=utterance_id,
                audio=str(audio),
                label=CODES[code],
                speaker=speaker_of(utterance_id),
                dataset="iemocap",
                group=session.name,
                transcript=transcripts.get(utterance_id),
                video=str(video) if has_video else None,
                video_start=float(start) if has_video else None,
                video_end=float(end) if has_video else None,
            )
        )
    return utterances


def _transcripts(path: Path) -> dict[str, str]:
    """Utterance id -> transcript; empty when the dialogue has no transcription file."""
    if not path.is_file():
        return {}
    transcripts = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = _TRANSCRIPTION.fullmatch(line.strip())
        if match and match.group(2).strip():
            transcripts[match.group(1)] = match.group(2).strip()
    return transcripts


def iemocap_folds(root: Path, utterances: Sequence[Utterance], seed: int) -> Folds:
    return leave_one_group_out(utterances, seed=seed)


READER = Reader(
    name="iemocap",
    description="IEMOCAP sentences, 5 sessions x 2 actors; default 4 classes (excited -> happy)",
    read=read_iemocap,
    folds=iemocap_folds,
    label_sets=(IEMOCAP_4, IEMOCAP_6),
)
