"""A file without speech (a beep, room silence, white noise) is a ``no speech`` result, not an
emotion, the same way through the command line, the Python API and the service; speech (the
shipped clips, real RAVDESS) still gets an emotion; ``--no-speech-check`` turns the question
off; and a model that outputs NaN gives a one-line error, never invalid JSON."""

from __future__ import annotations

import csv
import inspect
import io
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from emotrace import api
from emotrace.api import load_model, predict_files
from emotrace.audio import SAMPLE_RATE
from emotrace.cli import app
from emotrace.errors import BatchReport, InputError
from emotrace.inference import sanity, segmentation
from emotrace.inference.batch import predict_batch
from emotrace.inference.predictions import NO_SPEECH, NoSpeech, Prediction, RecordingPrediction
from emotrace.inference.segmentation import MIN_SILENCE_SECONDS, MIN_SPEECH_SECONDS
from emotrace.inference.writers import OutputFormat, render
from emotrace.protocols import UTTERANCE_LEVEL
from emotrace.service import create_app
from test_predictor import LABELS, save_fusion, save_roi

pytestmark = pytest.mark.usefixtures("torch_single_thread")

runner = CliRunner()
#: the keys of a no-speech result's JSON, in order, as the service has always answered them
NO_SPEECH_KEYS = ["source", "start", "end", "duration", "label", "probabilities", "speech", "notice"]


def _write(path: Path, audio: np.ndarray) -> Path:
    sf.write(path, audio.astype(np.float32), SAMPLE_RATE)
    return path


@pytest.fixture(scope="module")
def sounds(tmp_path_factory) -> dict[str, Path]:
    """Two seconds each of a 1 kHz beep, room silence (faint noise: all-zero audio is refused
    as silent) and loud white noise, and 40 s of noise: a long recording without speech."""
    folder = tmp_path_factory.mktemp("sounds")
    rng = np.random.default_rng(0)
    seconds = np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
    return {
        "beep": _write(folder / "beep.wav", 0.5 * np.sin(2 * np.pi * 1000 * seconds)),
        "silence": _write(folder / "silence.wav", 1e-4 * rng.standard_normal(len(seconds))),
        "noise": _write(folder / "noise.wav", np.clip(0.2 * rng.standard_normal(len(seconds)), -1, 1)),
        "long": _write(folder / "long_noise.flac", 0.01 * rng.standard_normal(40 * SAMPLE_RATE)),
    }


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    save_roi(root / "roi")
    save_fusion(root / "fusion")
    return root


def check_no_speech_document(document: dict, name: str, duration: float) -> None:
    assert list(document) == NO_SPEECH_KEYS
    assert Path(document["source"]).name == name
    assert document["label"] == NO_SPEECH and document["probabilities"] is None
    assert document["start"] == 0.0 and document["end"] == document["duration"] == pytest.approx(duration, abs=1e-3)
    assert document["speech"]["present"] is False and document["speech"]["seconds"] < MIN_SPEECH_SECONDS
    assert document["notice"].startswith("no speech found (")
    assert f"at least {MIN_SPEECH_SECONDS:g} s needed" in document["notice"]


def strict_json(text: str) -> dict:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in JSON")

    return json.loads(text, parse_constant=refuse)


# ---------- the Python API ----------


def test_predict_file_gives_no_speech_for_a_beep_silence_and_noise(models, sounds, fixture_clips):
    predictor = load_model(models / "roi")
    for name in ("beep", "silence", "noise"):
        result, waveform = predictor.predict_file_with_audio(sounds[name])
        assert isinstance(result, NoSpeech) and result.label == NO_SPEECH, name
        assert result.source == str(sounds[name]) and result.duration == pytest.approx(2.0)
        assert result.speech_seconds < result.min_speech == MIN_SPEECH_SECONDS
        assert waveform is not None and len(waveform) == 2 * SAMPLE_RATE  # decoded once, handed on
        check_no_speech_document(result.to_dict(), sounds[name].name, 2.0)
        assert result.with_min_confidence(0.9) is result  # nothing to abstain from
    for clip in fixture_clips:
        prediction = predictor.predict_file(clip)
        assert isinstance(prediction, Prediction) and prediction.label in LABELS


