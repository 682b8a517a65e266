"""``emotrace data describe`` and ``emotrace data manifest`` through Typer's test runner."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from emotrace.cli.data import app
from test_corpora import build_iemocap, build_ravdess, real

runner = CliRunner()


def test_describe_json_counts_classes_speakers_and_folds(tmp_path: Path) -> None:
    root = build_ravdess(tmp_path / "ravdess")
    result = runner.invoke(app, ["describe", "ravdess", str(root), "--label-set", "ravdess7", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (
        summary["corpus"],
        summary["label_set"],
        summary["utterances"],
        summary["speakers"],
    ) == (
        "ravdess",
        "ravdess7",
        7,
        2,
    )
    assert summary["classes"] == {
        "neutral": 4,
        "happy": 1,
        "sad": 0,
        "angry": 2,
        "fearful": 0,
        "disgusted": 0,
        "surprised": 0,
    }
    assert summary["per_speaker"] == {"Actor_01": 3, "Actor_02": 4}
    assert summary["protocol"] == "speaker-independent" and len(summary["folds"]) == 6
    first = summary["folds"][0]
    assert (first["name"], first["test_speakers"], first["test_utterances"]) == (
        "fold1",
        ["Actor_01"],
        3,
    )
    assert summary["dropped"] == 0 and summary["skipped"] == []


def test_describe_tables_show_dropped_labels(tmp_path: Path) -> None:
    root = build_iemocap(tmp_path / "iemocap")
    result = runner.invoke(app, ["describe", "iemocap", str(root)])
    assert result.exit_code == 0, result.output
    output = " ".join(result.stdout.split())
    for text in (
        "iemocap: 6 utterances, 4 speakers, label set iemocap4",
        "dropped 2 (not in the label set): frustrated 1, unlabelled 1",
        "folds: speaker-independent, leave-one-group-out, 2 folds (Session1, Session2)",
        "│ Ses01_F │ 3 │",
        "│ Session1 │ Ses01_F, Ses01_M │",
    ):
        assert text in output


def test_describe_errors_are_one_line_and_exit_1(tmp_path: Path) -> None:
    result = runner.invoke(app, ["describe", "ravdess", str(tmp_path / "nowhere")])
    assert result.exit_code == 1
    assert f"error: {tmp_path / 'nowhere'}: no such file or folder" in " ".join(result.output.split())
    result = runner.invoke(app, ["describe", "ravdess", str(build_ravdess(tmp_path / "r")), "--label-set", "x"])
    assert result.exit_code == 1 and "label set 'x': unknown" in result.output


def test_manifest_command_writes_jsonl_and_csv(tmp_path: Path) -> None:
    root = build_iemocap(tmp_path / "iemocap")
    for name in ("iemocap.jsonl", "iemocap.csv"):
        out = tmp_path / "out" / name
        result = runner.invoke(app, ["manifest", "iemocap", str(root), "-o", str(out)])
        assert result.exit_code == 0, result.output
        assert "6 utterances written" in result.output
        back = runner.invoke(app, ["describe", "manifest", str(out), "--json"])
        assert json.loads(back.stdout)["classes"] == {
            "neutral": 2,
            "happy": 2,
            "sad": 1,
            "angry": 1,
        }


def test_manifest_command_reports_bad_audio_and_stops_when_strict(tmp_path: Path) -> None:
    root = build_ravdess(tmp_path / "ravdess")
    broken = root / "Actor_01" / "03-01-05-02-02-01-01.wav"
    broken.write_bytes(b"RIFF, but no audio")
    out = tmp_path / "m.jsonl"
    result = runner.invoke(app, ["manifest", "ravdess", str(root), "-o", str(out)])
    assert result.exit_code == 0, result.output
    # the AV-only take's audio is a placeholder mp4 here, so it is skipped as well
    assert "5 done, 2 skipped" in result.output and str(broken) in "".join(result.output.split())
    assert len(out.read_text().splitlines()) == 5
    strict = runner.invoke(app, ["manifest", "ravdess", str(root), "-o", str(tmp_path / "s.jsonl"), "--strict"])
    assert strict.exit_code == 1 and "error:" in strict.output
    assert not (tmp_path / "s.jsonl").exists()


def test_describe_real_ravdess() -> None:
    result = runner.invoke(app, ["describe", "ravdess", str(real("ravdess")), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["utterances"], summary["speakers"], summary["dropped"]) == (1440, 24, 0)
    assert summary["classes"] == {
        "neutral": 96,
        **{c: 192 for c in ("calm", "happy", "sad", "angry", "fearful", "disgusted", "surprised")},
    }
    assert [fold["test_utterances"] for fold in summary["folds"]] == [240] * 6
    assert [len(fold["test_speakers"]) for fold in summary["folds"]] == [4] * 6
    assert all(len(fold["val_speakers"]) == 2 for fold in summary["folds"])


def test_describe_real_meld() -> None:
    result = runner.invoke(app, ["describe", "meld", str(real("meld")), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["protocol"] == "official-split" and summary["utterances"] == 13708
    (fold,) = summary["folds"]
    assert (fold["train_utterances"], fold["val_utterances"], fold["test_utterances"]) == (
        9989,
        1109,
        2610,
    )
