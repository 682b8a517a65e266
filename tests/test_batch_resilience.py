"""A batch goes on past any one file: names that are not UTF-8, and unexpected failures
(MemoryError and the like) of a single file are reported on one line and skipped."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from emotrace.api import load_model, predict_files
from emotrace.cli import app
from emotrace.errors import printable
from emotrace.inference.predictor import Predictor
from test_predictor import save_roi

pytestmark = pytest.mark.usefixtures("torch_single_thread")

BAD_NAME = os.fsdecode(b"bad-\xff-name.wav")  # a name whose bytes are not UTF-8


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return save_roi(tmp_path_factory.mktemp("model") / "roi")


@pytest.fixture
def folder(fixture_clips, tmp_path) -> Path:
    """Two good clips and a good clip under a name that is not UTF-8."""
    root = tmp_path / "clips"
    root.mkdir()
    for clip in fixture_clips[:2]:
        shutil.copy(clip, root / clip.name)
    shutil.copy(fixture_clips[2], os.path.join(os.fsencode(root), b"bad-\xff-name.wav"))
    return root


def test_printable_shows_raw_bytes_as_escapes():
    assert printable(BAD_NAME) == "bad-\\xff-name.wav"
    assert printable("clé.wav") == "clé.wav"
    assert printable("\ud800") == "\\ud800"


def test_a_file_name_that_is_not_utf8_never_ends_the_batch(folder, model):
    batch = predict_files(folder, model)
    names = sorted(Path(r.source).name for r in batch.results) + [e.source for e in batch.report.skipped]
    assert len(names) == 3, names
    document = json.dumps(batch.to_dict(), ensure_ascii=False).encode("utf-8")  # must not raise
    assert b"\\xff" in document or b"\\\\xff" in document


@pytest.mark.parametrize("output_format", ["table", "json", "csv"])
def test_the_cli_prints_names_that_are_not_utf8_escaped(folder, model, tmp_path, output_format):
    out = tmp_path / f"out.{output_format}"
    result = CliRunner().invoke(
        app, ["predict", str(folder), "-m", str(model), "--format", output_format, "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    written = out.read_text(encoding="utf-8")
    assert "bad-\\xff-name.wav" in written or "bad-\\\\xff-name.wav" in written or "bad-\\xff" in result.output


def test_a_memory_error_on_one_file_is_reported_and_skipped(fixture_clips, model, monkeypatch, tmp_path):
    predictor = load_model(model)
    real = Predictor.predict_file_with_audio

    def exhausted(self, path, *args, **kwargs):
        if Path(path).name == fixture_clips[1].name:
            raise MemoryError("cannot allocate 9 GiB")
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(Predictor, "predict_file_with_audio", exhausted)
    batch = predict_files([str(clip) for clip in fixture_clips], predictor)
    assert len(batch.results) == len(fixture_clips) - 1
    [error] = batch.report.skipped
    assert error.source == str(fixture_clips[1])
    assert "MemoryError" in error.problem and "\n" not in str(error)


def test_the_cli_reports_an_unexpected_error_in_one_line_and_goes_on(fixture_clips, model, monkeypatch):
    real = Predictor.predict_file_with_audio

    def broken(self, path, *args, **kwargs):
        if Path(path).name == fixture_clips[0].name:
            raise RuntimeError("something deep\nfailed")
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(Predictor, "predict_file_with_audio", broken)
    result = CliRunner().invoke(app, ["predict", *map(str, fixture_clips), "-m", str(model), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert f"skipped {fixture_clips[0]}: RuntimeError: something deep failed" in result.output