def test_predict_files_mixes_no_speech_and_emotions_in_input_order(models, sounds, fixture_clips):
    inputs = [sounds["beep"], fixture_clips[0], sounds["silence"], fixture_clips[1], sounds["noise"]]
    batch = predict_files(inputs, models / "roi", min_confidence=0.99)
    assert [r.label for r in batch.results][::2] == [NO_SPEECH] * 3
    assert all(isinstance(r, Prediction) for r in batch.results[1::2])
    assert batch.report.done == 5 and not batch.report.skipped
    summary = batch.summary()
    assert summary.startswith("5 done, 0 skipped")
    assert all(f"{sounds[name]}: no speech found" in summary for name in ("beep", "silence", "noise"))
    document = strict_json(json.dumps(batch.to_dict(), allow_nan=False))
    for entry, name in zip(document["predictions"][::2], ("beep", "silence", "noise")):
        check_no_speech_document(entry, sounds[name].name, 2.0)
    assert [p["abstained"] for p in document["predictions"][1::2]] == [True, True]  # a tiny model is unsure


def test_speech_check_off_gives_the_beep_an_emotion(models, sounds):
    (prediction,) = predict_files(sounds["beep"], models / "roi", speech_check=False).results
    assert isinstance(prediction, Prediction) and prediction.label in LABELS
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    unchecked = load_model(models / "roi", speech_check=False)
    assert isinstance(unchecked.predict_file(sounds["beep"]), Prediction)
    assert isinstance(predict_files(sounds["beep"], unchecked).results[0], Prediction)
    with pytest.raises(ValueError, match="speech_check"):  # a predictor loaded with the check cannot drop it here
        predict_files(sounds["beep"], load_model(models / "roi"), speech_check=False)


def test_a_transcript_the_model_reads_carries_the_emotion_without_speech(models, sounds):
    reads_text = load_model(models / "fusion").predict_file(sounds["beep"], "Kids are talking by the door")
    assert isinstance(reads_text, Prediction) and reads_text.modalities == {"audio": True, "text": True}
    audio_only = load_model(models / "roi").predict_file(sounds["beep"], "Kids are talking by the door")
    assert isinstance(audio_only, NoSpeech)  # the text would not be read: nothing carries an emotion


def test_a_long_recording_without_speech_is_no_speech_not_an_error(models, sounds, fixture_clips, tmp_path):
    predictor = load_model(models / "roi")
    for result in (predictor.predict_file(sounds["long"]), predictor.predict_recording(sounds["long"])):
        assert isinstance(result, NoSpeech) and result.speech_seconds == 0.0
        check_no_speech_document(result.to_dict(), sounds["long"].name, 40.0)
    unchecked = load_model(models / "roi", speech_check=False).predict_file(sounds["long"])
    assert isinstance(unchecked, NoSpeech)  # no segment, nothing to predict: the check is an utterance's
    with_speech = tmp_path / "with_speech.flac"  # the same noise with a clip inside: a recording again
    noise, _ = sf.read(sounds["long"], dtype="float32")
    clip, _ = sf.read(fixture_clips[0], dtype="float32")
    noise[10 * SAMPLE_RATE : 10 * SAMPLE_RATE + len(clip)] += clip
    recording = predictor.predict_file(_write(with_speech, noise))
    assert isinstance(recording, RecordingPrediction) and recording.timeline


def test_real_ravdess_speech_gets_an_emotion(models, shared_data):
    clips = sorted((shared_data / "ravdess").glob("Actor_0[2-3]/03-01-0[12]-01-*.flac"))  # neutral and calm, quiet
    if not clips:
        pytest.skip(f"no RAVDESS clips under {shared_data / 'ravdess'}")
    batch = predict_files(clips, models / "roi")
    assert len(batch.results) == len(clips) and not batch.report.skipped
    assert all(isinstance(r, Prediction) and r.label in LABELS for r in batch.results)


