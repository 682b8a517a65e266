"""Cross-validation folds: who is tested, who validates, who trains.

Speaker-independent folds are the default: a fold names its test speakers, and its
validation speakers are drawn (seeded) from the training side, so neither training nor
model selection ever hears a test speaker. About 10% of the training speakers validate
(2 of RAVDESS's 20 training actors, 1 of IEMOCAP's 8 training speakers); with a single
training speaker (TESS) there is no speaker-independent validation set and ``val`` is
empty. Corpora with an official split (MELD) assign whole groups (dialogues) instead, and
a speaker-dependent split exists only on explicit request. Every :class:`Folds` carries
its ``protocol`` so that a report can never show a number without saying how it was made.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold, StratifiedKFold

from emotrace.corpora.records import Utterance

#: What a fold's ``test`` and ``val`` entries name.
Unit = Literal["speaker", "group", "utterance"]

SPEAKER_INDEPENDENT = "speaker-independent"
SPEAKER_DEPENDENT = "speaker-dependent"
#: A corpus's own train/dev/test split; MELD's shares speakers between its parts.
OFFICIAL_SPLIT = "official-split"
#: Whole corpora tested by a model trained on others (see :mod:`emotrace.corpora.combined`).
CROSS_CORPUS = "cross-corpus"

#: Share of the training side (speakers, or utterances when speaker-dependent) that validates.
VAL_FRACTION = 0.1


@dataclass(frozen=True)
class Fold:
    """One train/validation/test partition.

    ``test`` and ``val`` list values of ``unit`` (speaker names, group names or utterance
    ids); every other utterance trains.
    """

    name: str
    test: tuple[str, ...]
    val: tuple[str, ...] = ()
    unit: Unit = "speaker"

    def split(self, utterances: Iterable[Utterance]) -> tuple[list[Utterance], list[Utterance], list[Utterance]]:
        """``(train, val, test)``, each in the order of ``utterances``."""
        test, val = set(self.test), set(self.val)
        train_part: list[Utterance] = []
        val_part: list[Utterance] = []
        test_part: list[Utterance] = []
        for utterance in utterances:
            value = _unit_value(utterance, self.unit)
            if value in test:
                test_part.append(utterance)
            elif value in val:
                val_part.append(utterance)
            else:
                train_part.append(utterance)
        return train_part, val_part, test_part


@dataclass(frozen=True)
class Folds:
    """A corpus's folds, labelled with the protocol they implement."""

    protocol: str
    description: str
    folds: tuple[Fold, ...]

    def __iter__(self) -> Iterator[Fold]:
        return iter(self.folds)

    def __len__(self) -> int:
        return len(self.folds)

    def __getitem__(self, index: int) -> Fold:
        return self.folds[index]


def speaker_folds(
    utterances: Sequence[Utterance],
    test_speakers: Mapping[str, Iterable[str]],
    description: str,
    *,
    seed: int = 0,
    val_fraction: float = VAL_FRACTION,
) -> Folds:
    """Speaker-independent folds from given test speakers (fold name -> speakers)."""
    speakers = sorted({u.speaker for u in utterances})
    folds = []
    for name, tested in test_speakers.items():
        test = tuple(sorted(set(tested)))
        training = [speaker for speaker in speakers if speaker not in test]
        folds.append(Fold(name, test, _validation(training, name, seed, val_fraction)))
    return Folds(SPEAKER_INDEPENDENT, description, tuple(folds))


def leave_one_speaker_out(
    utterances: Sequence[Utterance], *, seed: int = 0, val_fraction: float = VAL_FRACTION
) -> Folds:
    """One fold per speaker: the protocol for corpora with a handful of speakers."""
    speakers = sorted({u.speaker for u in utterances})
    return speaker_folds(
        utterances,
        {speaker: [speaker] for speaker in speakers},
        f"leave-one-speaker-out, {len(speakers)} folds",
        seed=seed,
        val_fraction=val_fraction,
    )


def leave_one_group_out(utterances: Sequence[Utterance], *, seed: int = 0, val_fraction: float = VAL_FRACTION) -> Folds:
    """One fold per group (IEMOCAP session), tested on all of that group's speakers.

    Raises ``ValueError`` when a speaker appears in two groups: holding out one group
    would then leak that speaker into training.
    """
    speakers_of: dict[str, set[str]] = defaultdict(set)
    group_of: dict[str, str] = {}
    for utterance in utterances:
        if utterance.group is None:
            raise ValueError(f"utterance {utterance.id} has no group")
        if group_of.setdefault(utterance.speaker, utterance.group) != utterance.group:
            raise ValueError(
                f"speaker {utterance.speaker} is in groups {group_of[utterance.speaker]} and "
                f"{utterance.group}: leave-one-group-out would not be speaker-independent"
            )
        speakers_of[utterance.group].add(utterance.speaker)
    groups = sorted(speakers_of)
    return speaker_folds(
        utterances,
        {group: speakers_of[group] for group in groups},
        f"leave-one-group-out, {len(groups)} folds ({', '.join(groups)})",
        seed=seed,
        val_fraction=val_fraction,
    )


