"""The utterance record every corpus reader produces and every later stage consumes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class Utterance:
    """One labelled (or unlabelled) utterance.

    ``audio`` is a path; ``start``/``end`` (seconds) select a segment of it for corpora
    whose utterances live inside longer recordings. ``label`` is a canonical emotion name
    (see :mod:`emotrace.labels`) or ``None`` when unknown. ``group`` is the corpus's
    natural grouping for folds (IEMOCAP session, MELD dialogue, RAVDESS fold). ``video``
    is the face video; ``video_start``/``video_end`` select a segment of it when it is a
    longer recording than ``audio`` (IEMOCAP films whole dialogues but ships sentence wavs),
    so the audio segment and the video segment never have to share one timeline.
    """

    id: str
    audio: str | None
    label: str | None
    speaker: str
    dataset: str = ""
    group: str | None = None
    start: float | None = None
    end: float | None = None
    transcript: str | None = None
    video: str | None = None
    video_start: float | None = None
    video_end: float | None = None

    def with_label(self, label: str | None) -> Utterance:
        return replace(self, label=label)

    def to_dict(self) -> dict:
        return asdict(self)
