"""ASED, nEMO and EmoBox's metadata: miniature trees in the exact release layouts, and the real
corpora here. The builders are shared with test_multicorpus.py."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner

from emotrace.cli import app
from emotrace.corpora import load_corpus
from emotrace.corpora.ased import read_ased
from emotrace.corpora.emobox import PROTOCOL as EMOBOX_PROTOCOL
from emotrace.corpora.folds import SPEAKER_INDEPENDENT
from emotrace.corpora.nemo import read_nemo
from emotrace.errors import BatchReport, InputError

#: emotion -> pitch of its tone, so that tiny models can learn it
PITCH = {"neutral": 200.0, "happy": 420.0, "sad": 130.0, "angry": 650.0, "fearful": 520.0, "surprised": 330.0}
ASED_FOLDERS = {"neutral": "01Neutral", "fearful": "02Fearful", "happy": "03Happy", "sad": "04Sad", "angry": "05Angry"}
ASED_CODES = {"neutral": "n1", "fearful": "f2", "happy": "h3", "sad": "s4", "angry": "a5"}
NEMO_NAMES = {
    "angry": "anger",
    "fearful": "fear",
    "happy": "happiness",
    "neutral": "neutral",
    "sad": "sadness",
    "surprised": "surprised",
}


def tone(path: Path, pitch: float, seconds: float = 0.6, rate: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * pitch * t)).astype(np.float32), rate)
    return path


def build_ased(root: Path, speakers: int = 5, sentences: int = 2) -> Path:
    """``speakers`` speakers (odd female, even male) x 5 emotions x ``sentences``, one take each."""
    for speaker in range(1, speakers + 1):
        for emotion, folder in ASED_FOLDERS.items():
            for sentence in range(1, sentences + 1):
                name = f"{ASED_CODES[emotion]}-{sentence:02d}-01-{2 - speaker % 2:02d}-{speaker:02d}.wav"
                tone(root / folder / name, PITCH[emotion] + 7 * speaker + 3 * sentence)
    return root


def build_nemo(root: Path, speakers: tuple[str, ...] = ("EB0", "IC0", "KD0", "KS0"), takes: int = 2) -> Path:
    """``data.tsv`` and ``{speaker}_{emotion}_{n}.wav`` for 6 emotions, speakers padded as in the release."""
    lines = ["file_id\temotion\traw_text\tnormalized_text\tspeaker_id\tgender\tage"]
    for s, speaker in enumerate(speakers):
        for emotion, name in NEMO_NAMES.items():
            for take in range(1, takes + 1):
                stem = f"{speaker}_{name}_{take}"
                tone(root / f"{stem}.wav", PITCH[emotion] + 9 * s + 4 * take)
                lines.append(f"{stem}.wav\t{name}\tZdanie {take}.\tzdanie {take}\t        {speaker}\tfemale\t25")
    (root / "data.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_ased_reads_names_checks_folders_and_takes_the_speaker_field(tmp_path: Path) -> None:
    root = build_ased(tmp_path / "ased", speakers=2, sentences=1)
    tone(root / "04Sad" / "S4-03-02-01-01.wav", 130.0)  # the release's one upper-case letter
    tone(root / "04Sad" / "a5-01-01-01-02.wav", 650.0)  # an angry name in the sad folder
    tone(root / "01Neutral" / "n1-01-01-02-01.wav", 200.0)  # speaker 01 with the other gender code
    tone(root / "01Neutral" / "neutral-take.wav", 200.0)
    report = BatchReport()
    utterances = {u.id: u for u in read_ased(root, report)}
    assert sorted(Path(str(e.source)).name for e in report.skipped) == ["a5-01-01-01-02.wav", "neutral-take.wav"]
    assert len(utterances) == 12
    sad = utterances["S4-03-02-01-01"]
    assert (sad.label, sad.speaker, sad.dataset, sad.transcript) == ("sad", "01", "ased", None)
    assert {u.speaker for u in utterances.values()} == {"01", "02"}  # the gender slip is the same speaker
    assert Counter(u.label for u in utterances.values())["fearful"] == 2
    with pytest.raises(InputError, match="not an ASED release"):
        read_ased(tmp_path, BatchReport())


def test_ased_folds_are_speaker_independent_with_validation_from_training(tmp_path: Path) -> None:
    data = load_corpus("ased", build_ased(tmp_path / "ased", speakers=10))
    assert data.label_set.classes == ("neutral", "happy", "sad", "angry", "fearful")
    assert data.folds.protocol == SPEAKER_INDEPENDENT and len(data.folds) == 5
    assert sorted(s for fold in data.folds for s in fold.test) == [f"{n:02d}" for n in range(1, 11)]
    for fold in data.folds:
        assert fold.val and not set(fold.val) & set(fold.test)


def test_nemo_reads_transcripts_from_data_tsv_and_reports_what_disagrees(tmp_path: Path) -> None:
    root = build_nemo(tmp_path / "nemo", speakers=("EB0", "IC0"), takes=1)
    (root / "samples").mkdir()
    tone(root / "samples" / "IC0_fear_9.wav", 520.0)  # not listed in data.tsv
    with (root / "data.tsv").open("a", encoding="utf-8") as tsv:
        tsv.write("EB0_sadness_7.wav\tsadness\tNie ma.\tnie ma\t   EB0\tfemale\t27\n")  # no audio
        tsv.write("IC0_anger_5.wav\thappiness\tTo.\tto\t IC0\tfemale\t27\n")  # name says anger
    tone(root / "IC0_anger_5.wav", 650.0)
    report = BatchReport()
    utterances = {u.id: u for u in read_nemo(root, report)}
    assert len(utterances) == 12
    reasons = sorted(f"{Path(e.source).name}: {e.problem}" for e in report.skipped)
    assert [reason.split(":")[0] for reason in reasons] == ["EB0_sadness_7.wav", "IC0_anger_5.wav", "IC0_fear_9.wav"]
    assert "not listed" in reasons[2] and "no audio" in reasons[0] and "happiness" in reasons[1]
    happy = utterances["IC0_happiness_1"]
    assert (happy.label, happy.speaker, happy.transcript, happy.dataset) == ("happy", "IC0", "Zdanie 1.", "nemo")
    (root / "data.tsv").unlink()
    with pytest.raises(InputError, match="not an nEMO release"):
        read_nemo(root, BatchReport())


def test_real_ased(shared_data: Path) -> None:
    data = load_corpus("ased", shared_data / "ased")
    assert len(data.utterances) == 2474 and not data.dropped
    assert len({u.speaker for u in data.utterances}) == 65
    assert Counter(u.label for u in data.utterances) == {
        "neutral": 522,
        "fearful": 510,
        "happy": 486,
        "sad": 470,
        "angry": 486,
    }
    _assert_speaker_independent(data)


def test_real_nemo(shared_data: Path) -> None:
    data = load_corpus("nemo", shared_data / "nemo")
    assert len(data.utterances) == 4481 and len(data.label_set) == 6
    assert {u.speaker for u in data.utterances} == {"EB0", "IC0", "KD0", "KS0", "MK0", "MP0", "SM0", "TP0", "WR0"}
    assert Counter(u.label for u in data.utterances) == {
        "angry": 749,
        "fearful": 736,
        "happy": 749,
        "neutral": 809,
        "sad": 769,
        "surprised": 669,
    }
    assert all(u.transcript for u in data.utterances)
    _assert_speaker_independent(data)


def _assert_speaker_independent(data) -> None:
    assert data.folds.protocol == SPEAKER_INDEPENDENT and len(data.folds) == 5
    tested = [speaker for fold in data.folds for speaker in fold.test]
    assert sorted(tested) == sorted({u.speaker for u in data.utterances})  # each speaker tested exactly once
    for fold in data.folds:
        train, val, test = fold.split(data.utterances)
        assert val and train and test
        assert not {u.speaker for u in test} & ({u.speaker for u in train} | {u.speaker for u in val})
        assert not {u.speaker for u in val} & {u.speaker for u in train}


def test_a_manifest_without_speakers_is_refused_by_cv_saying_why(tmp_path: Path) -> None:
    rows = [
        {"key": f"c{i}", "wav": str(tone(tmp_path / f"c{i}.wav", 200.0 + 50 * i)), "emo": "sad" if i % 2 else "neu"}
        for i in range(4)
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = tmp_path / "c.yaml"
    config.write_text(
        json.dumps(
            {
                "name": "nospeaker",
                "corpus": {"name": "manifest", "root": str(manifest)},
                "inputs": {"audio": {"features": "logmel"}},
                "model": {"name": "lstm"},
                "store": str(tmp_path / "store"),
            }
        )
    )
    done = CliRunner().invoke(app, ["cv", str(config), "--run-dir", str(tmp_path / "run"), "--no-progress"])
    assert done.exit_code == 1
    assert "no `speaker`" in done.output and "4 of 4 utterances" in done.output


def test_emobox_dataset_folders_read_as_given(tmp_path: Path) -> None:
    """EmoBox's layout: wav paths relative to its repository root, raw codes through label_map.json,
    two folds given by their test files, and no speakers."""
    repo = tmp_path / "EmoBox"
    dataset = repo / "data" / "ased"
    lines = []
    for speaker in range(1, 5):
        for emotion in ("neutral", "sad"):
            code = "S" if speaker == 4 and emotion == "sad" else ASED_CODES[emotion][0]
            stem = f"{ASED_CODES[emotion]}-01-01-01-{speaker:02d}"
            tone(repo / "downloads" / "ased" / ASED_FOLDERS[emotion] / f"{stem}.wav", PITCH[emotion])
            lines.append(
                {
                    "key": f"ased-{stem}",
                    "dataset": "ased",
                    "wav": f"downloads/ased/{ASED_FOLDERS[emotion]}/{stem}.wav",
                    "type": "raw",
                    "sample_rate": 16000,
                    "num_frame": 9600.0,
                    "task": "category",
                    "length": 0.6,
                    "emo": code,
                    "channel": 1,
                }
            )
    for number, tested in ((1, (1, 2)), (2, (3, 4))):
        folder = dataset / f"fold_{number}"
        folder.mkdir(parents=True)
        for part, keep in (("test", True), ("train", False)):
            chosen = [line for line in lines if (int(line["key"][-2:]) in tested) == keep]
            (folder / f"ased_{part}_fold_{number}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in chosen))
    (dataset / "label_map.json").write_text(json.dumps({"n": "Neutral", "s": "Sad", "S": "Sad"}))

    data = load_corpus("emobox", dataset)
    assert len(data.utterances) == 8 and data.label_set.classes == ("neutral", "sad")
    assert Counter(u.label for u in data.utterances) == {"neutral": 4, "sad": 4}
    assert data.folds.protocol == EMOBOX_PROTOCOL and "may share speakers" in data.folds.description
    for fold, tested in zip(data.folds, ((1, 2), (3, 4))):
        train, val, test = fold.split(data.utterances)
        assert sorted(int(u.id[-2:]) for u in test) == sorted(2 * tested)
        assert len(val) == 1 and not {u.id for u in val} & {u.id for u in train}
    assert Path(data.utterances[0].audio).is_file()
