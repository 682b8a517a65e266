"""``emotrace predict``, ``emotrace models list`` and ``emotrace export`` through Typer's runner."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
import soundfile as sf
from typer.testing import CliRunner

from emotrace import api
from emotrace.cli import app
from emotrace.protocols import SPEAKER_ADAPTIVE, UTTERANCE_LEVEL
from test_predictor import LABELS, TOLERANCE, long_recording, save_fusion, save_roi

pytestmark = pytest.mark.usefixtures("torch_single_thread")

runner = CliRunner()


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    save_roi(root / "tiny")
    save_roi(root / "tiny-adaptive", SPEAKER_ADAPTIVE, seed=1)
    save_fusion(root / "fusion")
    return root


@pytest.fixture
def clips(fixture_clips, tmp_path) -> Path:
    """The shipped clips in a folder of their own, with one in a subfolder."""
    folder = tmp_path / "clips"
    (folder / "more").mkdir(parents=True)
    for clip, target in zip(fixture_clips, (folder, folder, folder / "more")):
        shutil.copy(clip, target / clip.name)
    return folder


def predict(*args: str | Path):
    return runner.invoke(app, ["predict", *map(str, args)])


def predictions(result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["predictions"]


def test_files_folders_and_globs_give_one_prediction_per_file(models, clips):
    first = next(clips.glob("*.flac"))
    result = predict(first, clips, f"{clips}/**/*.flac", "--model", models / "tiny", "--format", "json")
    found = predictions(result)
    assert sorted(Path(p["source"]).name for p in found) == sorted(p.name for p in clips.rglob("*.flac"))
    for prediction in found:
        assert prediction["protocol"] == UTTERANCE_LEVEL and prediction["label"] in LABELS
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert prediction["segments"] and prediction["dynamics"]["frame_posteriors"]
    assert "3 done, 0 skipped" in result.stderr


def test_precision_reaches_the_predictor_and_unknown_ones_are_refused(models, clips, monkeypatch):
    asked = []
    load = api.load_predictor
    monkeypatch.setattr(
        "emotrace.cli.predict.load_predictor",
        lambda *args, **options: asked.append(options["precision"]) or load(*args, **options),
    )
    assert predictions(predict(clips, "--model", models / "tiny", "--format", "json", "--precision", "float32"))
    assert asked == ["float32"]
    refused = predict(clips, "--model", models / "tiny", "--precision", "half")
    assert refused.exit_code == 2 and "half" in refused.output


def test_csv_and_table_outputs(models, clips, tmp_path):
    output = tmp_path / "out" / "predictions.csv"
    result = predict(clips, "-m", models / "tiny", "--format", "csv", "--output", output)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(output.read_text())))
    assert len(rows) == 3
    assert list(rows[0])[:5] == ["source", "start", "end", "protocol", "label"]
    for row in rows:
        assert sum(float(row[label]) for label in LABELS) == pytest.approx(1.0, abs=1e-3)
        assert row["regions"] and row["protocol"] == UTTERANCE_LEVEL

    table = predict(clips, "-m", models / "tiny")
    assert table.exit_code == 0, table.output
    assert "utterance-level protocol" in table.stdout
    spans = [f"0.00-{sf.info(clip).duration:.2f}" for clip in sorted(clips.rglob("*.flac"))]
    assert all(table.stdout.count(span) == 1 for span in spans), spans  # a row per clip, its whole length


def test_a_corrupt_file_is_reported_and_skipped(models, clips):
    (clips / "more" / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEjunk")
    result = predict(clips, "missing.wav", "-m", models / "tiny", "--format", "json")
    assert len(predictions(result)) == 3
    assert "3 done, 2 skipped" in result.stderr
    assert "corrupt.wav: " in result.stderr and "missing.wav: file not found" in result.stderr
    skipped = json.loads(result.stdout)["skipped"]
    assert {Path(s["source"]).name for s in skipped} == {"corrupt.wav", "missing.wav"}


def test_nothing_predicted_is_a_failure(models, tmp_path):
    (tmp_path / "corrupt.wav").write_bytes(b"not audio")
    result = predict(tmp_path / "corrupt.wav", "-m", models / "tiny")
    assert result.exit_code == 1 and "0 done, 1 skipped" in result.stderr


def test_text_given_from_a_file_missing_or_transcribed(models, clips, fixture_clips):
    fusion = models / "fusion"
    text = "Kids are talking by the door"
    given = predictions(predict(fixture_clips[0], "-m", fusion, "--text", text, "--format", "json"))
    assert given[0]["modalities"] == {"audio": True, "text": True} and given[0]["transcript_source"] == "given"

    transcripts = clips / "transcripts.jsonl"
    named = min(clips.glob("*.flac"))
    transcripts.write_text(json.dumps({"path": named.name, "text": "Dogs are sitting by the door"}) + "\n")
    found = predictions(predict(clips, "-m", fusion, "--transcripts", transcripts, "--format", "json"))
    by_name = {Path(p["source"]).name: p for p in found}
    assert by_name[named.name]["transcript"] == "Dogs are sitting by the door"
    without = [p for name, p in by_name.items() if name != named.name]
    assert len(without) == 2 and all(p["modalities"] == {"audio": True, "text": False} for p in without)

    heard = predictions(predict(fixture_clips[0], "-m", fusion, "--asr", "--format", "json"))
    assert heard[0]["transcript_source"] == "asr" and "door" in heard[0]["transcript"].lower()

    both = predict(fixture_clips[0], "-m", fusion, "--asr", "--text", "words")
    assert both.exit_code == 2 and "at most one of" in both.output


def test_speaker_adaptation_by_folder_and_by_speakers_file(models, fixture_clips, tmp_path, monkeypatch):
    monkeypatch.setattr(api, "PRETRAINED", models)
    root = tmp_path / "speakers"
    for speaker, chosen in (("anna", fixture_clips[:2]), ("ben", fixture_clips[2:])):
        (root / speaker).mkdir(parents=True)
        for clip in chosen:
            shutil.copy(clip, root / speaker / clip.name)
    result = predict(root, "-m", "tiny", "--adapt-speaker", "--format", "json")
    found = predictions(result)
    assert len(found) == 3 and {p["protocol"] for p in found} == {SPEAKER_ADAPTIVE}
    assert "speakers with one recording" in result.stderr and "ben" in result.stderr

    speakers = tmp_path / "speakers.csv"
    files = sorted(root.rglob("*.flac"))
    speakers.write_text("path,speaker\n" + "".join(f"{f},same\n" for f in files[:2]))
    result = predict(root, "-m", "tiny", "--adapt-speaker", "--speakers", speakers, "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 2 and {row["protocol"] for row in rows} == {SPEAKER_ADAPTIVE}
    assert "has no speaker in the --speakers file" in result.stderr

    refused = predict(root, "-m", models / "fusion", "--adapt-speaker")
    assert refused.exit_code == 1 and "no speaker-adaptive variant" in refused.stderr


def test_long_recordings_get_segments_a_timeline_and_plots(models, fixture_clips, tmp_path):
    recording = tmp_path / "meeting.flac"
    placed = long_recording(fixture_clips, recording)
    plots = tmp_path / "plots"
    result = predict(recording, fixture_clips[0], "-m", models / "tiny", "--format", "json", "--plot", plots)
    long, short = predictions(result)
    assert [segment["start"] for segment in long["timeline"]] == pytest.approx(
        [start for start, _ in placed], abs=TOLERANCE
    )
    assert [segment["end"] for segment in long["timeline"]] == pytest.approx([end for _, end in placed], abs=TOLERANCE)
    assert sum(long["shares"].values()) == pytest.approx(1.0, abs=1e-4) and long["label"] in LABELS
    assert short["source"] == str(fixture_clips[0])
    written = sorted(path.name for path in plots.iterdir())
    assert written == [f"{fixture_clips[0].stem}.png", "meeting.timeline.png"]
    assert all(path.stat().st_size > 10_000 for path in plots.iterdir())


def test_models_list_shows_packaged_models(models, monkeypatch):
    monkeypatch.setattr(api, "PRETRAINED", models)
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0, result.output
    for name in ("tiny", "tiny-adaptive", "fusion", "speaker-adaptive", "RUN_DIR"):
        assert name in result.stdout


def test_export_writes_a_checked_onnx_graph(models, tmp_path):
    output = tmp_path / "tiny.onnx"
    result = runner.invoke(app, ["export", str(models / "tiny"), "--onnx", "--output", str(output)])
    assert result.exit_code == 0, result.output
    assert output.stat().st_size > 0 and output.with_suffix(".json").is_file()
    assert runner.invoke(app, ["export", str(models / "tiny")]).exit_code == 2
