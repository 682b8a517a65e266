"""Corpora: one reader per corpus, and :func:`load_corpus`, the one way to load any of them.

``load_corpus(name, root)`` reads the corpus in its release layout, maps its labels
through a label set (the corpus's standard one unless told otherwise; ``"all"`` keeps
every label the corpus has), drops and counts what the label set leaves out, and builds
the corpus's standard speaker-independent folds over what remains. ``"ravdess-meld"`` is
not a release but a benchmark built from two: RAVDESS clips paired with same-emotion MELD
text (see :mod:`emotrace.corpora.paired`); its root holds ``ravdess/`` and ``meld/``.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from emotrace.corpora import (
    ased,
    cremad,
    emobox,
    emodb,
    iemocap,
    manifest,
    meld,
    nemo,
    paired,
    ravdess,
    savee,
    tess,
)
from emotrace.corpora.folds import Fold, Folds, speaker_dependent_folds
from emotrace.corpora.reader import Reader
from emotrace.corpora.records import Utterance
from emotrace.errors import BatchReport, InputError
from emotrace.labels import LABEL_SETS, LabelSet, open_label_set

#: Every corpus emotrace reads, by name; ``"manifest"`` takes a manifest file as root.
CORPORA: Mapping[str, Reader] = {
    reader.name: reader
    for reader in (
        ravdess.READER,
        iemocap.READER,
        cremad.READER,
        meld.READER,
        emodb.READER,
        savee.READER,
        tess.READER,
        ased.READER,
        nemo.READER,
        paired.READER,
        manifest.READER,
        emobox.READER,
    )
}
#: The label-set name that keeps every label the corpus provides.
ALL_LABELS = "all"
#: What a dropped utterance without any label is counted as.
UNLABELLED = "unlabelled"


@dataclass(frozen=True)
class CorpusData:
    """A loaded corpus: utterances with labels in ``label_set``, and the folds over them.

    ``dropped`` counts the utterances the label set left out, by their original label.
    ``parts`` are the corpora a combination of several is made of (see
    :mod:`emotrace.corpora.combined`); empty for a single corpus.
    """

    name: str
    label_set: LabelSet
    utterances: tuple[Utterance, ...]
    folds: Folds
    dropped: Mapping[str, int]
    parts: tuple[CorpusData, ...] = ()


def load_corpus(
    name: str,
    root: str | Path,
    label_set: LabelSet | str | None = None,
    report: BatchReport | None = None,
    *,
    speaker_dependent: bool = False,
    seed: int = 0,
    read_seed: int | None = None,
) -> CorpusData:
    """Read corpus ``name`` at ``root`` (a folder; a file for ``"manifest"``).

    ``label_set`` is a :class:`LabelSet`, a label-set name, ``"all"``, or None for the
    corpus's default. ``seed`` draws the validation speakers (and the speakers of k-fold
    corpora). ``read_seed`` (default: ``seed``) draws what a seeded reader draws when it
    reads, such as the text paired with each clip in ``"ravdess-meld"``; giving it apart
    from ``seed`` varies that draw independently of the folds. ``speaker_dependent=True``
    replaces the standard folds by a stratified 5-fold over utterances, labelled
    ``speaker-dependent``. Files that break the corpus's conventions go to ``report``; a
    missing root, an unknown corpus or label set, or a root with no utterances at all raise
    :class:`InputError`.
    """
    reader = CORPORA.get(name)
    if reader is None:
        raise InputError(f"corpus {name!r}", f"unknown; known: {', '.join(CORPORA)}")
    root = Path(os.path.abspath(root))
    if not root.exists():
        raise InputError(root, "no such file or folder")
    report = report if report is not None else BatchReport()
    if reader.seeded:
        read = reader.read(root, report, seed=seed if read_seed is None else read_seed)
    else:
        read = reader.read(root, report)
    if not read:
        raise InputError(root, f"no {name} utterances found ({len(report.skipped)} files skipped)")
    labels = _label_set(reader, label_set, read)
    kept: list[Utterance] = []
    dropped: Counter[str] = Counter()
    for utterance in read:
        mapped = labels.map(utterance.label) if utterance.label is not None else None
        if mapped is None:
            dropped[utterance.label or UNLABELLED] += 1
        else:
            kept.append(utterance.with_label(mapped))
    report.done += len(kept)
    folds = speaker_dependent_folds(kept, seed=seed) if speaker_dependent else reader.folds(root, kept, seed)
    return CorpusData(name, labels, tuple(kept), folds, dict(dropped))


def _label_set(reader: Reader, chosen: LabelSet | str | None, utterances: list[Utterance]) -> LabelSet:
    if isinstance(chosen, LabelSet):
        return chosen
    if chosen == ALL_LABELS or (chosen is None and not reader.label_sets):
        return open_label_set([u.label for u in utterances if u.label is not None], ALL_LABELS)
    if chosen is None:
        return reader.label_sets[0]
    if chosen not in LABEL_SETS:
        known = ", ".join([*LABEL_SETS, ALL_LABELS])
        raise InputError(f"label set {chosen!r}", f"unknown; known: {known}")
    return LABEL_SETS[chosen]


__all__ = [
    "ALL_LABELS",
    "CORPORA",
    "CorpusData",
    "Fold",
    "Folds",
    "Reader",
    "Utterance",
    "load_corpus",
]
