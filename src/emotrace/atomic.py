"""Atomic writes: a crash leaves the old file or folder or the new one, never half of either.

Everything is written under a hidden temporary name beside its target (:data:`TEMP_PREFIX`,
so folder listings that skip dot files never see it), flushed to disk, then renamed into
place; the folder holding the new name is flushed too, so a power cut after a write returns
cannot undo it. A temporary left by a killed process is debris under a hidden name, never a
half-written target, and it does not stay: every temporary's name holds the id of the process
that owns it (``.tmp-<prefix><pid>-…``), and the next write of the same target (or anyone
calling :func:`remove_debris`) deletes those whose owner is dead. A live writer's temporary
is never touched, so concurrent writers stay safe.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: how every temporary file and folder written here begins
TEMP_PREFIX = ".tmp-"


def fsync_dir(directory: str | Path) -> None:
    """Flush a folder's entries (names created, renamed or removed in it) to disk."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def temp_file(directory: str | Path, prefix: str = "", suffix: str = "") -> Path:
    """A new empty file ``.tmp-<prefix>…<suffix>`` in ``directory``, to fill and then :func:`publish`.

    Used directly where the final name is known only once the file is written (feature store
    shards are named by the time they are published); otherwise use :func:`atomic_path`.
    """
    descriptor, name = tempfile.mkstemp(prefix=_owned(prefix), suffix=suffix, dir=directory)
    os.close(descriptor)
    os.chmod(name, 0o644)  # mkstemp makes files only their owner can read
    return Path(name)


def owned_directory(parent: str | Path, prefix: str = "") -> Path:
    """A new empty folder ``.tmp-<prefix><pid>-…`` in ``parent``, removed by :func:`remove_debris`
    once this process is dead (e.g. a server's uploads, if it is killed)."""
    return Path(tempfile.mkdtemp(prefix=_owned(prefix), dir=parent))


def remove_debris(directory: str | Path, prefix: str = "") -> list[Path]:
    """Delete the temporaries ``.tmp-<prefix><pid>-…`` in ``directory`` whose owning process is
    dead (left by a kill); returns what it deleted. Temporaries of live processes, and names
    without an owner, are kept."""
    start = len(TEMP_PREFIX + prefix)
    removed = []
    for item in Path(directory).glob(glob.escape(TEMP_PREFIX + prefix) + "*"):
        owner = item.name[start:].split("-", 1)[0]
        if not owner.isdigit() or _alive(int(owner)):
            continue
        if item.is_dir() and not item.is_symlink():
            shutil.rmtree(item, ignore_errors=True)
        else:
            item.unlink(missing_ok=True)
        removed.append(item)
    return removed


def _owned(prefix: str) -> str:
    return f"{TEMP_PREFIX}{prefix}{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def publish(temp: str | Path, final: str | Path) -> None:
    """Make the fully written file ``temp`` visible as ``final`` (replacing it), durably."""
    with open(temp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temp, final)
    fsync_dir(Path(final).parent)


@contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """A temporary file beside ``path`` to write; it replaces ``path`` when the block ends
    without an error and is removed when it raises. ``suffix`` ends the temporary's name,
    for writers that choose a format by extension or globs that find debris by it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_debris(path.parent, f"{path.name}-")
    temp = temp_file(path.parent, prefix=f"{path.name}-", suffix=suffix)
    try:
        yield temp
        publish(temp, path)
    finally:
        temp.unlink(missing_ok=True)


@contextmanager
def atomic_directory(path: str | Path, *, replace: bool = True) -> Iterator[Path]:
    """A hidden temporary folder beside ``path`` to fill; it becomes ``path`` when the block ends
    without an error and is removed when it raises.

    An existing ``path`` is replaced when ``replace`` (moved aside, then deleted); otherwise
    it is kept and the new folder discarded: when two processes build the same folder at once,
    the first to finish wins and both end up with a whole one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_debris(path.parent, f"{path.name}-")
    remove_debris(path.parent, f"old-{path.name}-")
    temp = owned_directory(path.parent, f"{path.name}-")
    try:
        yield temp
        temp.chmod(0o755)  # mkdtemp makes folders only their owner can read
        for inner in temp.rglob("*"):  # and some writers (safetensors) files only their owner can
            inner.chmod(0o755 if inner.is_dir() else 0o644)
        _fsync_tree(temp)
        if replace and path.exists():
            old = path.with_name(f"{_owned(f'old-{path.name}-')}{uuid.uuid4().hex[:8]}")
            path.rename(old)
            temp.rename(path)
            shutil.rmtree(old)
        else:
            try:
                temp.rename(path)
            except OSError:
                if replace or not path.is_dir():
                    raise
        fsync_dir(path.parent)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _fsync_tree(directory: Path) -> None:
    """Flush every file and folder under ``directory``, and ``directory`` itself."""
    for item in directory.rglob("*"):
        if item.is_file():
            with open(item, "rb") as handle:
                os.fsync(handle.fileno())
        elif item.is_dir():
            fsync_dir(item)
    fsync_dir(directory)


def write_text_atomically(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` as UTF-8, exactly as given (no newline translation)."""
    with atomic_path(path) as temp, open(temp, "w", encoding="utf-8", newline="") as file:
        file.write(text)


def write_json_atomically(path: str | Path, value: Any, *, sort_keys: bool = False) -> None:
    write_text_atomically(path, json.dumps(value, indent=2, sort_keys=sort_keys) + "\n")


def write_jsonl_atomically(path: str | Path, rows: list[dict[str, Any]]) -> None:
    write_text_atomically(path, "".join(json.dumps(row) + "\n" for row in rows))
