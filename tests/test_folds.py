"""Fold builders: test speakers never train or validate, seeded validation, labelled protocols."""

from __future__ import annotations

from pathlib import Path

import pytest

from emotrace.corpora import load_corpus
from emotrace.corpora.folds import (
    SPEAKER_DEPENDENT,
    SPEAKER_INDEPENDENT,
    Fold,
    leave_one_group_out,
    leave_one_speaker_out,
    official_split,
    speaker_dependent_folds,
    speaker_folds,
    speaker_kfold,
)
from emotrace.corpora.records import Utterance
from test_corpora import build_cremad

LABELS = ("neutral", "happy", "sad", "angry")


def corpus(speakers: int, per_speaker: int = 8, groups: int = 1) -> list[Utterance]:
    """``speakers`` speakers with ``per_speaker`` utterances each, labels cycling."""
    return [
        Utterance(
            id=f"s{s:02d}_{i}",
            audio=None,
            label=LABELS[(s + i) % len(LABELS)],
            speaker=f"s{s:02d}",
            group=f"g{s % groups}",
            transcript="words",
        )
        for s in range(speakers)
        for i in range(per_speaker)
    ]


def test_fold_split_by_speaker_group_or_utterance() -> None:
    utterances = corpus(4, per_speaker=2, groups=2)
    train, val, test = Fold("f", test=("s00",), val=("s01",)).split(utterances)
    assert [u.id for u in test] == ["s00_0", "s00_1"]
    assert [u.id for u in val] == ["s01_0", "s01_1"]
    assert [u.id for u in train] == ["s02_0", "s02_1", "s03_0", "s03_1"]
    train, val, test = Fold("f", test=("g1",), unit="group").split(utterances)
    assert ([u.speaker for u in test], val) == (["s01", "s01", "s03", "s03"], [])
    train, val, test = Fold("f", test=("s03_1",), val=("s00_0",), unit="utterance").split(utterances)
    assert ([u.id for u in test], [u.id for u in val], len(train)) == (["s03_1"], ["s00_0"], 6)


def test_validation_speakers_come_from_training_speakers_and_follow_the_seed() -> None:
    utterances = corpus(24)
    tests = {f"fold{n}": [f"s{s:02d}" for s in range(4 * n, 4 * n + 4)] for n in range(6)}
    folds = speaker_folds(utterances, tests, "six folds", seed=0)
    assert folds.protocol == SPEAKER_INDEPENDENT and len(folds) == 6
    for fold in folds:
        assert len(fold.test) == 4 and len(fold.val) == 2  # 10% of 20 training speakers
        assert not set(fold.val) & set(fold.test)
        train, val, test = fold.split(utterances)
        speakers = [{u.speaker for u in part} for part in (train, val, test)]
        assert not (speakers[0] & speakers[1]) and not (speakers[0] & speakers[2])
        assert len(train) + len(val) + len(test) == len(utterances)
    assert speaker_folds(utterances, tests, "again", seed=0).folds == folds.folds
    other_seed = speaker_folds(utterances, tests, "other", seed=1)
    assert [f.val for f in other_seed] != [f.val for f in folds]
    assert [f.test for f in other_seed] == [f.test for f in folds]


def test_leave_one_group_out_tests_each_group_and_refuses_shared_speakers() -> None:
    utterances = corpus(10, groups=5)
    folds = leave_one_group_out(utterances, seed=3)
    assert [(f.name, f.test) for f in folds] == [(f"g{g}", (f"s{g:02d}", f"s{g + 5:02d}")) for g in range(5)]
    assert all(len(f.val) == 1 and not set(f.val) & set(f.test) for f in folds)
    shared = [*utterances, Utterance("x", None, "sad", "s00", group="g1", transcript="w")]
    with pytest.raises(ValueError, match="s00 is in groups g0 and g1"):
        leave_one_group_out(shared)


def test_leave_one_speaker_out() -> None:
    folds = leave_one_speaker_out(corpus(3))
    assert [(f.name, f.test) for f in folds] == [
        ("s00", ("s00",)),
        ("s01", ("s01",)),
        ("s02", ("s02",)),
    ]
    assert [len(f.val) for f in folds] == [1, 1, 1]


def test_speaker_kfold_is_deterministic_disjoint_and_covers_every_speaker() -> None:
    utterances = corpus(23)
    folds = speaker_kfold(utterances, 5, seed=7)
    assert len(folds) == 5 and folds.protocol == SPEAKER_INDEPENDENT
    tested = [speaker for fold in folds for speaker in fold.test]
    assert sorted(tested) == sorted({u.speaker for u in utterances})
    assert speaker_kfold(utterances, 5, seed=7).folds == folds.folds
    assert speaker_kfold(utterances, 5, seed=8).folds != folds.folds
    assert all(len(f.val) == 2 and not set(f.val) & set(f.test) for f in folds)  # 10% of ~18


def test_speaker_kfold_with_few_speakers() -> None:
    three = speaker_kfold(corpus(3), 5)  # fewer speakers than folds: one fold per speaker
    assert sorted(f.test for f in three) == [("s00",), ("s01",), ("s02",)]
    none = speaker_kfold(corpus(1), 5)
    assert len(none) == 0 and "fewer than 2 speakers" in none.description


def test_speaker_dependent_folds_are_labelled_and_test_every_utterance_once() -> None:
    utterances = corpus(3, per_speaker=20)
    folds = speaker_dependent_folds(utterances, 5, seed=0)
    assert folds.protocol == SPEAKER_DEPENDENT
    tested = sorted(i for fold in folds for i in fold.test)
    assert tested == sorted(u.id for u in utterances)
    for fold in folds:
        train, val, test = fold.split(utterances)
        assert (len(train), len(val), len(test)) == (43, 5, 12)
        assert {u.speaker for u in test} == {u.speaker for u in train}  # what makes it dependent


def test_official_split_is_one_fold_of_groups() -> None:
    folds = official_split(["test_dia1", "test_dia0"], ["dev_dia0"], "the split")
    assert folds.protocol == "official-split"
    assert folds.folds == (Fold("official", ("test_dia0", "test_dia1"), ("dev_dia0",), "group"),)


def test_load_corpus_gives_speaker_dependent_folds_only_on_request(tmp_path: Path) -> None:
    root = build_cremad(tmp_path / "cremad")
    assert load_corpus("cremad", root).folds.protocol == SPEAKER_INDEPENDENT
    dependent = load_corpus("cremad", root, speaker_dependent=True).folds
    assert dependent.protocol == SPEAKER_DEPENDENT and "speakers shared" in dependent.description
    assert {f.unit for f in dependent} == {"utterance"}


def test_speaker_kfold_falls_back_to_unstratified_groups_when_a_class_is_too_rare() -> None:
    utterances = [*corpus(6), Utterance("rare", None, "fearful", "s00", transcript="w")]
    folds = speaker_kfold(utterances, 5, seed=0)
    assert folds.description == "group 5-fold by speaker (a class is too small to stratify)"
    assert sorted(s for f in folds for s in f.test) == [f"s{s:02d}" for s in range(6)]
