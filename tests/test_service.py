"""The HTTP service: the packaged default model (and a tiny text model) behind FastAPI,
driven through its TestClient as a browser or curl would drive it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from itertools import pairwise
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from emotrace.api import DEFAULT_MODEL, available_models
from emotrace.audio import SAMPLE_RATE, load_audio
from emotrace.checkpoint import Checkpoint
from emotrace.cli import app as cli
from emotrace.cli import serve as serve_command
from emotrace.cli.serve import DEFAULT_MAX_UPLOAD_MB
from emotrace.features.transforms import InputSpec
from emotrace.labels import EMOTION_COLOURS, RAVDESS_8
from emotrace.models import build_model
from emotrace.service import DEFAULT_MAX_UPLOAD_BYTES, create_app

pytestmark = pytest.mark.usefixtures("torch_single_thread")

LABELS = list(RAVDESS_8.classes)
OPUS_RATE = 48000  # what browsers' MediaRecorder encodes opus at


@pytest.fixture(scope="module")
def client():
    """The default service; as a context manager, so every request shares one event loop
    (the test of concurrency needs that)."""
    with TestClient(create_app()) as client:
        yield client


@pytest.fixture(scope="module")
def text_model(tmp_path_factory) -> Path:
    """A tiny query-fusion checkpoint reading 16 log-mel bins and GloVe-50d words."""
    torch.manual_seed(0)
    model = build_model(
        "query_fusion",
        num_classes=len(LABELS),
        input_dims={"audio": 16, "text": 50},
        projection_dim=16,
        num_heads=2,
        encoder_layers=1,
        decoder_layers=1,
        feedforward_dim=32,
    )
    inputs = {"audio": InputSpec("logmel:bins=16", frame_pooling=4), "text": InputSpec("glove-50d")}
    folder = tmp_path_factory.mktemp("models") / "fusion"
    return Checkpoint(model, tuple(LABELS), inputs, "utterance-level").save(folder)


def upload(client: TestClient, path: Path, text: str | None = None):
    """POST ``path`` as a browser's form does, with ``text`` when given."""
    form = {} if text is None else {"text": text}
    return client.post("/predict", files={"file": (path.name, path.read_bytes())}, data=form)


def write_opus(path: Path, waveform: np.ndarray, container: str) -> Path:
    """Opus at 48 kHz as a browser's MediaRecorder writes it; webm as a live stream, with no
    duration in its header (what Chrome and Firefox produce)."""
    samples = soxr.resample(waveform, SAMPLE_RATE, OPUS_RATE).astype(np.float32)
    options = {"live": "1"} if container == "webm" else {}
    with av.open(str(path), "w", format=container, options=options) as output:
        stream = output.add_stream("libopus", rate=OPUS_RATE)
        stream.layout = "mono"
        for start in range(0, len(samples), 4800):
            frame = av.AudioFrame.from_ndarray(samples[None, start : start + 4800].copy(), format="flt", layout="mono")
            frame.rate = OPUS_RATE
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
    return path


def check_utterance(prediction: dict, labels: list[str], duration: float) -> None:
    """A prediction as the CLI's JSON has it, consistent with a clip of ``duration`` seconds."""
    assert prediction["label"] in labels and prediction["protocol"] == "utterance-level"
    assert list(prediction["probabilities"]) == labels
    assert sum(prediction["probabilities"].values()) == pytest.approx(1, abs=1e-3)
    assert prediction["label"] == max(prediction["probabilities"], key=prediction["probabilities"].get)
    assert sum(prediction["mixture"].values()) == pytest.approx(1, abs=1e-3)
    dynamics = prediction["dynamics"]
    frame = 1 / dynamics["frame_rate"]
    start, end = prediction["start"], prediction["end"]
    assert end == pytest.approx(start + duration, abs=0.01)
    assert prediction["segments"]
    for region in prediction["segments"]:
        assert start <= region["start"] < region["end"] <= end + frame and 0 < region["mass"] <= 1
    times = np.array(dynamics["times"])
    assert np.all(np.diff(times) > 0) and start <= times[0] and times[-1] <= end + frame
    posteriors = np.array(dynamics["frame_posteriors"])
    assert posteriors.shape == (len(times), len(labels))
    assert posteriors.sum(1) == pytest.approx(np.ones(len(times)), abs=1e-3)
    assert sum(dynamics["attention"]) == pytest.approx(1, abs=1e-3)


def test_health_names_the_model_its_labels_and_protocol(client):
    health = client.get("/health")
    assert health.status_code == 200
    body = health.json()
    (packaged,) = [info for info in available_models() if info.name == DEFAULT_MODEL]
    assert body["model"] == DEFAULT_MODEL and body["labels"] == list(packaged.labels)
    assert body["protocol"] == "utterance-level" and body["reads_text"] is False
    assert body["colours"] == {label: EMOTION_COLOURS[label] for label in packaged.labels}
    assert body["max_upload_bytes"] == DEFAULT_MAX_UPLOAD_BYTES == round(DEFAULT_MAX_UPLOAD_MB * 1e6)


