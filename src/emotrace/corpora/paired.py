"""RAVDESS audio paired with MELD text of the same emotion: a fusion benchmark on real data.

No corpus here pairs real audio with emotionally informative text (RAVDESS actors say two
fixed sentences; MELD's audio is not available), so, in the spirit of AV-MNIST, each
RAVDESS speech clip is paired with a MELD utterance of the same emotion. Fusion can then
be measured honestly: it should beat the better single modality.

The root holds ``ravdess/`` and ``meld/`` in their release layouts (the shared data root).
The classes are the seven both corpora share (neutral, happy, sad, angry, fearful,
disgusted, surprised); RAVDESS *calm* has no MELD counterpart and is dropped, so the full
corpus gives 1248 pairs: 96 neutral and 192 of each other class, 52 per actor.

Pairing, deterministic for a seed (``load_corpus``'s ``read_seed``, by default its ``seed``;
``corpus.read_seed`` in an experiment config varies the pairing apart from the training seed):

* MELD dialogues (all three official splits) are dealt into one group per RAVDESS actor
  by a group k-fold over dialogues stratified by emotion, and an actor's clips are paired
  only with utterances of its own group. Every speaker-independent split of the actors
  (test, validation, training) is therefore also a split of MELD dialogues: no text
  utterance or dialogue is on both sides.
* Within an actor and a class, MELD utterances are drawn without replacement; only when a
  group has fewer utterances of a class than the actor has clips (fearful and disgusted
  are scarce in MELD) are some reused, inside that group. The folds' description counts
  the reuses (none with seed 0 on the full corpus).

The noisy-text control (a share of training pairs given text of another emotion) is not drawn
here: which pairs are training pairs depends on the fold, and test pairs must keep their own
text. It is the training option ``data.noisy_text`` (:func:`emotrace.training.data.with_noisy_text`),
applied per fold to the training side only.

Limitation: MELD's main characters speak in nearly every dialogue, so text speakers are
shared across splits even though dialogues are not.

Ids are ``<RAVDESS id>+<MELD id>``; audio, speaker (the actor) and label come from the
clip, the transcript from the MELD utterance; ``group`` is the clip's RAVDESS fold.
Folds are RAVDESS's (the EmoBox folds by actor).
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from emotrace.corpora import meld, ravdess
from emotrace.corpora.folds import Folds
from emotrace.corpora.reader import Reader, require_folder
from emotrace.corpora.records import Utterance
from emotrace.errors import BatchReport, InputError
from emotrace.labels import MELD_7

NAME = "ravdess-meld"
#: The emotions both corpora have; RAVDESS calm is not among them.
CLASSES: tuple[str, ...] = MELD_7.classes
#: Separates the RAVDESS and MELD ids in a pair's id.
SEPARATOR = "+"


def read_paired(root: Path, report: BatchReport, *, seed: int = 0) -> list[Utterance]:
    """RAVDESS speech clips of the shared classes, each with a same-emotion MELD text."""
    clips = [
        clip for clip in ravdess.read_ravdess(require_folder(root / "ravdess", NAME), report) if clip.label in CLASSES
    ]
    texts = [
        text
        for text in meld.read_meld(require_folder(root / "meld", NAME), report)
        if text.label in CLASSES and text.transcript
    ]
    actors = sorted({clip.speaker for clip in clips})
    dialogues = len({text.group for text in texts})
    if not 2 <= len(actors) <= dialogues:
        raise InputError(
            root,
            f"{len(actors)} RAVDESS actors, {dialogues} MELD dialogues: pairing needs at "
            "least 2 actors and a dialogue per actor",
        )
    try:
        groups = dialogue_groups(texts, len(actors), seed)
    except ValueError as error:  # too few utterances of every class to stratify
        raise InputError(root / "meld", f"cannot deal dialogues into {len(actors)} groups: {error}") from None
    pools: dict[tuple[int, str], list[Utterance]] = defaultdict(list)
    for text, group in zip(texts, groups):
        pools[group, text.label].append(text)
    clips_of: dict[tuple[str, str], list[Utterance]] = defaultdict(list)
    for clip in clips:
        clips_of[clip.speaker, clip.label].append(clip)

    pairs = []
    for (actor, label), actor_clips in sorted(clips_of.items()):
        pool = pools[actors.index(actor), label]
        if not pool:
            raise InputError(root / "meld", f"no {label} utterance in the dialogues of {actor}")
        rng = random.Random(f"{seed}:{actor}:{label}")
        drawn = rng.sample(pool, min(len(pool), len(actor_clips)))
        drawn += rng.choices(pool, k=len(actor_clips) - len(drawn))  # reuse only when short
        for clip, text in zip(sorted(actor_clips, key=lambda u: u.id), drawn):
            pairs.append(
                replace(
                    clip,
                    id=f"{clip.id}{SEPARATOR}{text.id}",
                    transcript=text.transcript,
                    dataset=NAME,
                )
            )
    return sorted(pairs, key=lambda u: u.id)


def dialogue_groups(texts: Sequence[Utterance], n_groups: int, seed: int) -> list[int]:
    """The group (0 to ``n_groups - 1``) of each MELD utterance: whole dialogues, by emotion."""
    splitter = StratifiedGroupKFold(n_splits=n_groups, shuffle=True, random_state=seed)
    labels = [text.label for text in texts]
    dialogues = [text.group for text in texts]
    groups = np.empty(len(texts), dtype=int)
    for group, (_, members) in enumerate(splitter.split(np.zeros(len(texts)), labels, dialogues)):
        groups[members] = group
    return groups.tolist()


def meld_id(pair: Utterance) -> str:
    """The id of the MELD utterance whose text a pair carries."""
    return pair.id.split(SEPARATOR, 1)[1]


def paired_folds(root: Path, utterances: Sequence[Utterance], seed: int) -> Folds:
    folds = ravdess.ravdess_folds(root / "ravdess", utterances, seed)
    uses = Counter(meld_id(pair) for pair in utterances)
    reused = sum(count - 1 for count in uses.values())
    return replace(
        folds,
        description=f"{folds.description}; RAVDESS calm dropped (7 shared classes); MELD text "
        f"from dialogues dealt per actor, {reused} reuses of a MELD utterance",
    )


READER = Reader(
    name=NAME,
    description="RAVDESS speech paired with same-emotion MELD text (calm dropped), 7 emotions, "
    "text dialogues disjoint across actors",
    read=read_paired,
    folds=paired_folds,
    label_sets=(MELD_7,),
    seeded=True,
)
