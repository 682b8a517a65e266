"""Several corpora as one: a shared label vocabulary, speaker names kept apart, combined folds.

A combination keeps every corpus's own label set: its ``label_set`` is the union of theirs
(in the canonical order), and :func:`class_sets` says which classes each corpus has, so
training can mask the others out of each item's loss. Speakers (and groups) are renamed
``<corpus>/<speaker>`` so that two corpora's "01" never merge, and every utterance's
``dataset`` is its corpus's name. Folds come in two kinds:

* **within** (default): fold *k* tests fold *k* of every corpus that has one, with that
  corpus's own validation speakers; a corpus without a fold *k* trains on it whole but for
  its seeded validation share. Speaker-independent when every corpus's folds are.
* **held out** (cross-corpus): each fold tests every speaker of the corpora it names
  (``"ased"`` or ``"ased+nemo"``); the other corpora train it, each giving a seeded share
  of its speakers to validation, so model selection hears every training corpus and
  never the tested ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType

from emotrace.corpora import CorpusData
from emotrace.corpora.folds import CROSS_CORPUS, SPEAKER_INDEPENDENT, Fold, Folds, all_data_fold
from emotrace.corpora.records import Utterance
from emotrace.errors import InputError
from emotrace.labels import EMOTIONS, LabelSet

SEPARATOR = "/"
#: how a held-out entry joins the corpora one fold tests
JOIN = "+"


def combine(parts: Sequence[CorpusData], held_out: Sequence[str] | None = None, seed: int = 0) -> CorpusData:
    """One :class:`CorpusData` of ``parts``: union labels, renamed speakers, combined folds.

    Raises :class:`InputError` when two parts share a name or an utterance id (feature
    stores are keyed by id), or when a part's folds are not by speaker.
    """
    names = [part.name for part in parts]
    if len(set(names)) != len(names):
        raise InputError(f"corpora {names}", "each corpus may appear once")
    utterances = tuple(_renamed(u, part.name) for part in parts for u in part.utterances)
    seen: dict[str, str] = {}
    for utterance in utterances:
        if seen.setdefault(utterance.id, utterance.dataset) != utterance.dataset:
            raise InputError(
                f"utterance {utterance.id}",
                f"is in both {seen[utterance.id]} and {utterance.dataset}; "
                "ids must be unique across the corpora trained together",
            )
    classes = {label for part in parts for label in part.label_set.classes}
    label_set = LabelSet(
        "+".join(part.label_set.name for part in parts),
        tuple(e for e in EMOTIONS if e in classes),
        MappingProxyType({}),
    )
    folds = held_out_folds(parts, held_out, seed) if held_out else within_folds(parts, seed)
    dropped: dict[str, int] = {}
    for part in parts:
        for label, count in part.dropped.items():
            dropped[f"{part.name}{SEPARATOR}{label}"] = count
    return CorpusData(JOIN.join(names), label_set, utterances, folds, dropped, tuple(parts))


def class_sets(corpus: CorpusData) -> dict[str, tuple[str, ...]]:
    """Corpus name -> the classes it has: each part's for a combination, else the corpus's own."""
    parts = corpus.parts or (corpus,)
    return {part.name: part.label_set.classes for part in parts}


def final_fold(corpus: CorpusData, seed: int = 0) -> Fold:
    """No test side; a seeded validation share of every corpus's speakers (for a final model)."""
    if not corpus.parts:
        return all_data_fold(corpus.utterances, seed)
    return Fold("all", (), _validation_shares(corpus.parts, seed))


def within_folds(parts: Sequence[CorpusData], seed: int) -> Folds:
    _require_speaker_folds(parts)
    fold_names = list(dict.fromkeys(fold.name for part in parts for fold in part.folds))
    folds = []
    for fold_name in fold_names:
        test: list[str] = []
        val: list[str] = []
        for part in parts:
            fold = next((f for f in part.folds if f.name == fold_name), None)
            chosen = fold if fold is not None else all_data_fold(part.utterances, seed)
            test += [_name(part.name, s) for s in (fold.test if fold is not None else ())]
            val += [_name(part.name, s) for s in chosen.val]
        folds.append(Fold(fold_name, tuple(test), tuple(val)))
    protocols = {part.folds.protocol for part in parts}
    protocol = SPEAKER_INDEPENDENT if protocols == {SPEAKER_INDEPENDENT} else "; ".join(sorted(protocols))
    description = "; ".join(f"{part.name}: {part.folds.description}" for part in parts)
    return Folds(protocol, f"each corpus's own folds, fold k testing fold k of each ({description})", tuple(folds))


def held_out_folds(parts: Sequence[CorpusData], held_out: Sequence[str], seed: int) -> Folds:
    by_name = {part.name: part for part in parts}
    folds = []
    for entry in held_out:
        tested = entry.split(JOIN)
        unknown = sorted(set(tested) - set(by_name))
        if unknown:
            raise InputError(f"held_out entry {entry!r}", f"names {unknown}, not among the corpora {sorted(by_name)}")
        training = [part for part in parts if part.name not in tested]
        if not training:
            raise InputError(f"held_out entry {entry!r}", "leaves no corpus to train on")
        test = tuple(_name(name, u.speaker) for name in tested for u in by_name[name].utterances)
        folds.append(Fold(entry, tuple(sorted(set(test))), _validation_shares(training, seed)))
    validating = ", ".join(f"{part.name} {len(all_data_fold(part.utterances, seed).val)}" for part in parts)
    description = (
        f"leave-corpus-out: each fold tests every speaker of the corpora it names, the other corpora "
        f"train it; validation speakers drawn from each training corpus (when it trains: {validating})"
    )
    return Folds(CROSS_CORPUS, description, tuple(folds))


def _validation_shares(parts: Sequence[CorpusData], seed: int) -> tuple[str, ...]:
    return tuple(_name(part.name, s) for part in parts for s in all_data_fold(part.utterances, seed).val)


def _require_speaker_folds(parts: Sequence[CorpusData]) -> None:
    for part in parts:
        units = {fold.unit for fold in part.folds}
        if units - {"speaker"}:
            raise InputError(
                f"corpus {part.name}",
                f"has folds by {', '.join(sorted(units))}; corpora are combined "
                "by speaker-independent folds only (use held_out to test it whole)",
            )


def _name(corpus: str, value: str | None) -> str:
    return f"{corpus}{SEPARATOR}{value}"


def _renamed(utterance: Utterance, corpus: str) -> Utterance:
    group = _name(corpus, utterance.group) if utterance.group is not None else None
    return replace(utterance, speaker=_name(corpus, utterance.speaker), group=group, dataset=corpus)


def corpus_index(corpus: CorpusData) -> Mapping[str, int]:
    """Corpus name -> its position among the parts (the row of its class mask)."""
    return {name: index for index, name in enumerate(class_sets(corpus))}
