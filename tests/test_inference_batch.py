"""Batches through the Python API (the loop ``emotrace predict`` runs), audio decoded once per
prediction, and the modalities a model cannot do without."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from emotrace import audio
from emotrace.api import load_model, predict_files
from emotrace.checkpoint import Checkpoint
from emotrace.cli import app
from emotrace.errors import InputError
from emotrace.features.transforms import InputSpec
from emotrace.inference.batch import BatchProgress
from emotrace.models import build_model
from emotrace.protocols import SPEAKER_ADAPTIVE, UTTERANCE_LEVEL, ProtocolError
from test_predictor import LABELS, save_fusion, save_roi

pytestmark = pytest.mark.usefixtures("torch_single_thread")

TEXT = "Kids are talking by the door"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    save_roi(root / "roi")
    save_roi(root / "roi-adaptive", SPEAKER_ADAPTIVE, seed=1)
    save_fusion(root / "fusion")
    torch.manual_seed(0)
    contrastive = build_model(
        "contrastive",
        num_classes=len(LABELS),
        input_dims={"audio": 16, "text": 50},
        projection_dim=16,
        audio_code_dim=16,
        text_code_dim=8,
        attention_dim=8,
    )
    inputs = {"audio": InputSpec("logmel:bins=16", frame_pooling=4), "text": InputSpec("glove-50d")}
    Checkpoint(contrastive, LABELS, inputs, UTTERANCE_LEVEL).save(root / "contrastive")
    return root


@pytest.fixture
def speakers(fixture_clips, tmp_path) -> Path:
    """Two speakers' folders: anna with two clips, ben with one and a corrupt file."""
    root = tmp_path / "speakers"
    for speaker, chosen in (("anna", fixture_clips[:2]), ("ben", fixture_clips[2:])):
        (root / speaker).mkdir(parents=True)
        for clip in chosen:
            shutil.copy(clip, root / speaker / clip.name)
    (root / "ben" / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEjunk")
    return root


class Recorder(BatchProgress):
    """Every event a batch reports, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def start(self, total: int) -> None:
        self.events.append(("start", total))

    def stage(self, description: str) -> None:
        self.events.append(("stage", description))

    def advance(self, files: int = 1) -> None:
        self.events.append(("advance", files))

    def note(self, message: str) -> None:
        self.events.append(("note", message))

    def skipped(self, error: InputError) -> None:
        self.events.append(("skipped", Path(error.source).name))


def test_api_batch_gives_what_the_command_line_writes(models, speakers, tmp_path):
    progress = Recorder()
    batch = predict_files(speakers, models / "roi", plot=tmp_path / "plots", progress=progress)
    assert [Path(r.source).name for r in batch.results] == sorted(p.name for p in speakers.rglob("*.flac"))
    assert {r.protocol for r in batch.results} == {UTTERANCE_LEVEL} and batch.report.done == 3
    assert [Path(e.source).name for e in batch.report.skipped] == ["corrupt.wav"]
    assert progress.events[0] == ("start", 4) and ("skipped", "corrupt.wav") in progress.events
    assert sum(n for kind, n in progress.events if kind == "advance") == 4
    assert len(list((tmp_path / "plots").glob("*.png"))) == 3

    cli = CliRunner().invoke(app, ["predict", str(speakers), "-m", str(models / "roi"), "--format", "json"])
    assert cli.exit_code == 0, cli.output
    assert json.loads(json.dumps(batch.to_dict())) == json.loads(cli.stdout)


def test_api_batch_adapts_to_each_speaker(models, speakers, fixture_clips):
    predictor = load_model(models / "roi", adaptive=models / "roi-adaptive")
    progress = Recorder()
    batch = predict_files([speakers / "anna", speakers / "ben"], predictor, adapt_speaker=True, progress=progress)
    assert len(batch.results) == 3 and {r.protocol for r in batch.results} == {SPEAKER_ADAPTIVE}
    assert [Path(e.source).name for e in batch.report.skipped] == ["corrupt.wav"]
    stages = [value for kind, value in progress.events if kind == "stage"]
    assert stages == [
        "speaker anna: moments",
        "speaker anna: predicting",
        "speaker ben: moments",
        "speaker ben: predicting",
    ]
    assert not any(kind == "note" and "ben" in value for kind, value in progress.events)  # a clip and a corrupt file

    anna = sorted((speakers / "anna").glob("*.flac"))
    moments = predictor.speaker_moments_for(anna)
    expected = predictor.predict(anna[0], speaker_moments=moments)
    assert batch.results[0].probabilities == pytest.approx(expected.probabilities)

    named = predict_files(anna, predictor, adapt_speaker=True, speakers={anna[0]: "x", anna[1]: "y"}, progress=progress)
    assert ("note", "note: speakers with one recording have weak speaker moments: x, y") in progress.events
    assert named.results[0].probabilities != pytest.approx(expected.probabilities)  # moments of one clip only

    with pytest.raises(ProtocolError, match="no speaker-adaptive variant"):
        predict_files(anna, models / "fusion", adapt_speaker=True)


def test_api_batch_reads_transcripts_per_file(models, fixture_clips):
    batch = predict_files(fixture_clips[:2], models / "fusion", transcripts={fixture_clips[0]: TEXT})
    first, second = batch.results
    used = {"audio": True, "text": True}
    assert (first.transcript, first.transcript_source, first.modalities) == (TEXT, "given", used)
    assert second.transcript is None and second.modalities == {"audio": True, "text": False}


def count_decoding(monkeypatch) -> list[str]:
    """Every time any file is decoded (not probed), its path."""
    decoded, decode = [], audio._mono_resampled

    def counting(info, *args, **kwargs):
        decoded.append(info.path)
        return decode(info, *args, **kwargs)

    monkeypatch.setattr(audio, "_mono_resampled", counting)
    return decoded


def test_a_prediction_and_its_plot_decode_the_file_once(models, fixture_clips, tmp_path, monkeypatch):
    decoded = count_decoding(monkeypatch)
    result = CliRunner().invoke(
        app, ["predict", str(fixture_clips[0]), "-m", str(models / "roi"), "--plot", str(tmp_path), "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / f"{fixture_clips[0].stem}.png").stat().st_size > 10_000
    assert decoded == [str(fixture_clips[0])]

    decoded.clear()
    load_model(models / "roi").predict(fixture_clips[1])
    assert decoded == [str(fixture_clips[1])]


@pytest.mark.parametrize("name", ["contrastive", "late_fusion"])
def test_a_model_that_needs_text_refuses_without_it_in_one_line(models, fixture_clips, tmp_path, name):
    folder = models / name if name == "contrastive" else save_fusion(tmp_path / name, name)
    predictor = load_model(folder)
    with pytest.raises(InputError) as refused:
        predictor.predict(fixture_clips[0])
    assert str(refused.value) == f"{fixture_clips[0]}: the model needs a transcript (give text, or turn on ASR)"
    prediction = predictor.predict(fixture_clips[0], TEXT)
    assert prediction.modalities == {"audio": True, "text": True}
    assert prediction.attention is None and prediction.segments == () and prediction.mixture is None


def test_query_fusion_runs_on_audio_alone(models, fixture_clips):
    prediction = load_model(models / "fusion").predict(fixture_clips[0])
    assert prediction.modalities == {"audio": True, "text": False}
    assert prediction.segments and prediction.attention.sum() == pytest.approx(1.0, abs=1e-5)


def test_files_read_ahead_get_what_each_gets_alone(models, fixture_clips, tmp_path, monkeypatch):
    """Short files are read ahead, checked for speech and encoded together; each result is the
    one it gets alone, each file is decoded once, and a bad file, a beep and a long recording
    among them go their own ways."""
    import numpy as np
    import soundfile as sf

    import emotrace.inference.batch as batch
    from emotrace.inference.predictor import Predictor

    beep = tmp_path / "beep.wav"
    sf.write(beep, 0.3 * np.sin(2 * np.pi * 1000 * np.arange(2 * 16000) / 16000), 16000)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEjunk")
    clips = [audio.load_audio(clip) for clip in fixture_clips]
    gap = np.zeros(16000, np.float32)
    long = tmp_path / "long.flac"
    sf.write(long, np.concatenate([gap, *[part for clip in clips * 4 for part in (clip, gap)]]), 16000)
    files = [fixture_clips[0], corrupt, fixture_clips[1], beep, long, fixture_clips[2]]

    sizes: list[int] = []
    extractor_of = Predictor._extractor

    def counting(self, spec):
        extractor = extractor_of(self, spec)

        class Counting:
            def extract(self, inputs):
                sizes.append(len(inputs))
                return extractor.extract(inputs)

        return Counting()

    monkeypatch.setattr(Predictor, "_extractor", counting)
    decoded = count_decoding(monkeypatch)
    together = predict_files(files, models / "roi").to_dict()
    assert sizes[0] == 3  # the three clips at once; the beep is not encoded
    assert sorted(decoded).count(str(fixture_clips[0])) == 1
    monkeypatch.setattr(batch, "READ_AHEAD", 1)
    alone = predict_files(files, models / "roi").to_dict()
    assert together["skipped"] == alone["skipped"] and len(together["skipped"]) == 1
    assert len(together["predictions"]) == len(alone["predictions"]) == 5
    for ahead, single in zip(together["predictions"], alone["predictions"]):
        assert ahead.keys() == single.keys() and ahead.get("label") == single.get("label")
        assert ahead.get("source") == single.get("source")
        if "probabilities" in ahead:
            assert ahead["probabilities"] == pytest.approx(single["probabilities"], abs=1e-5)
