"""``emotrace predict`` gives the JSON and CSV it gave before the inference path was rebuilt.

``tests/golden/`` holds two tiny checkpoints (ROI attention on log-mel, with its
speaker-adaptive twin, and query fusion on log-mel + GloVe) and the outputs the CLI wrote
for them, and for the packaged default model, on the shipped clips and on a
two-and-a-half-minute recording, recorded before the refactor. Run this file with
``EMOTRACE_RECORD_GOLDEN=1`` to record them again after a deliberate change of behaviour.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from emotrace.cli import app
from test_predictor import long_recording

pytestmark = pytest.mark.usefixtures("torch_single_thread")

GOLDEN = Path(__file__).resolve().parent / "golden"
RECORD = os.environ.get("EMOTRACE_RECORD_GOLDEN") == "1"
NUMERIC_TOLERANCE = 2e-5  # outputs are rounded to 5 decimals; allow one unit of rounding


@pytest.fixture(scope="module")
def inputs(fixture_clips, tmp_path_factory) -> Path:
    """The shipped clips (a folder per actor) and a long recording made of them."""
    root = tmp_path_factory.mktemp("golden-inputs")
    for clip in fixture_clips:
        (root / "speakers" / clip.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(clip, root / "speakers" / clip.parent.name / clip.name)
    long_recording(fixture_clips, root / "meeting.flac")
    return root


def _clips(root: Path) -> list[str]:
    return sorted(str(path) for path in (root / "speakers").rglob("*.flac"))


CASES: dict[str, Any] = {
    "roi_clips.json": lambda root: [*_clips(root), "-m", GOLDEN / "roi", "--format", "json"],
    "roi_clips.csv": lambda root: [*_clips(root), "-m", GOLDEN / "roi", "--format", "csv"],
    "roi_recording.json": lambda root: [root / "meeting.flac", "-m", GOLDEN / "roi", "--format", "json"],
    "roi_adaptive.json": lambda root: [
        root / "speakers",
        "-m",
        GOLDEN / "roi-adaptive",
        "--adapt-speaker",
        "--format",
        "json",
    ],
    "fusion_text.json": lambda root: [
        *_clips(root),
        "-m",
        GOLDEN / "fusion",
        "--text",
        "Kids are talking by the door",
        "--format",
        "json",
    ],
    "fusion_audio_only.json": lambda root: [*_clips(root), "-m", GOLDEN / "fusion", "--format", "json"],
    # the packaged default model (Whisper-base frames): record again when the default changes;
    # float32, because --precision auto is bfloat16 or float32 depending on the CPU
    "default_clips.json": lambda root: [*_clips(root), "--format", "json", "--precision", "float32"],
}


def _portable(value: Any, root: str) -> Any:
    """Sources relative to the inputs' folder, so the records hold no machine paths."""
    if isinstance(value, str):
        return value.replace(root + os.sep, "").replace(root, ".")
    if isinstance(value, list):
        return [_portable(item, root) for item in value]
    if isinstance(value, dict):
        return {key: _portable(item, root) for key, item in value.items()}
    return value


def _assert_close(actual: Any, expected: Any, where: str = "") -> None:
    if isinstance(expected, float) and isinstance(actual, (int, float)):
        assert actual == pytest.approx(expected, abs=NUMERIC_TOLERANCE), where
    elif isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), where
        for key in expected:
            _assert_close(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), where
        for index, (a, e) in enumerate(zip(actual, expected)):
            _assert_close(a, e, f"{where}[{index}]")
    else:
        assert actual == expected, where


@pytest.mark.parametrize("name", sorted(CASES))
def test_predict_output_matches_the_recording(name, inputs):
    result = CliRunner().invoke(app, ["predict", *map(str, CASES[name](inputs))])
    assert result.exit_code == 0, result.output
    golden = GOLDEN / "outputs" / name
    if name.endswith(".json"):
        output = _portable(json.loads(result.stdout), str(inputs))
        if RECORD:
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_text(json.dumps(output, indent=1) + "\n")
        _assert_close(output, json.loads(golden.read_text()))
    else:
        output = _portable(result.stdout, str(inputs))
        if RECORD:
            golden.write_text(output)
        assert output == golden.read_text()