def speaker_kfold(
    utterances: Sequence[Utterance],
    n_folds: int = 5,
    *,
    seed: int = 0,
    val_fraction: float = VAL_FRACTION,
) -> Folds:
    """Group k-fold by speaker, stratified by label (scikit-learn's StratifiedGroupKFold).

    A class with fewer utterances than folds cannot be stratified; then the folds are
    scikit-learn's GroupKFold (balanced sizes, no seed). Uses fewer folds when there are
    fewer speakers than ``n_folds``, and none with fewer than two speakers (nothing would
    be left to train on).
    """
    speakers = sorted({u.speaker for u in utterances})
    if len(speakers) < 2:
        return Folds(SPEAKER_INDEPENDENT, "no folds: fewer than 2 speakers", ())
    n_splits = min(n_folds, len(speakers))
    groups = [u.speaker for u in utterances]
    labels = [u.label or "" for u in utterances]
    splitter: StratifiedGroupKFold | GroupKFold
    if min(Counter(labels).values()) >= n_splits:
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        method = f"stratified group {n_splits}-fold by speaker (seed {seed})"
    else:
        splitter = GroupKFold(n_splits=n_splits)
        method = f"group {n_splits}-fold by speaker (a class is too small to stratify)"
    test_speakers = {
        f"fold{number}": {groups[index] for index in test_index}
        for number, (_, test_index) in enumerate(splitter.split(np.zeros(len(utterances)), labels, groups), start=1)
    }
    return speaker_folds(
        utterances,
        test_speakers,
        method,
        seed=seed,
        val_fraction=val_fraction,
    )


def official_split(test: Iterable[str], val: Iterable[str], description: str, *, unit: Unit = "group") -> Folds:
    """A corpus's one official partition (MELD: test and dev dialogues) as a single fold."""
    fold = Fold("official", tuple(sorted(set(test))), tuple(sorted(set(val))), unit)
    return Folds(OFFICIAL_SPLIT, description, (fold,))


def speaker_dependent_folds(
    utterances: Sequence[Utterance],
    n_folds: int = 5,
    *,
    seed: int = 0,
    val_fraction: float = VAL_FRACTION,
) -> Folds:
    """Stratified k-fold over utterances, ignoring speakers: only on explicit request.

    Test speakers are also heard in training, which flatters every number; the folds say
    so in their ``protocol``. Validation is a seeded share of each fold's training side.
    """
    ids = [u.id for u in utterances]
    labels = [u.label or "" for u in utterances]
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = []
    for number, (train_index, test_index) in enumerate(splitter.split(ids, labels), start=1):
        name = f"fold{number}"
        training = sorted(ids[index] for index in train_index)
        n_val = round(val_fraction * len(training))
        val = random.Random(f"{seed}:{name}").sample(training, n_val)
        folds.append(Fold(name, tuple(sorted(ids[i] for i in test_index)), tuple(sorted(val)), "utterance"))
    description = f"stratified {n_folds}-fold over utterances (seed {seed}); speakers shared"
    return Folds(SPEAKER_DEPENDENT, description, tuple(folds))


def all_data_fold(utterances: Sequence[Utterance], seed: int = 0, val_fraction: float = VAL_FRACTION) -> Fold:
    """No test side: every speaker trains except a seeded validation share (for the final
    model of a run, whose test figures come from the cross-validation folds)."""
    speakers = sorted({u.speaker for u in utterances})
    return Fold("all", (), _validation(speakers, "all", seed, val_fraction), "speaker")


def _validation(training: list[str], fold: str, seed: int, fraction: float) -> tuple[str, ...]:
    """Seeded draw of validation speakers among a fold's training speakers."""
    if len(training) < 2:
        return ()
    count = max(1, round(fraction * len(training)))
    return tuple(sorted(random.Random(f"{seed}:{fold}").sample(training, count)))


def _unit_value(utterance: Utterance, unit: Unit) -> str | None:
    if unit == "speaker":
        return utterance.speaker
    if unit == "group":
        return utterance.group
    return utterance.id