def test_the_service_does_not_load_matplotlib():
    """Its emotion colours come from emotrace.labels, so a server never imports the plotting stack."""
    check = "import sys, emotrace.service.app; print(sorted(m for m in sys.modules if m.startswith('matplotlib')))"
    loaded = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_a_shipped_clip_gets_the_json_the_cli_gives(client, fixture_clips, tmp_path):
    clip = fixture_clips[0]
    response = upload(client, clip)
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["skipped"] == []
    (prediction,) = document["predictions"]
    assert prediction["source"] == clip.name  # the client's name, not the server's temporary copy
    check_utterance(prediction, client.get("/health").json()["labels"], sf.info(clip).duration)

    out = tmp_path / "cli.json"
    done = CliRunner().invoke(cli, ["predict", str(clip), "--format", "json", "--output", str(out)])
    assert done.exit_code == 0, done.output
    (from_cli,) = json.loads(out.read_text())["predictions"]
    assert {**prediction, "source": from_cli["source"]} == from_cli


@pytest.mark.parametrize("container", ["webm", "ogg"])
def test_a_browser_recording_in_opus_is_read(client, fixture_clips, tmp_path, container):
    waveform = load_audio(fixture_clips[1])
    recording = write_opus(tmp_path / f"recording.{container}", waveform, container)
    response = upload(client, recording)
    assert response.status_code == 200, response.text
    (prediction,) = response.json()["predictions"]
    assert prediction["source"] == recording.name
    check_utterance(prediction, LABELS, prediction["duration"])
    assert prediction["duration"] == pytest.approx(len(waveform) / SAMPLE_RATE, abs=0.05)


def test_text_reaches_a_model_that_reads_it(text_model, fixture_clips, tmp_path):
    clip = fixture_clips[0]
    with TestClient(create_app(text_model)) as client:
        assert client.get("/health").json()["reads_text"] is True
        with_text = upload(client, clip, "Kids are talking by the door")
        without = upload(client, clip, "   ")  # a browser's empty text field is no transcript
        assert with_text.status_code == 200 and without.status_code == 200, (with_text.text, without.text)
        (read,) = with_text.json()["predictions"]
        (unread,) = without.json()["predictions"]
        assert (read["transcript"], read["transcript_source"]) == ("Kids are talking by the door", "given")
        assert read["modalities"] == {"audio": True, "text": True}
        assert unread["modalities"] == {"audio": True, "text": False} and unread["transcript"] is None
        assert read["probabilities"] != unread["probabilities"]

        long = tmp_path / "long.wav"
        sf.write(long, np.tile(load_audio(clip), 11), SAMPLE_RATE)  # about 35 s
        refused = upload(client, long, "Kids are talking by the door")
        assert refused.status_code == 422
        error = refused.json()["error"]
        assert error.startswith("long.wav: is over 30 s") and "no transcript" in error


def test_text_sent_to_an_audio_model_is_accepted_and_not_used(client, fixture_clips):
    response = upload(client, fixture_clips[2], "Dogs are sitting by the door")
    assert response.status_code == 200, response.text
    (prediction,) = response.json()["predictions"]
    assert prediction["modalities"] == {"audio": True} and prediction["transcript"] is None


def test_a_long_upload_gets_a_timeline_of_speech_segments(client, fixture_clips, tmp_path):
    silence = np.zeros(round(1.5 * SAMPLE_RATE), np.float32)
    pieces = [silence]
    for clip in fixture_clips * 3:
        pieces += [load_audio(clip), silence]
    audio = np.concatenate(pieces)
    audio += 1e-4 * np.random.default_rng(0).standard_normal(len(audio)).astype(np.float32)
    path = tmp_path / "interview.flac"
    sf.write(path, audio, SAMPLE_RATE)
    duration = len(audio) / SAMPLE_RATE
    assert duration > 30

    response = upload(client, path)
    assert response.status_code == 200, response.text
    (recording,) = response.json()["predictions"]
    assert recording["source"] == path.name and recording["duration"] == pytest.approx(duration, abs=0.01)
    assert sum(recording["shares"].values()) == pytest.approx(1, abs=1e-3)
    assert recording["label"] == max(recording["shares"], key=recording["shares"].get)
    timeline = recording["timeline"]
    assert len(timeline) == 3 * len(fixture_clips)
    assert all(a["end"] <= b["start"] for a, b in pairwise(timeline))
    for segment in timeline:
        assert segment["source"] == path.name and 0 <= segment["start"] < segment["end"] <= duration
        check_utterance(segment, LABELS, segment["duration"])


def test_bad_uploads_get_a_one_line_4xx_naming_the_file_and_problem(client, write_tone):
    short = write_tone("short.wav", seconds=0.05)
    silent = short.with_name("silent.wav")
    sf.write(silent, np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)
    cases = [
        ("empty.wav", b"", "empty"),
        ("notes.wav", b"These are my notes, not audio.\n" * 20, "is not an audio file"),
        ("short.wav", short.read_bytes(), "too short"),
        ("silent.wav", silent.read_bytes(), "silent"),
    ]
    for name, content, problem in cases:
        response = client.post("/predict", files={"file": (name, content)})
        assert 400 <= response.status_code < 500, (name, response.status_code, response.text)
        body = response.json()
        assert list(body) == ["error"] and "\n" not in body["error"] and "Traceback" not in body["error"]
        assert body["error"].startswith(f"{name}: ") and problem in body["error"], body["error"]


