"""A feature cache on disk that survives crashes, reruns and concurrent writers.

Layout of a store root (``--store DIR``), one folder per extractor configuration::

    DIR/<extractor>-<config hash>/meta.json        name, version, config (never changes)
                                 /features.h5      the compacted entries
                                 /shards/*.h5      batches written since the last compaction
                                 /features.h5.lock flock: shared to write a shard, exclusive to compact
    DIR/asr-<config hash>/meta.json, transcripts.jsonl, transcripts.jsonl.lock   (features.transcripts)

Why this shape:

* **Config change** -> a different folder, so old and new features never mix.
* **Audio change** -> each entry carries the content key of its input
  (:mod:`emotrace.features.keys`). An entry whose key no longer matches is recomputed;
  the others are untouched.
* **Crash safety** -> every batch is written to a hidden temp file and renamed into
  ``shards/``; a rename is atomic, so an entry is either fully there or absent, and a
  killed run loses at most the batch it was writing.
* **Concurrent writers** -> HDF5 is not safe with two writers on one file, so no file is
  ever written twice: each batch is its own shard. Compaction merges shards into
  ``features.h5`` (newest entry per id wins; shards are named by write time) under an
  exclusive lock, which also makes it safe to delete temp files of killed writers.
* Entries are stored concatenated along frames (``frames``: ``(total, layers, dims)``) with
  offsets and lengths, so one entry is one contiguous read.

Locks use ``fcntl.flock``, so stores work on local POSIX file systems (not Windows, and
not NFS without lock support). The folder, meta and lock helpers here serve the transcript
store too.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from emotrace.atomic import (
    TEMP_PREFIX,
    atomic_path,
    fsync_dir,
    publish,
    remove_debris,
    temp_file,
    write_json_atomically,
)
from emotrace.features.base import Features
from emotrace.features.keys import config_hash

FORMAT_VERSION = 1
META_FILE = "meta.json"
FEATURES_FILE = "features.h5"
SHARDS_DIR = "shards"


# --------------------------------------------------------------------------- file helpers


@contextmanager
def file_lock(path: Path, *, shared: bool) -> Iterator[None]:
    """``flock`` on ``path`` (created if missing): shared, or exclusive, for the block."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "extractor"


def folder_size(directory: Path) -> int:
    """Bytes of every file under ``directory``."""
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


# --------------------------------------------------------------------------- store folders


@dataclass(frozen=True)
class StoreMeta:
    """What a store folder holds: written once at creation, checked on every open."""

    kind: str  # "features" | "transcripts"
    name: str
    version: int
    config: dict[str, Any]

    def folder_name(self) -> str:
        return f"{_safe_name(self.name)}-{config_hash(self.name, self.version, self.config)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "kind": self.kind,
            "name": self.name,
            "version": self.version,
            "config": self.config,
        }


def open_store_folder(root: Path, meta: StoreMeta) -> tuple[Path, StoreMeta]:
    """The folder of ``meta`` under ``root``, created on first use, and its meta as stored."""
    # a JSON round trip makes tuples lists, as they will be when read back
    meta = StoreMeta(meta.kind, meta.name, meta.version, json.loads(json.dumps(meta.config)))
    directory = Path(root) / meta.folder_name()
    directory.mkdir(parents=True, exist_ok=True)
    meta_path = directory / META_FILE
    if not meta_path.exists():
        write_json_atomically(meta_path, meta.to_dict(), sort_keys=True)
    found = read_store_meta(directory)
    if found != meta:
        raise ValueError(f"{directory} holds {found}, not {meta} (config hash collision)")
    return directory, found


