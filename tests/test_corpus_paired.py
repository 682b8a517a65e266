"""The paired RAVDESS+MELD corpus: class-consistent, seeded, and dialogue-disjoint across splits."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from emotrace.corpora import CorpusData, load_corpus
from emotrace.corpora.meld import read_meld
from emotrace.corpora.paired import meld_id, read_paired
from emotrace.errors import BatchReport, InputError


@pytest.fixture(scope="module")
def corpus(shared_data: Path) -> CorpusData:
    return load_corpus("ravdess-meld", shared_data)


def test_every_pair_has_audio_and_text_of_the_same_emotion(corpus: CorpusData, shared_data: Path) -> None:
    texts = {text.id: text for text in read_meld(shared_data / "meld", BatchReport())}
    for pair in corpus.utterances:
        clip_id, text_id = pair.id.split("+")
        text = texts[text_id]
        assert pair.label == text.label and pair.transcript == text.transcript
        assert Path(pair.audio).name == f"03-{clip_id}.flac"
        assert pair.speaker == Path(pair.audio).parent.name and pair.dataset == "ravdess-meld"


def test_counts_are_the_documented_ones(corpus: CorpusData) -> None:
    labels = Counter(pair.label for pair in corpus.utterances)
    assert "calm" not in labels and len(corpus.label_set) == 7
    assert labels == {"neutral": 96, **{label: 192 for label in corpus.label_set.classes[1:]}}
    assert set(Counter(pair.speaker for pair in corpus.utterances).values()) == {52}
    assert len({meld_id(pair) for pair in corpus.utterances}) == 1248  # no reuse with seed 0
    assert "calm dropped" in corpus.folds.description and "0 reuses" in corpus.folds.description


def test_no_dialogue_is_on_both_sides_of_any_split(corpus: CorpusData) -> None:
    assert len(corpus.folds) == 6
    for fold in corpus.folds:
        train, val, test = fold.split(corpus.utterances)
        assert {pair.group for pair in test} == {fold.name}
        dialogues = [{meld_id(pair).rsplit("_", 1)[0] for pair in part} for part in (train, val, test)]
        assert not dialogues[2] & (dialogues[0] | dialogues[1])
        assert not dialogues[1] & dialogues[0]  # validation is dialogue-disjoint too


def test_pairing_is_fixed_by_the_seed(corpus: CorpusData, shared_data: Path) -> None:
    again = read_paired(shared_data, BatchReport(), seed=0)
    other = read_paired(shared_data, BatchReport(), seed=1)
    assert [pair.id for pair in again] == [pair.id for pair in corpus.utterances]
    assert {pair.id.split("+")[0] for pair in other} == {pair.id.split("+")[0] for pair in again}
    changed = sum(a.id != b.id for a, b in zip(again, other))
    assert changed > 0.9 * len(again)


def test_load_corpus_pairs_by_its_seed_or_by_read_seed(corpus: CorpusData, shared_data: Path) -> None:
    reseeded = load_corpus("ravdess-meld", shared_data, seed=1)
    ids = [pair.id for pair in corpus.utterances]
    assert sum(a != b.id for a, b in zip(ids, reseeded.utterances)) > 0.9 * len(ids)
    pinned = load_corpus("ravdess-meld", shared_data, seed=1, read_seed=0)
    assert [pair.id for pair in pinned.utterances] == ids  # same pairing, other validation actors
    assert [fold.val for fold in pinned.folds] == [fold.val for fold in reseeded.folds]
    assert [fold.val for fold in pinned.folds] != [fold.val for fold in corpus.folds]
    repaired = load_corpus("ravdess-meld", shared_data, seed=0, read_seed=2)
    assert [fold.val for fold in repaired.folds] == [fold.val for fold in corpus.folds]
    assert sum(a != b.id for a, b in zip(ids, repaired.utterances)) > 0.9 * len(ids)


MELD_HEADER = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\n"


def build(root: Path, emotions: list[str]) -> Path:
    """Actors 1 and 2 with two fearful and one calm clip each; one MELD dialogue per emotion."""
    for actor in (1, 2):
        folder = root / "ravdess" / f"Actor_{actor:02d}"
        folder.mkdir(parents=True)
        for emotion, repetition in (("06", "01"), ("06", "02"), ("02", "01")):
            (folder / f"03-01-{emotion}-01-01-{repetition}-{actor:02d}.flac").write_bytes(b"")
    rows = "".join(f"{n},Line {n}.,Joey,{emotion},-,{n},0,1,1,0,1\n" for n, emotion in enumerate(emotions))
    (root / "meld").mkdir()
    for split in ("train", "dev", "test"):
        (root / "meld" / f"{split}_sent_emo.csv").write_text(MELD_HEADER + (rows if split == "train" else ""))
    return root


def test_scarce_classes_reuse_text_within_the_actors_group_and_say_so(tmp_path: Path) -> None:
    data = load_corpus("ravdess-meld", build(tmp_path, ["fear", "fear"]))
    assert len(data.utterances) == 4 and {pair.label for pair in data.utterances} == {"fearful"}
    actors = ("Actor_01", "Actor_02")
    by_actor = {actor: [meld_id(p) for p in data.utterances if p.speaker == actor] for actor in actors}
    assert all(len(set(ids)) == 1 for ids in by_actor.values())  # one line each, used twice
    assert set(by_actor["Actor_01"]).isdisjoint(by_actor["Actor_02"])
    assert "2 reuses" in data.folds.description


@pytest.mark.filterwarnings("ignore:The least populated class")
def test_missing_parts_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no fearful utterance in the dialogues of Actor_0"):
        load_corpus("ravdess-meld", build(tmp_path / "no-fear", ["fear", "joy", "joy"]))
    with pytest.raises(InputError, match="meld: cannot deal dialogues into 2 groups"):
        load_corpus("ravdess-meld", build(tmp_path / "unstratifiable", ["fear", "joy"]))
    with pytest.raises(InputError, match="2 RAVDESS actors, 1 MELD dialogues"):
        load_corpus("ravdess-meld", build(tmp_path / "one-dialogue", ["fear"]))
    (tmp_path / "ravdess").mkdir()
    with pytest.raises(InputError, match=r"meld: missing folder"):
        load_corpus("ravdess-meld", tmp_path)
