"""Nothing temporary outlives a SIGKILL: a process killed while it writes leaves debris under
names that hold its process id, and the next run that writes the same place removes it.

Each child below is killed for real (SIGKILL to itself) at the moment the debris exists: just
before an atomic write publishes its temporary, or while the server holds an upload."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from emotrace.atomic import TEMP_PREFIX, owned_directory, remove_debris
from emotrace.cli import app
from emotrace.features.store import FEATURES_FILE, FeatureStore
from emotrace.service.app import create_app, uploads_parent
from test_predictor import save_roi
from test_store import CONFIG, features_for

SRC = Path(__file__).resolve().parents[1] / "src"
TESTS = Path(__file__).resolve().parent

#: makes the child's next atomic publish kill it, its temporary written and not yet renamed
KILL_AT_PUBLISH = """
import os, signal
import emotrace.atomic
emotrace.atomic.publish = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
"""


def run_killed(script: str, **env: str) -> None:
    child = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env={**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{TESTS}", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return save_roi(tmp_path_factory.mktemp("model") / "roi")


def test_debris_of_dead_owners_goes_and_of_live_ones_stays(tmp_path):
    live = owned_directory(tmp_path, "x-")
    dead = tmp_path / f"{TEMP_PREFIX}x-{2**22 + 12345}-abc"  # above Linux's largest pid
    dead.write_text("half")
    unowned = tmp_path / f"{TEMP_PREFIX}x-killed"
    unowned.write_text("no owner in the name")
    assert remove_debris(tmp_path, "x-") == [dead]
    assert live.exists() and unowned.exists()


@pytest.mark.usefixtures("torch_single_thread")
def test_predict_output_killed_while_written_leaves_nothing_after_a_rerun(model, fixture_clips, tmp_path):
    out = tmp_path / "out.json"
    run_killed(
        KILL_AT_PUBLISH
        + f"""
from emotrace.cli import app
app(["predict", {str(fixture_clips[0])!r}, "-m", {str(model)!r}, "--format", "json", "-o", {str(out)!r}])
"""
    )
    assert list(tmp_path.glob(f"{TEMP_PREFIX}out.json-*")) and not out.exists()  # the kill left its temporary
    result = CliRunner().invoke(
        app, ["predict", str(fixture_clips[0]), "-m", str(model), "--format", "json", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert out.exists() and not list(tmp_path.glob(f"{TEMP_PREFIX}*"))


def test_a_compaction_killed_midway_leaves_nothing_after_the_next_open(tmp_path):
    run_killed(
        f"""
from emotrace.features.store import FeatureStore
from test_store import CONFIG, features_for
store = FeatureStore.open({str(tmp_path)!r}, "test-extractor", CONFIG)
store.put("a", "ka", features_for("a"))
store.put("b", "kb", features_for("b"))
"""
        + KILL_AT_PUBLISH
        + "store.compact()\n"
    )
    [directory] = [path for path in tmp_path.iterdir() if path.is_dir()]
    assert list(directory.glob(f"{TEMP_PREFIX}{FEATURES_FILE}-*.h5"))  # the kill left the half-made base file
    store = FeatureStore.open(tmp_path, "test-extractor", CONFIG)
    assert not list(directory.rglob(f"{TEMP_PREFIX}*"))
    assert store.ids() == ["a", "b"] and store.compact()
    assert FeatureStore.at(directory).get("b").data.tolist() == features_for("b").data.tolist()


@pytest.mark.usefixtures("torch_single_thread")
def test_a_server_killed_with_an_upload_leaves_nothing_once_another_starts(model, fixture_clips, tmp_path, monkeypatch):
    run_killed(
        f"""
import os, signal
from fastapi.testclient import TestClient
import emotrace.service.app as service

def killed(request, folder):
    (folder / "upload.wav").write_bytes(b"half an upload")
    os.kill(os.getpid(), signal.SIGKILL)

service.receive_upload = killed
with TestClient(service.create_app({str(model)!r}, workers=0)) as client:
    client.post("/predict", files={{"file": ("clip.wav", b"RIFF")}})
""",
        TMPDIR=str(tmp_path),
    )
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    parent = uploads_parent()
    assert list(parent.rglob("upload.wav"))  # the killed server's upload
    with TestClient(create_app(model, workers=0)) as client:
        assert not list(parent.iterdir())  # swept as the new server started
        answer = client.post("/predict", files={"file": (fixture_clips[0].name, fixture_clips[0].read_bytes())})
        assert answer.status_code == 200, answer.text
    assert not parent.exists()  # the last server out removes the parent too