def read_store_meta(directory: Path) -> StoreMeta:
    """The meta of an existing store folder, checked against this code's format."""
    try:
        record = json.loads((Path(directory) / META_FILE).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{directory} is not an emotrace store (no {META_FILE})") from None
    if record.get("format") != FORMAT_VERSION:
        raise ValueError(f"{directory}: store format {record.get('format')} is not {FORMAT_VERSION}")
    return StoreMeta(record["kind"], record["name"], record["version"], record["config"])


# --------------------------------------------------------------------------- feature store


@dataclass(frozen=True)
class Entry:
    """One cached result: the features of utterance ``utt_id`` computed from input ``key``."""

    utt_id: str
    key: str
    features: Features
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class _IndexedFile:
    """An open HDF5 file of entries with its small per-entry arrays read into memory."""

    handle: h5py.File
    ids: list[str]
    keys: list[str]
    offsets: np.ndarray
    lengths: np.ndarray
    frame_rates: np.ndarray
    token_offsets: np.ndarray
    token_counts: np.ndarray  # -1: no tokens
    has_word_index: np.ndarray  # bool; a word index is aligned with its tokens
    layers: tuple[int, ...]
    dims: int

    @classmethod
    def open(cls, path: Path) -> _IndexedFile:
        handle = h5py.File(path, "r")
        return cls(
            handle=handle,
            ids=list(handle["ids"].asstr()[:]),
            keys=list(handle["keys"].asstr()[:]),
            offsets=handle["offsets"][:],
            lengths=handle["lengths"][:],
            frame_rates=handle["frame_rates"][:],
            token_offsets=handle["token_offsets"][:],
            token_counts=handle["token_counts"][:],
            has_word_index=handle["has_word_index"][:],
            layers=tuple(int(layer) for layer in handle.attrs["layers"]),
            dims=int(handle.attrs["dims"]),
        )

    def read(self, row: int) -> Features:
        offset, length = int(self.offsets[row]), int(self.lengths[row])
        data = self.handle["frames"][offset : offset + length]  # (frames, layers, dims)
        token_offset, token_count = int(self.token_offsets[row]), int(self.token_counts[row])
        tokens = word_index = None
        if token_count >= 0:
            tokens = tuple(self.handle["tokens"].asstr()[token_offset : token_offset + token_count])
        if self.has_word_index[row]:
            word_index = self.handle["word_index"][token_offset : token_offset + token_count]
        return Features(
            data=np.ascontiguousarray(data.transpose(1, 0, 2)),
            frame_rate=float(self.frame_rates[row]),
            layers=self.layers,
            tokens=tokens,
            word_index=word_index,
        )

    def meta(self, row: int) -> dict[str, Any]:
        return json.loads(self.handle["meta"].asstr()[row])

    def entry(self, row: int) -> Entry:
        return Entry(self.ids[row], self.keys[row], self.read(row), self.meta(row))


def _write_entries(
    path: Path, entries: Iterable[Entry], count: int, total_frames: int, layers: tuple[int, ...], dims: int
) -> None:
    """Write ``count`` entries, streamed, into a new HDF5 file (frames preallocated)."""
    string = h5py.string_dtype()
    with h5py.File(path, "w") as handle:
        handle.attrs["format"] = FORMAT_VERSION
        handle.attrs["layers"] = np.asarray(layers, dtype=np.int64)
        handle.attrs["dims"] = dims
        frames = handle.create_dataset("frames", shape=(total_frames, len(layers), dims), dtype="f4")
        ids, keys, metas, frame_rates, tokens, word_index = [], [], [], [], [], []
        offsets = np.zeros(count, np.int64)
        lengths = np.zeros(count, np.int64)
        token_offsets = np.zeros(count, np.int64)
        token_counts = np.full(count, -1, np.int64)
        has_word_index = np.zeros(count, bool)
        offset = 0
        for row, entry in enumerate(entries):
            data = entry.features.data
            if entry.features.layers != layers or data.shape[2] != dims:
                raise ValueError(
                    f"entry {entry.utt_id!r} has layers {entry.features.layers} and {data.shape[2]} dims, "
                    f"the store holds layers {layers} and {dims} dims: the extractor's config() "
                    "must capture everything that shapes its output"
                )
            length = data.shape[1]
            frames[offset : offset + length] = data.transpose(1, 0, 2)
            offsets[row], lengths[row] = offset, length
            offset += length
            ids.append(entry.utt_id)
            keys.append(entry.key)
            metas.append(json.dumps(dict(entry.meta), sort_keys=True))
            frame_rates.append(entry.features.frame_rate)
            token_offsets[row] = len(tokens)
            entry_tokens, entry_word_index = entry.features.tokens, entry.features.word_index
            if entry_word_index is not None and (entry_tokens is None or len(entry_word_index) != len(entry_tokens)):
                raise ValueError(f"entry {entry.utt_id!r}: word_index must map each token to its word")
            if entry_tokens is not None:
                token_counts[row] = len(entry_tokens)
                tokens.extend(entry_tokens)
                if entry_word_index is not None:
                    has_word_index[row] = True
                    word_index.extend(int(index) for index in entry_word_index)
                else:
                    word_index.extend([-1] * len(entry_tokens))  # keeps word_index aligned with tokens
        if offset != total_frames or len(ids) != count:
            raise ValueError(f"expected {count} entries / {total_frames} frames, got {len(ids)} / {offset}")
        handle.create_dataset("ids", data=np.array(ids, dtype=object), dtype=string)
        handle.create_dataset("keys", data=np.array(keys, dtype=object), dtype=string)
        handle.create_dataset("meta", data=np.array(metas, dtype=object), dtype=string)
        handle.create_dataset("offsets", data=offsets)
        handle.create_dataset("lengths", data=lengths)
        handle.create_dataset("frame_rates", data=np.asarray(frame_rates, np.float64))
        handle.create_dataset("token_offsets", data=token_offsets)
        handle.create_dataset("token_counts", data=token_counts)
        handle.create_dataset("has_word_index", data=has_word_index)
        handle.create_dataset("tokens", data=np.array(tokens, dtype=object), dtype=string)
        handle.create_dataset("word_index", data=np.asarray(word_index, np.int32))


@dataclass(frozen=True)
class _Location:
    file: _IndexedFile
    row: int


class FeatureStore:
    """Cached features of one extractor configuration, keyed by utterance id and input key.

    Open with :meth:`open` (creates the folder) or :meth:`at` (an existing folder). The
    in-memory index is a snapshot taken at open; :meth:`refresh` takes a new one, e.g. to
    see what another process wrote. Reads stay valid while other processes compact: open
    HDF5 files survive the deletion of their names.
    """

    def __init__(self, directory: Path, meta: StoreMeta):
        self.directory = directory
        self.meta = meta
        self._lock_path = directory / f"{FEATURES_FILE}.lock"
        self._shards = directory / SHARDS_DIR
        self._shards.mkdir(exist_ok=True)
        remove_debris(directory, f"{FEATURES_FILE}-")  # a compaction killed mid-way
        remove_debris(self._shards)  # a shard writer killed mid-way
        self._files: list[_IndexedFile] = []
        self._index: dict[str, _Location] = {}
        self._by_key: dict[str, str] | None = None
        self.refresh()

    @classmethod
    def open(cls, root: str | Path, extractor_name: str, config: Mapping[str, Any], version: int = 1) -> FeatureStore:
        """The store of this extractor configuration under ``root``, created if missing."""
        return cls(*open_store_folder(Path(root), StoreMeta("features", extractor_name, version, dict(config))))

    @classmethod
    def at(cls, directory: str | Path) -> FeatureStore:
        """An existing store folder."""
        meta = read_store_meta(Path(directory))
        if meta.kind != "features":
            raise ValueError(f"{directory} is a {meta.kind} store, not a feature store")
        return cls(Path(directory), meta)

    # ----------------------------------------------------------------- reading

    def _entry_files(self) -> list[Path]:
        """Files in the order their entries apply: compacted base first, then shards by age."""
        base = self.directory / FEATURES_FILE
        shards = sorted(path for path in self._shards.glob("*.h5") if not path.name.startswith("."))
        return ([base] if base.exists() else []) + shards

    def refresh(self) -> None:
        """Re-read the index from disk (newest entry per id wins)."""
        with file_lock(self._lock_path, shared=True):  # no compaction deletes files meanwhile
            files = [_IndexedFile.open(path) for path in self._entry_files()]
        self.close()
        self._files = files
        self._by_key = None
        self._index = {utt_id: _Location(indexed, row) for indexed in files for row, utt_id in enumerate(indexed.ids)}
        shapes = {(indexed.layers, indexed.dims) for indexed in files if indexed.ids}
        if len(shapes) > 1:
            raise ValueError(f"{self.directory} mixes entry shapes {sorted(shapes)}")

    def close(self) -> None:
        for indexed in self._files:
            indexed.handle.close()
        self._files, self._index = [], {}

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, utt_id: object) -> bool:
        return utt_id in self._index

    def ids(self) -> list[str]:
        return sorted(self._index)

    def key(self, utt_id: str) -> str | None:
        """The input key the entry of ``utt_id`` was computed from, if any."""
        location = self._index.get(utt_id)
        return None if location is None else location.file.keys[location.row]

    def id_with_key(self, key: str) -> str | None:
        """An id whose entry was computed from this very input (the same audio or text
        listed under another id, e.g. by a paired corpus), so it can be copied, not recomputed."""
        if self._by_key is None:
            self._by_key = {location.file.keys[location.row]: utt_id for utt_id, location in self._index.items()}
        return self._by_key.get(key)

    def copy_entries(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Store each ``(new id, existing id)`` pair's entry again under the new id."""
        self.put_many([Entry(new, self.key(old), self.get(old), self.entry_meta(old)) for new, old in pairs])

    def has(self, utt_id: str, key: str) -> bool:
        """Whether an up-to-date entry exists: present and computed from this very input."""
        return self.key(utt_id) == key

    def get(self, utt_id: str) -> Features:
        location = self._index[utt_id]
        return location.file.read(location.row)

    def entry_meta(self, utt_id: str) -> dict[str, Any]:
        """The ``meta`` stored with the entry (e.g. the audio duration)."""
        location = self._index[utt_id]
        return location.file.meta(location.row)

    def get_many(self, ids: Sequence[str]) -> list[Features]:
        """Features of many entries, read in on-disk order (fast), returned in ``ids`` order."""
        locations = [self._index[utt_id] for utt_id in ids]
        file_order = {id(indexed): position for position, indexed in enumerate(self._files)}
        order = sorted(range(len(ids)), key=lambda i: (file_order[id(locations[i].file)], locations[i].row))
        results: list[Features | None] = [None] * len(ids)
        for i in order:
            results[i] = locations[i].file.read(locations[i].row)
        return results  # type: ignore[return-value]

    def lengths(self) -> dict[str, int]:
        """Frames per entry, without reading any features (for bucketing and info)."""
        return {utt_id: int(location.file.lengths[location.row]) for utt_id, location in self._index.items()}

    # ----------------------------------------------------------------- writing

    def put(self, utt_id: str, key: str, features: Features, extra_meta: Mapping[str, Any] | None = None) -> None:
        """Store one entry (see :meth:`put_many`: prefer batches, each call writes a file)."""
        self.put_many([Entry(utt_id, key, features, extra_meta or {})])

    def put_many(self, entries: Sequence[Entry]) -> None:
        """Store a batch of entries atomically as one new shard; it replaces older entries."""
        if not entries:
            return
        known = next((indexed for indexed in self._files if indexed.ids), None)
        first = entries[0].features
        layers, dims = (known.layers, known.dims) if known else (first.layers, first.data.shape[2])
        total_frames = sum(entry.features.data.shape[1] for entry in entries)
        with file_lock(self._lock_path, shared=True):  # writers share; compaction excludes them
            temp = temp_file(self._shards, suffix=".h5")
            try:
                _write_entries(temp, entries, len(entries), total_frames, layers, dims)
                # named by publication time: later shards override earlier ones
                shard = self._shards / f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.h5"
                publish(temp, shard)
            except BaseException:
                temp.unlink(missing_ok=True)
                raise
            indexed = _IndexedFile.open(shard)
        self._files.append(indexed)
        self._index.update((utt_id, _Location(indexed, row)) for row, utt_id in enumerate(indexed.ids))
        self._by_key = None

    def compact(self) -> bool:
        """Merge all shards into ``features.h5``; returns whether there was anything to merge.

        Holds the exclusive lock: no shard is being written meanwhile, so leftover temp
        files are debris of killed writers and are removed too.
        """
        with file_lock(self._lock_path, shared=False):
            # only HDF5 temps: those are written under the lock (meta.json temps are not)
            for debris in [*self.directory.glob(f"{TEMP_PREFIX}*.h5"), *self._shards.glob(f"{TEMP_PREFIX}*.h5")]:
                debris.unlink()
            paths = self._entry_files()
            shards = [path for path in paths if path.parent == self._shards]
            if not shards:
                return False
            files = [_IndexedFile.open(path) for path in paths]
            try:
                latest = {utt_id: (indexed, row) for indexed in files for row, utt_id in enumerate(indexed.ids)}
                ids = sorted(latest)
                reference = next((indexed for indexed in files if indexed.ids), files[0])
                with atomic_path(self.directory / FEATURES_FILE, suffix=".h5") as temp:
                    _write_entries(
                        temp,
                        (latest[utt_id][0].entry(latest[utt_id][1]) for utt_id in ids),
                        count=len(ids),
                        total_frames=sum(int(indexed.lengths[row]) for indexed, row in latest.values()),
                        layers=reference.layers,
                        dims=reference.dims,
                    )
            finally:
                for indexed in files:
                    indexed.handle.close()
            for shard in shards:  # oldest first: a crash here leaves only newer shards, still correct
                shard.unlink()
            fsync_dir(self._shards)
        self.refresh()
        return True

    # ----------------------------------------------------------------- description

    def info(self) -> dict[str, Any]:
        """A summary for ``emotrace features info`` (JSON-serialisable)."""
        lengths = self.lengths()
        populated = [indexed for indexed in self._files if indexed.ids]
        rates = sorted({float(location.file.frame_rates[location.row]) for location in self._index.values()})
        return {
            "store": self.directory.name,
            "path": str(self.directory),
            "kind": self.meta.kind,
            "extractor": self.meta.name,
            "version": self.meta.version,
            "config": self.meta.config,
            "entries": len(lengths),
            "total_frames": sum(lengths.values()),
            "dims": populated[0].dims if populated else None,
            "layers": list(populated[0].layers) if populated else None,
            "frame_rate": rates[0] if len(rates) == 1 else rates,
            "shards": len([path for path in self._entry_files() if path.parent == self._shards]),
            "bytes": folder_size(self.directory),
        }