def test_the_speech_check_and_segmentation_share_their_vad_durations():
    """One home for how long speech and silence must last: the check counts speech as the
    segmenter cuts it."""
    defaults = inspect.signature(segmentation.stream_speech_segments).parameters
    assert defaults["min_speech"].default == MIN_SPEECH_SECONDS == 0.25
    assert defaults["min_silence"].default == MIN_SILENCE_SECONDS == 0.3
    assert inspect.signature(sanity.speech_presence).parameters["min_speech"].default == MIN_SPEECH_SECONDS
    assert not hasattr(sanity, "_MIN_SILENCE")
    assert sanity.MIN_SPEECH_SECONDS is segmentation.MIN_SPEECH_SECONDS


# ---------- the command line ----------


def predict(*args: str | Path):
    return runner.invoke(app, ["predict", *map(str, args)])


def test_cli_json_csv_and_table_say_no_speech(models, sounds, fixture_clips, tmp_path):
    files = [sounds["beep"], sounds["silence"], sounds["noise"], fixture_clips[0]]
    result = predict(*files, "-m", models / "roi", "--format", "json")
    assert result.exit_code == 0, result.output
    document = strict_json(result.stdout)
    for entry, name in zip(document["predictions"], ("beep", "silence", "noise")):
        check_no_speech_document(entry, sounds[name].name, 2.0)
    assert document["predictions"][3]["label"] in LABELS
    assert "4 done, 0 skipped" in result.stderr and f"{sounds['beep']}: no speech found" in result.stderr

    output = tmp_path / "predictions.csv"
    result = predict(*files, "-m", models / "roi", "--format", "csv", "--output", output)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(output.read_text())))
    assert [Path(row["source"]).name for row in rows] == [path.name for path in files]
    for row in rows[:3]:
        assert row["label"] == NO_SPEECH and row["protocol"] == "" and row["end"] == "2.000"
        assert all(row[label] == "" for label in LABELS) and row["regions"] == ""
    assert rows[3]["protocol"] == UTTERANCE_LEVEL
    assert sum(float(rows[3][label]) for label in LABELS) == pytest.approx(1, abs=1e-4)

    table = predict(*files, "-m", models / "roi")
    assert table.exit_code == 0, table.output
    assert table.stdout.count(NO_SPEECH) >= 6  # a row and a caption line each
    assert "utterance-level protocol" in table.stdout and "0.00-2.00" in table.stdout


def test_cli_no_speech_alone_is_a_result_exit_code_0(models, sounds):
    for name in ("beep", "long"):
        result = predict(sounds[name], "-m", models / "roi", "--format", "json")
        assert result.exit_code == 0, result.output
        (entry,) = strict_json(result.stdout)["predictions"]
        assert entry["label"] == NO_SPEECH
    table = predict(sounds["beep"], "-m", models / "roi")
    assert table.exit_code == 0 and NO_SPEECH in table.stdout and "1 done, 0 skipped" in table.stderr


