"""Atomic files and folders: the old or the new one, never half, and no temporary left behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emotrace.atomic import (
    TEMP_PREFIX,
    atomic_directory,
    atomic_path,
    publish,
    temp_file,
    write_json_atomically,
    write_text_atomically,
)


class Interrupted(Exception):
    """Stands for a crash in the middle of a write."""


def test_a_file_is_replaced_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "made" / "here.txt"
    write_text_atomically(target, "first\r\nline\n")
    assert target.read_bytes() == b"first\r\nline\n"  # written exactly as given
    with pytest.raises(Interrupted), atomic_path(target) as temp:
        temp.write_text("half")
        raise Interrupted
    assert target.read_bytes() == b"first\r\nline\n"
    assert sorted(path.name for path in target.parent.iterdir()) == ["here.txt"]


def test_json_and_a_suffix_for_writers_that_read_the_extension(tmp_path: Path) -> None:
    write_json_atomically(tmp_path / "a.json", {"b": 1, "a": [1, 2]}, sort_keys=True)
    assert (tmp_path / "a.json").read_text() == json.dumps({"a": [1, 2], "b": 1}, indent=2) + "\n"
    with atomic_path(tmp_path / "plot.png", suffix=".png") as temp:
        assert temp.name.startswith(TEMP_PREFIX + "plot.png-") and temp.suffix == ".png"
        temp.write_bytes(b"png")
    assert (tmp_path / "plot.png").read_bytes() == b"png"
    assert (tmp_path / "plot.png").stat().st_mode & 0o777 == 0o644


def test_a_file_named_once_written(tmp_path: Path) -> None:
    temp = temp_file(tmp_path, suffix=".h5")
    assert temp.name.startswith(TEMP_PREFIX) and temp.read_bytes() == b""
    temp.write_bytes(b"data")
    publish(temp, tmp_path / "named-later.h5")
    assert [path.name for path in tmp_path.iterdir()] == ["named-later.h5"]


def test_a_folder_appears_whole_and_replaces_the_old_one(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint"
    with atomic_directory(target) as temp:
        assert temp.parent == tmp_path and temp.name.startswith(TEMP_PREFIX) and not target.exists()
        (temp / "nested").mkdir()
        (temp / "nested" / "weights.bin").write_bytes(b"old")
    with atomic_directory(target) as temp:
        (temp / "weights.bin").write_bytes(b"new")
        (temp / "weights.bin").chmod(0o600)  # as safetensors writes its files
    assert sorted(path.name for path in target.iterdir()) == ["weights.bin"]
    assert target.stat().st_mode & 0o777 == 0o755
    assert (target / "weights.bin").stat().st_mode & 0o777 == 0o644
    with pytest.raises(Interrupted), atomic_directory(target) as temp:
        (temp / "weights.bin").write_bytes(b"half")
        raise Interrupted
    assert (target / "weights.bin").read_bytes() == b"new"
    assert [path.name for path in tmp_path.iterdir()] == ["checkpoint"]


def test_without_replace_the_first_folder_wins(tmp_path: Path) -> None:
    target = tmp_path / "cache"
    with atomic_directory(target, replace=False) as late:
        (late / "model.bin").write_bytes(b"second")
        with atomic_directory(target, replace=False) as early:  # finishes first
            (early / "model.bin").write_bytes(b"first")
    assert (target / "model.bin").read_bytes() == b"first"
    assert [path.name for path in tmp_path.iterdir()] == ["cache"]
