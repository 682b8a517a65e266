"""The JSONL/CSV manifest: lossless round trip, audio columns from the files, bad lines reported."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from emotrace.corpora import load_corpus
from emotrace.corpora.manifest import FIELDS, read_manifest, write_manifest
from emotrace.corpora.records import Utterance
from emotrace.errors import BatchReport, InputError
from test_corpora import build_iemocap, placeholder, tone


def sample(tmp_path: Path) -> list[Utterance]:
    """Utterances using every field: segments, video segments, text-only, odd transcripts."""
    data = tmp_path / "data"
    stereo = tone(data / "dialog.wav", seconds=1.0, sample_rate=22050, channels=2)
    clip = tone(data / "clip.flac", seconds=0.5)
    video = placeholder(data / "dialog.avi")
    return [
        Utterance(
            "seg1",
            str(stereo),
            "angry",
            "spk1",
            "mine",
            "sess1",
            0.25,
            0.75,
            'He said, "no" —\nthen left.',
            str(video),
            10.5,
            11.0,
        ),
        Utterance("clip", str(clip), "neutral", "spk2", "mine", transcript="Grüße, 100%"),
        Utterance("text", None, "happy", "spk2", "mine", group="dia0", transcript="just text"),
        Utterance("unlabelled", str(clip), None, "", ""),
    ]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_round_trip_is_lossless(tmp_path: Path, suffix: str) -> None:
    utterances = sample(tmp_path)
    path = tmp_path / "out" / f"all{suffix}"
    path.parent.mkdir()
    report = BatchReport()
    assert write_manifest(utterances, path, report) == 4
    assert report.done == 4 and not report.skipped
    again = read_manifest(path, report)
    assert again == utterances
    assert not list(path.parent.glob(".*"))  # no temporary file left behind


def test_audio_columns_come_from_the_files(tmp_path: Path) -> None:
    path = tmp_path / "data" / "m.jsonl"
    write_manifest(sample(tmp_path), path, BatchReport())
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert list(rows[0]) == list(FIELDS)
    segment, clip, text, _ = rows
    assert (segment["sample_rate"], segment["channel"], segment["length"]) == (22050, 2, 0.5)
    assert segment["num_frame"] == 11025  # the segment, not the whole file
    assert (clip["sample_rate"], clip["channel"], clip["num_frame"], clip["length"]) == (
        16000,
        1,
        8000,
        0.5,
    )
    assert (segment["wav"], segment["video"], segment["emo"]) == (
        "dialog.wav",
        "dialog.avi",
        "angry",
    )
    assert (text["wav"], text["sample_rate"], text["num_frame"]) == (None, None, None)


def test_paths_are_relative_under_the_manifest_folder_and_absolute_elsewhere(
    tmp_path: Path,
) -> None:
    utterances = sample(tmp_path)
    inside = tmp_path / "data" / "m.csv"
    outside = tmp_path / "elsewhere" / "m.csv"
    outside.parent.mkdir()
    write_manifest(utterances, inside, BatchReport())
    write_manifest(utterances, outside, BatchReport())
    with inside.open() as file:
        assert next(csv.DictReader(file))["wav"] == "dialog.wav"
    with outside.open() as file:
        assert next(csv.DictReader(file))["wav"] == str(tmp_path / "data" / "dialog.wav")


def test_relative_wav_paths_resolve_against_the_manifest_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tone(tmp_path / "corpus" / "wav" / "a.wav")
    manifest = tmp_path / "corpus" / "meta" / "m.jsonl"
    manifest.parent.mkdir()
    manifest.write_text(json.dumps({"key": "a", "wav": "../wav/a.wav", "emo": "sad", "speaker": "x"}) + "\n")
    monkeypatch.chdir(tmp_path)
    (utterance,) = read_manifest(manifest, BatchReport())
    assert utterance.audio == str(tmp_path / "corpus" / "wav" / "a.wav")


def test_emobox_metadata_reads_as_is(tmp_path: Path) -> None:
    tone(tmp_path / "downloads" / "iemocap" / "Ses01F_impro01_F000.wav")
    line = {
        "key": "iemocap-Ses01F_impro01_F000",
        "dataset": "iemocap",
        "wav": "downloads/iemocap/Ses01F_impro01_F000.wav",
        "type": "raw",
        "sample_rate": 16000,
        "num_frame": 31040.0,
        "task": "category",
        "length": 1.94,
        "emo": "neu",
        "channel": 1,
    }
    (tmp_path / "iemocap.jsonl").write_text(json.dumps(line) + "\n")
    (utterance,) = read_manifest(tmp_path / "iemocap.jsonl", BatchReport())
    assert (utterance.id, utterance.label, utterance.speaker, utterance.dataset) == (
        "iemocap-Ses01F_impro01_F000",
        "neutral",
        "",
        "iemocap",
    )


def test_bad_lines_are_reported_with_path_and_line_and_skipped(tmp_path: Path) -> None:
    tone(tmp_path / "a.wav")
    good = {"key": "a", "wav": "a.wav", "emo": "happy", "speaker": "s"}
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps({"key": "b", "wav": "a.wav", "speaker": "s"}),
        json.dumps({**good, "key": "c", "emo": "bliss"}),
        "",
        json.dumps({**good, "key": "d", "wav": "gone.wav"}),
        json.dumps({**good, "key": "e", "start": "soon"}),
        json.dumps(good),
        "[1, 2]",
        json.dumps({**good, "key": "f", "wav": None}),
    ]
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(lines) + "\n")
    report = BatchReport()
    assert [u.id for u in read_manifest(path, report)] == ["a"]
    assert [str(error) for error in report.skipped] == [
        f"{path}:2: not valid JSON (Expecting property name enclosed in double quotes at column 2)",
        f"{path}:3: missing required field emo",
        f"{path}:4: unknown label 'bliss'",
        f"{tmp_path / 'gone.wav'}: does not exist (listed in {path}:6)",
        f"{path}:7: start is not a number: 'soon'",
        f"{path}:8: duplicate key 'a'",
        f"{path}:9: not a JSON object",
        f"{path}:10: neither wav nor transcript",
    ]
    with pytest.raises(InputError, match=":2: not valid JSON"):
        read_manifest(path, BatchReport(strict=True))


def test_csv_needs_its_required_columns_and_whole_rows(tmp_path: Path) -> None:
    tone(tmp_path / "a.wav")
    path = tmp_path / "m.csv"
    path.write_text('key,wav,emo,speaker,transcript\na,a.wav,sad,s,"one, two"\nb,a.wav,sad,s,x,extra\n')
    report = BatchReport()
    (utterance,) = read_manifest(path, report)
    assert utterance.transcript == "one, two"
    assert [str(e) for e in report.skipped] == [f"{path}:3: more cells than columns"]
    path.write_text("key,wav,speaker\na,a.wav,s\n")
    with pytest.raises(InputError, match="no column emo in the header"):
        read_manifest(path, BatchReport())


def test_unreadable_audio_is_reported_and_left_out_when_writing(tmp_path: Path) -> None:
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF nonsense")
    utterances = [*sample(tmp_path), Utterance("broken", str(broken), "sad", "s")]
    report = BatchReport()
    path = tmp_path / "m.jsonl"
    assert write_manifest(utterances, path, report) == 4
    assert [e.source for e in report.skipped] == [str(broken)]
    with pytest.raises(InputError):
        write_manifest(utterances, path, BatchReport(strict=True))
    assert len(read_manifest(path, BatchReport())) == 4  # the failed write left the old file whole


def test_write_refuses_unknown_formats_before_probing(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"a manifest must end in \.jsonl or \.csv"):
        write_manifest(sample(tmp_path), tmp_path / "m.txt", BatchReport())
    assert not (tmp_path / "m.txt").exists()


def test_a_corpus_written_as_manifest_loads_back_identically(tmp_path: Path) -> None:
    corpus = load_corpus("iemocap", build_iemocap(tmp_path / "iemocap"), label_set="all")
    path = tmp_path / "iemocap.jsonl"
    write_manifest(corpus.utterances, path, BatchReport())
    loaded = load_corpus("manifest", path)
    assert loaded.utterances == corpus.utterances
    assert loaded.label_set.classes == corpus.label_set.classes
    assert loaded.folds.protocol == "speaker-independent"
    assert sorted(s for fold in loaded.folds for s in fold.test) == sorted({u.speaker for u in corpus.utterances})
