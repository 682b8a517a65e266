"""The service under pressure: a full queue answers 503 with Retry-After before reading the
upload, long uploads are refused, foreign pages and host names are turned away, /metrics
tells a monitor what happened, nothing is left on disk, a client that leaves stops its
prediction, and SIGTERM stops a server in the middle of one."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from emotrace.audio import SAMPLE_RATE, load_audio
from emotrace.cli.serve import DEFAULT_MAX_DURATION, DEFAULT_MAX_QUEUE
from emotrace.inference.predictions import NO_SPEECH
from emotrace.service import create_app
from emotrace.service.app import DEFAULT_MAX_DURATION as SERVICE_MAX_DURATION
from emotrace.service.app import DEFAULT_MAX_QUEUE as SERVICE_MAX_QUEUE
from emotrace.service.app import LOOPBACK_NAMES
from test_hostile_inputs import six_hours_of_silence

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SRC = Path(__file__).resolve().parent.parent / "src"
METRIC = re.compile(r'^([a-z_]+)(\{[a-z_]+="[^"]*"\})? (\S+)$')


def upload(client, path: Path, **headers):
    return client.post("/predict", files={"file": (path.name, path.read_bytes())}, headers=headers)


def metrics(text: str) -> dict[str, float]:
    """Prometheus text as {'name{labels}': value}; every line must be a comment or a sample."""
    values = {}
    for line in text.splitlines():
        if line.startswith("# "):
            assert re.match(r"^# (HELP|TYPE) [a-z_]+ ", line), line
            continue
        match = METRIC.match(line)
        assert match, line
        values[f"{match[1]}{match[2] or ''}"] = float(match[3])
    return values


def test_the_cli_repeats_the_services_defaults():
    assert (DEFAULT_MAX_DURATION, DEFAULT_MAX_QUEUE) == (SERVICE_MAX_DURATION, SERVICE_MAX_QUEUE)


def test_past_the_queue_requests_get_503_with_retry_after_before_their_upload_is_read(fixture_clips, monkeypatch):
    with TestClient(create_app(max_queue=1)) as client:
        predictor, service = client.app.state.predictor, client.app.state.service
        release, entered = threading.Event(), threading.Event()
        predict = predictor.predict

        def held(*args, **kwargs):
            entered.set()
            release.wait(timeout=60)
            return predict(*args, **kwargs)

        monkeypatch.setattr(predictor, "predict", held)
        answers = []
        threads = [threading.Thread(target=lambda: answers.append(upload(client, fixture_clips[0]))) for _ in range(2)]
        threads[0].start()
        assert entered.wait(timeout=60)
        threads[1].start()
        deadline = time.monotonic() + 30
        while service.admission.waiting < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        waiting = metrics(client.get("/metrics").text)
        assert waiting["emotrace_queue_length"] == 1 and waiting["emotrace_predictions_running"] == 1

        folders_before = sorted(service.root.iterdir())
        started = time.monotonic()
        refused = upload(client, fixture_clips[1])
        assert time.monotonic() - started < 5  # an answer, not a wait
        assert refused.status_code == 503
        assert int(refused.headers["retry-after"]) >= 1
        body = refused.json()
        assert list(body) == ["error"] and "busy" in body["error"] and "\n" not in body["error"]
        assert sorted(service.root.iterdir()) == folders_before  # the refused upload never reached the disk
        assert len(folders_before) == 2

        release.set()
        for thread in threads:
            thread.join(timeout=120)
        assert [answer.status_code for answer in answers] == [200, 200]
        after = metrics(client.get("/metrics").text)
        assert after['emotrace_rejected_total{reason="queue_full"}'] == 1
        assert after['emotrace_predict_requests_total{code="200"}'] == 2
        assert after["emotrace_queue_length"] == 0 and after["emotrace_predictions_running"] == 0
        assert list(service.root.iterdir()) == []  # every upload removed
        root = service.root
    assert not root.exists()  # and the service's folder with the server


def test_metrics_are_prometheus_text_with_a_consistent_histogram(fixture_clips, write_tone):
    with TestClient(create_app()) as client:
        assert upload(client, fixture_clips[2]).status_code == 200
        assert upload(client, write_tone("short.wav", seconds=0.05)).status_code == 422
        response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    values = metrics(response.text)
    buckets = [value for name, value in values.items() if name.startswith("emotrace_predict_seconds_bucket")]
    assert buckets == sorted(buckets) and buckets[-1] == values["emotrace_predict_seconds_count"] == 2
    assert values['emotrace_predict_seconds_bucket{le="+Inf"}'] == 2 and values["emotrace_predict_seconds_sum"] > 0
    assert values['emotrace_predict_requests_total{code="422"}'] == 1
    assert values["emotrace_workers"] == 1 and values["emotrace_queue_capacity"] == SERVICE_MAX_QUEUE


def test_uploads_longer_than_the_limit_are_refused_from_their_header(fixture_clips, tmp_path):
    long = tmp_path / "two_minutes.flac"
    sf.write(long, np.tile(load_audio(fixture_clips[0]), 33), SAMPLE_RATE)
    six_hours = six_hours_of_silence(tmp_path / "six_hours.flac")
    with TestClient(create_app(max_duration=60)) as client:
        assert client.get("/health").json()["max_duration_seconds"] == 60
        started = time.monotonic()
        refused = upload(client, long)
        assert refused.status_code == 422
        assert refused.json()["error"].startswith("two_minutes.flac: is 12") and "60 s limit" in refused.json()["error"]
    with TestClient(create_app()) as client:
        refused = upload(client, six_hours)
        assert refused.status_code == 422
        error = refused.json()["error"]
        assert error.startswith("six_hours.flac: is 21600.0 s long") and f"{SERVICE_MAX_DURATION:g} s limit" in error
    assert time.monotonic() - started < 60  # from the header: six hours are never decoded


def test_a_beep_gets_a_no_speech_result_instead_of_an_emotion(client_default, write_tone):
    beep = write_tone("beep.wav", freq=1000, seconds=2.0)
    response = upload(client_default, beep)
    assert response.status_code == 200, response.text
    (prediction,) = response.json()["predictions"]
    assert prediction["label"] == NO_SPEECH and prediction["probabilities"] is None
    assert prediction["speech"] == {"present": False, "seconds": 0.0}
    assert prediction["source"] == "beep.wav" and prediction["notice"].startswith("no speech found")


@pytest.fixture(scope="module")
def client_default():
    with TestClient(create_app()) as client:
        yield client


def test_bound_to_loopback_only_loopback_names_and_its_own_pages_are_answered(fixture_clips):
    app = create_app(allowed_hosts=LOOPBACK_NAMES)
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        assert client.get("/health").status_code == 200
        assert client.get("/", headers={"host": "localhost:8000"}).status_code == 200
        assert client.get("/health", headers={"host": "[::1]:8000"}).status_code == 200
        same_page = upload(client, fixture_clips[0], origin="http://127.0.0.1:8000")
        assert same_page.status_code == 200, same_page.text

        rebound = client.get("/health", headers={"host": "attacker.example:8000"})  # DNS rebinding
        assert rebound.status_code == 403 and "attacker.example" in rebound.json()["error"]
        cross_site = upload(client, fixture_clips[0], origin="https://attacker.example")
        assert cross_site.status_code == 403
        assert cross_site.json()["error"].startswith("pages from https://attacker.example may not use this service")
        assert upload(client, fixture_clips[0], origin="null").status_code == 403  # a sandboxed frame
        counted = metrics(client.get("/metrics").text)
        assert counted['emotrace_rejected_total{reason="forbidden_host"}'] == 3
        assert counted['emotrace_predict_requests_total{code="200"}'] == 1  # refused ones never got in


# ---------- a real server in its own process: worker processes, disconnects and SIGTERM ----------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def multipart(path: Path) -> tuple[bytes, str]:
    boundary = "emotrace-test-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + path.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def send_upload(port: int, path: Path) -> socket.socket:
    """POST ``path`` on a raw socket and return it unread, so the test can hang up."""
    body, content_type = multipart(path)
    connection = socket.create_connection(("127.0.0.1", port), timeout=120)
    head = (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    connection.sendall(head.encode() + body)
    return connection


def workers_of(pid: int) -> set[int]:
    """The worker processes of server ``pid`` (not multiprocessing's resource tracker)."""
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.add(int(child))
    return found


def alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    try:
        return "\nState:\tZ" not in status.read_text()
    except FileNotFoundError:
        return False


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_worker_processes_stop_for_a_client_that_left_and_sigterm_stops_the_server(fixture_clips, tmp_path):
    long = tmp_path / "long.flac"  # ten minutes of noise: the voice activity pass alone takes a while
    sf.write(long, 0.05 * np.random.default_rng(0).standard_normal(600 * 8000).astype(np.float32), 8000)
    temp = tmp_path / "tmp"
    temp.mkdir()
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emotrace",
            "serve",
            "--port",
            str(port),
            "--workers",
            "1",
            "--max-duration",
            "3600",
            "--shutdown-grace",
            "1",
        ],
        env={**os.environ, "PYTHONPATH": str(SRC), "TMPDIR": str(temp)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)

    def running() -> float:
        return metrics(http.get("/metrics").text)["emotrace_predictions_running"]

    try:

        def ready() -> bool:
            assert server.poll() is None, server.stdout.read()
            try:
                return http.get("/health").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, 300, "the server to start")
        (worker,) = workers_of(server.pid)

        # a client that hangs up mid-prediction: its worker is stopped and replaced
        gone = send_upload(port, long)
        wait_for(lambda: running() == 1, 60, "the prediction to start")
        gone.close()
        wait_for(lambda: not alive(worker), 30, "the worker to be stopped")
        counted = metrics(http.get("/metrics").text)
        assert (
            counted['emotrace_cancelled_total{stage="running"}'] == 1 and counted["emotrace_predictions_running"] == 0
        )
        answered = http.post("/predict", files={"file": (fixture_clips[0].name, fixture_clips[0].read_bytes())})
        assert answered.status_code == 200, answered.text  # by the fresh worker
        workers = workers_of(server.pid)
        assert len(workers) == 1 and worker not in workers

        # SIGTERM mid-prediction, with another request waiting
        busy = send_upload(port, long)
        wait_for(lambda: running() == 1, 60, "the prediction to start")
        waiting = send_upload(port, fixture_clips[1])
        wait_for(lambda: metrics(http.get("/metrics").text)["emotrace_queue_length"] == 1, 30, "the queue")
        assert any(path.name.startswith("emotrace-serve-") for path in temp.iterdir())
        stopped_at = time.monotonic()
        server.send_signal(signal.SIGTERM)
        assert b" 503 " in waiting.recv(4096)  # told at once, not left to wait out the grace
        server.wait(timeout=60)
        assert time.monotonic() - stopped_at < 20, "SIGTERM took too long"
        # uvicorn raises the signal again once it has shut down, so the exit status says SIGTERM
        assert server.returncode in (0, -signal.SIGTERM), server.stdout.read()
        assert "Traceback" not in server.stdout.read()
        assert not any(alive(pid) for pid in workers)
        reply = busy.recv(4096)  # stopped after the grace: the connection closes, or a 5xx says why
        assert reply == b"" or reply.startswith(b"HTTP/1.1 5"), reply[:200]
        # no upload and no folder of the service left behind (torch keeps caches of its own there)
        assert not [path for path in temp.iterdir() if path.name.startswith("emotrace")]
    finally:
        http.close()
        if server.poll() is None:
            server.kill()
            server.wait()


