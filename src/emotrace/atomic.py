"""Atomic writes: a crash leaves the old file or the new one, never half of either."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary file beside ``path`` to write; it replaces ``path`` when the block ends
    without an error and is removed when it raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
    os.close(handle)
    temp = Path(name)
    try:
        yield temp
        os.chmod(temp, 0o644)  # mkstemp makes files only their owner can read
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def write_text_atomically(path: str | Path, text: str) -> None:
    with atomic_path(path) as temp, open(temp, "w") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())


def write_json_atomically(path: str | Path, value: Any) -> None:
    write_text_atomically(path, json.dumps(value, indent=2) + "\n")


def write_jsonl_atomically(path: str | Path, rows: list[dict[str, Any]]) -> None:
    write_text_atomically(path, "".join(json.dumps(row) + "\n" for row in rows))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