def test_a_request_without_the_file_says_which_field_is_missing(client):
    response = client.post("/predict", data={"text": "hello"})
    assert response.status_code == 400
    assert response.json() == {"error": "form field 'file' (the audio, sent as multipart/form-data) is missing"}


def test_uploads_over_the_limit_are_refused_before_they_are_read(fixture_clips):
    clip = fixture_clips[0]
    limit = 10_000
    assert clip.stat().st_size > limit
    with TestClient(create_app(max_upload_bytes=limit)) as client:
        declared = upload(client, clip)  # Content-Length says it all
        assert declared.status_code == 413
        error = declared.json()["error"]
        assert error.startswith("upload is 0.") and "over the 0.01 MB limit" in error

        def streamed():  # chunked, no Content-Length: counted as it arrives
            yield b'--cut\r\nContent-Disposition: form-data; name="file"; filename="a.flac"\r\n\r\n'
            data = clip.read_bytes()
            for start in range(0, len(data), 4096):
                yield data[start : start + 4096]
            yield b"\r\n--cut--\r\n"

        chunked = client.post(
            "/predict", content=streamed(), headers={"content-type": "multipart/form-data; boundary=cut"}
        )
        assert "content-length" not in chunked.request.headers
        assert chunked.status_code == 413 and "over the 0.01 MB limit" in chunked.json()["error"]
        assert client.get("/health").json()["max_upload_bytes"] == limit


def test_predictions_run_one_at_a_time_off_the_event_loop(client, fixture_clips, monkeypatch):
    """A prediction holds the model, not the server: /health answers meanwhile, and
    concurrent uploads wait their turn."""
    predictor = client.app.state.predictor
    predict = predictor.predict
    release, entered = threading.Event(), threading.Event()
    inside, most, finished = [0], [0], []

    def slow_predict(*args, **kwargs):
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        entered.set()
        release.wait(timeout=20)
        try:
            return predict(*args, **kwargs)
        finally:
            inside[0] -= 1
            finished.append(time.monotonic())

    monkeypatch.setattr(predictor, "predict", slow_predict)
    responses = []
    threads = [threading.Thread(target=lambda: responses.append(upload(client, fixture_clips[0]))) for _ in range(3)]
    for thread in threads:
        thread.start()
    assert entered.wait(timeout=20)
    assert client.get("/health").status_code == 200
    assert not finished  # answered while the first prediction was still held
    time.sleep(1.0)  # time for the other uploads to reach the model, were it not guarded
    release.set()
    for thread in threads:
        thread.join(timeout=60)
    assert [response.status_code for response in responses] == [200] * 3
    assert most[0] == 1


def test_the_page_is_served_self_contained_with_an_upload_form_and_recorder(client):
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    assert re.search(r'<form id="upload-form"', page) and re.search(r'<input id="audio-file"[^>]*type="file"', page)
    assert "MediaRecorder" in page and 'fetch("predict"' in page
    # offline: nothing loaded from elsewhere (the SVG namespace is a name, not a download)
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', page) and "@import" not in page
    assert not re.search(r"url\(\s*['\"]?https?:", page)
    # every input and button is labelled
    for input_id in re.findall(r'<input id="([^"]+)"', page):
        assert f'<label for="{input_id}"' in page, input_id
    assert all(text.strip() for text in re.findall(r"<button[^>]*>([^<]*)</button>", page))


def test_serve_runs_uvicorn_on_localhost_with_the_options(monkeypatch):
    served = {}
    monkeypatch.setattr(
        serve_command,
        "run_server",
        lambda app, host, port, shutdown_grace: served.update(app=app, host=host, port=port),
    )
    done = CliRunner().invoke(cli, ["serve", "--port", "8123", "--max-upload-mb", "5", "--workers", "0"])
    assert done.exit_code == 0, done.output
    assert (served["host"], served["port"]) == ("127.0.0.1", 8123)
    with TestClient(served["app"], base_url="http://127.0.0.1:8123") as client:
        assert client.get("/health").json()["max_upload_bytes"] == 5_000_000


def test_serve_names_the_extra_when_it_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if uninstalled
    for name in ("emotrace.service", "emotrace.service.app"):
        monkeypatch.delitem(sys.modules, name)
    done = CliRunner().invoke(cli, ["serve"])
    assert done.exit_code == 1
    assert "pip install 'emotrace[service]'" in done.output and "uvicorn" in done.output
    with pytest.raises(ModuleNotFoundError, match=r"emotrace\[service\]"):
        import emotrace.service  # noqa: F401


def test_serve_reports_an_unknown_model_in_one_line():
    done = CliRunner().invoke(cli, ["serve", "--model", "no-such-model"])
    assert done.exit_code == 1
    assert "no-such-model" in done.output and "Traceback" not in done.output
