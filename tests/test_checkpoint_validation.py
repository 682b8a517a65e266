"""A broken model folder is refused in one line that names the file and the problem:
corrupt or cut safetensors, a config.json whose model does not match the weights, or
labels that do not fit the outputs."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from emotrace.api import load_model
from emotrace.checkpoint import CONFIG_FILE, WEIGHTS_FILE, CheckpointError, load_checkpoint
from emotrace.cli import app
from emotrace.errors import InputError
from test_predictor import save_roi


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return save_roi(tmp_path_factory.mktemp("tiny") / "roi")


def corrupt_header(folder: Path) -> None:
    weights = folder / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[8:40] = b"#" * 32  # the JSON header that lists the tensors
    weights.write_bytes(bytes(data))


def truncate(folder: Path) -> None:
    weights = folder / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def edit_config(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        config = json.loads((folder / CONFIG_FILE).read_text())
        change(config)
        (folder / CONFIG_FILE).write_text(json.dumps(config))

    return edit


BROKEN = {
    "corrupt": (corrupt_header, WEIGHTS_FILE, "not a whole safetensors file"),
    "truncated": (truncate, WEIGHTS_FILE, "not a whole safetensors file"),
    "shapes": (edit_config(lambda c: c["model"].update(lstm_hidden=12)), WEIGHTS_FILE, "does not match config.json"),
    "seven_labels": (edit_config(lambda c: c["labels"].pop()), CONFIG_FILE, "7 labels for a model with 8 outputs"),
    "not_json": (lambda f: (f / CONFIG_FILE).write_text('{"format": 1, '), CONFIG_FILE, "is not valid JSON"),
}


@pytest.fixture(params=sorted(BROKEN))
def broken(request, tiny, tmp_path) -> tuple[Path, str, str]:
    breaks, file, problem = BROKEN[request.param]
    folder = tmp_path / "broken"
    shutil.copytree(tiny, folder)
    breaks(folder)
    return folder, file, problem


def test_load_checkpoint_names_the_file_and_the_problem(broken):
    folder, file, problem = broken
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(folder)
    assert caught.value.source == str(folder / file)
    assert problem in caught.value.problem and "\n" not in str(caught.value)
    with pytest.raises(InputError):
        load_model(folder)


@pytest.mark.usefixtures("torch_single_thread")
def test_predict_with_a_broken_model_fails_in_one_line(broken, fixture_clips):
    folder, file, problem = broken
    result = CliRunner().invoke(app, ["predict", str(fixture_clips[0]), "-m", str(folder)])
    assert result.exit_code == 1
    assert ("Traceback" not in result.output and result.exception is None) or isinstance(result.exception, SystemExit)
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"error: {folder / file}: ") and problem in line


def test_an_intact_checkpoint_still_loads(tiny):
    assert load_checkpoint(tiny).labels == load_model(tiny).labels