def test_cli_no_speech_check_gives_the_beep_an_emotion(models, sounds):
    result = predict(sounds["beep"], "-m", models / "roi", "--format", "json", "--no-speech-check")
    assert result.exit_code == 0, result.output
    (entry,) = strict_json(result.stdout)["predictions"]
    assert entry["label"] in LABELS and sum(entry["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)


def test_cli_plots_skip_no_speech_with_a_note(models, sounds, fixture_clips, tmp_path):
    plots = tmp_path / "plots"
    result = predict(sounds["beep"], sounds["long"], fixture_clips[0], "-m", models / "roi", "--plot", plots)
    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in plots.iterdir()) == [f"{fixture_clips[0].stem}.png"]
    said = " ".join(result.stderr.split())
    assert f"no plot for {sounds['beep']}: no speech" in said and f"no plot for {sounds['long']}: no speech" in said


# ---------- the service ----------


@pytest.fixture(scope="module")
def client(models):
    with TestClient(create_app(models / "roi")) as client:
        yield client


def test_the_service_answers_no_speech_from_the_shared_path(client, sounds, fixture_clips, monkeypatch):
    from emotrace.inference import media

    checked = []
    real = media.MediaPredictor.lacks_speech
    monkeypatch.setattr(media.MediaPredictor, "lacks_speech", lambda *a, **k: checked.append(1) or real(*a, **k))
    for name in ("beep", "silence", "noise"):
        response = client.post("/predict", files={"file": (sounds[name].name, sounds[name].read_bytes())})
        assert response.status_code == 200, response.text
        document = response.json()
        assert document["skipped"] == []
        (entry,) = document["predictions"]
        check_no_speech_document(entry, sounds[name].name, 2.0)
        assert entry["source"] == sounds[name].name  # the client's name, never the server's copy
    assert len(checked) == 3
    response = client.post("/predict", files={"file": (fixture_clips[0].name, fixture_clips[0].read_bytes())})
    assert response.status_code == 200 and response.json()["predictions"][0]["label"] in LABELS


# ---------- NaN never reaches an output ----------


def nan_on_call(predictor, calls: set[int]) -> list[int]:
    """Make the predictor's model output NaN logits on the ``calls``-th forward passes (from 0)."""
    seen: list[int] = []

    def hook(module, args, output):
        seen.append(len(seen))
        return replace(output, logits=output.logits * math.nan) if seen[-1] in calls else output

    predictor.checkpoints[UTTERANCE_LEVEL].model.register_forward_hook(hook)
    return seen


def test_nan_from_the_model_is_a_one_line_error_and_the_batch_goes_on(models, fixture_clips):
    predictor = load_model(models / "roi")
    nan_on_call(predictor, {1})
    report = BatchReport()
    batch = predict_batch(predictor, fixture_clips, report=report)
    assert [Path(r.source).name for r in batch.results] == [fixture_clips[0].name, fixture_clips[2].name]
    (error,) = report.skipped
    assert error.source == str(fixture_clips[1]) and "NaN" in error.problem and "\n" not in str(error)
    document = strict_json(render(batch.results, report, predictor.labels, OutputFormat.json))
    assert len(document["predictions"]) == 2 and document["skipped"][0]["source"] == str(fixture_clips[1])
    single = load_model(models / "roi")
    nan_on_call(single, {0})
    with pytest.raises(InputError, match=r"^\S+\.flac: .*NaN"):
        single.predict(fixture_clips[0])


def test_the_cli_reports_nan_in_one_line_and_writes_valid_json(models, fixture_clips, monkeypatch):
    def loaded_with_nan(*args, **kwargs):
        predictor = api.load_predictor(*args, **kwargs)
        nan_on_call(predictor, {0})
        return predictor

    monkeypatch.setattr("emotrace.cli.predict.load_predictor", loaded_with_nan)
    result = predict(*fixture_clips[:2], "-m", models / "roi", "--format", "json")
    assert result.exit_code == 0, result.output
    document = strict_json(result.stdout)
    assert [Path(p["source"]).name for p in document["predictions"]] == [fixture_clips[1].name]
    assert "1 done, 1 skipped" in result.stderr
    skipped = [line for line in result.stderr.splitlines() if line.startswith("skipped")]
    assert len(skipped) == 1 and str(fixture_clips[0]) in skipped[0] and "NaN" in skipped[0]


def test_the_json_writer_refuses_nan(models, fixture_clips):
    from emotrace.errors import EmotraceError

    prediction = load_model(models / "roi").predict_file(fixture_clips[0])
    broken = replace(prediction, probabilities=dict.fromkeys(LABELS, math.nan))
    with pytest.raises(EmotraceError, match="cannot be written as JSON"):
        render([broken], BatchReport(), LABELS, OutputFormat.json)


def test_nan_in_attention_dynamics_or_mixture_skips_the_file_not_the_output(models, fixture_clips, monkeypatch):
    from emotrace.inference.predictor import Predictor
    from emotrace.inference.sanity import check_prediction

    prediction = load_model(models / "roi").predict_file(fixture_clips[0])
    assert prediction.attention is not None and prediction.mixture is not None
    broken = {
        "attention": replace(prediction, attention=prediction.attention * math.nan),
        "frame posteriors": replace(prediction, frame_posteriors=prediction.frame_posteriors * math.inf),
        "mixture": replace(prediction, mixture=dict.fromkeys(LABELS, math.nan)),
    }
    for name, bad in broken.items():
        with pytest.raises(InputError, match=rf"^\S+\.flac: the model's {name} holds NaN") as raised:
            check_prediction(bad, LABELS)
        assert "\n" not in str(raised.value)
    assert check_prediction(prediction, LABELS) is prediction

    real = Predictor.predict_piece
    calls: list[int] = []

    def nan_attention_on_the_second(self, piece, speaker_moments=None):
        calls.append(1)
        made = real(self, piece, speaker_moments)
        return replace(made, attention=made.attention * math.nan) if len(calls) == 2 else made

    monkeypatch.setattr(Predictor, "predict_piece", nan_attention_on_the_second)
    batch = predict_files(fixture_clips, models / "roi")
    assert [Path(r.source).name for r in batch.results] == [fixture_clips[0].name, fixture_clips[2].name]
    (error,) = batch.report.skipped
    assert error.source == str(fixture_clips[1]) and "attention holds NaN" in error.problem
    strict_json(render(batch.results, batch.report, LABELS, OutputFormat.json))


def test_nan_in_an_audio_visual_comparison_is_caught(models, fixture_clips):
    """The streams' predictions and their comparison, as AudioVisualPredictor builds them."""
    from emotrace.inference.audiovisual import attention_curve
    from emotrace.inference.predictions import AudioVisualPrediction
    from emotrace.inference.roi_compare import compare_clip
    from emotrace.inference.sanity import check_prediction

    prediction = load_model(models / "roi").predict_file(fixture_clips[0])
    comparison = compare_clip(attention_curve(prediction), attention_curve(prediction))
    fused = AudioVisualPrediction(
        prediction.source,
        0.0,
        prediction.duration,
        prediction.label,
        prediction.probabilities,
        prediction.protocol,
        {"audio": True, "video": True},
        audio=prediction,
        video=prediction,
        comparison=comparison,
    )
    assert check_prediction(fused, LABELS) is fused
    for bad in (replace(comparison, pearson=math.nan), replace(comparison, audio_regions=((0.0, math.inf),))):
        with pytest.raises(InputError, match="ROI comparison's .* holds NaN"):
            check_prediction(replace(fused, comparison=bad), LABELS)
    with pytest.raises(InputError, match="attention holds NaN"):
        check_prediction(replace(fused, video=replace(prediction, attention=prediction.attention * math.nan)), LABELS)


def test_presence_stops_early_but_answers_as_the_whole_clip(sounds, fixture_clips):
    """The check stops reading once a run of speech is long enough; its answer must be the
    one of the full pass, for speech that starts late as well as for non-speech."""
    from emotrace.audio import load_audio

    speech = load_audio(fixture_clips[0])
    late = np.concatenate([np.zeros(3 * SAMPLE_RATE, np.float32), speech])
    waves = [speech, late, *(load_audio(path) for path in sounds.values())]
    for wave in waves:
        full = sanity.presence_from_probabilities(segmentation.frame_probabilities(wave), len(wave) / SAMPLE_RATE)
        assert sanity.speech_presence(wave).present == full.present
    assert sanity.speech_presence(late).present and not full.present  # the last sound is not speech


def test_batched_presences_answer_as_each_clip_alone(sounds, fixture_clips):
    """Clips read side by side (different lengths, speech and not, more than one batch of rows)
    get the answer each gets on its own."""
    from emotrace.audio import load_audio

    speech = [load_audio(path) for path in fixture_clips]
    waves = [*speech, *(load_audio(path) for path in sounds.values())]
    waves += [np.concatenate([np.zeros(2 * SAMPLE_RATE, np.float32), wave]) for wave in speech]
    waves = (waves * (sanity.VAD_ROWS // len(waves) + 2))[: sanity.VAD_ROWS + 3]
    alone = [sanity.speech_presence(wave) for wave in waves]
    together = sanity.speech_presences(waves)
    assert [p.present for p in together] == [p.present for p in alone]
    for batched, single in zip(together, alone):
        if not single.present:
            assert batched == single  # read to the end either way
    assert any(p.present for p in together) and not all(p.present for p in together)
    assert sanity.speech_presences([]) == []