def test_a_worker_that_crashes_costs_one_500_and_is_replaced(fixture_clips, tmp_path):
    """A decoder that segfaults on a hostile file takes down its worker, never the server."""
    long = tmp_path / "long.flac"
    sf.write(long, 0.05 * np.random.default_rng(1).standard_normal(600 * 8000).astype(np.float32), 8000)
    with TestClient(create_app(workers=1)) as client:
        runner = client.app.state.service.runner
        (worker,) = runner.all
        answers = []
        thread = threading.Thread(target=lambda: answers.append(upload(client, long)))
        thread.start()
        wait_for(lambda: client.app.state.service.admission.running == 1, 60, "the prediction to start")
        time.sleep(0.5)
        os.kill(worker.process.pid, signal.SIGSEGV)
        thread.join(timeout=60)
        (crashed,) = answers
        assert crashed.status_code == 500
        assert crashed.json() == {"error": "the worker process was killed by signal 11 while predicting long.flac"}
        replaced = upload(client, fixture_clips[0])
        assert replaced.status_code == 200, replaced.text
        assert worker not in runner.all and len(runner.all) == 1
        assert list(client.app.state.service.root.iterdir()) == []


def test_serve_guards_hosts_only_when_bound_to_loopback(monkeypatch):
    from typer.testing import CliRunner

    from emotrace.cli import app as cli
    from emotrace.cli import serve as serve_command

    served = {}
    monkeypatch.setattr(serve_command, "run_server", lambda app, **options: served.update(app=app, **options))
    for host, guarded in (("127.0.0.1", True), ("0.0.0.0", False)):
        done = CliRunner().invoke(
            cli, ["serve", "--host", host, "--workers", "0", "--allow-host", "box.lan", "--shutdown-grace", "3"]
        )
        assert done.exit_code == 0, done.output
        assert served["shutdown_grace"] == 3
        with TestClient(served["app"], base_url="http://elsewhere.example") as client:
            assert client.get("/health").status_code == (403 if guarded else 200)
            assert client.get("/health", headers={"host": "box.lan:8000"}).status_code == 200
