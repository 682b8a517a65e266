"""ASR transcripts cached on disk, keyed by utterance id and audio key, safe against crashes
and concurrent writers.

A transcript store is a folder beside the feature stores (``DIR/asr-<config hash>/``, see
:mod:`emotrace.features.store`) holding ``meta.json`` and an append-only
``transcripts.jsonl``; the last record of an id wins.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from emotrace.features.asr import Transcript
from emotrace.features.store import StoreMeta, file_lock, folder_size, open_store_folder, read_store_meta

TRANSCRIPTS_FILE = "transcripts.jsonl"
_SCAN_CHUNK = 1 << 20  # bytes read at a time looking back for the last newline


class TranscriptStore:
    """ASR transcripts keyed by utterance id and audio key, in an append-only JSONL file.

    A line counts only once its newline is written: a batch is appended with one
    ``write`` under an exclusive lock, after cutting off a partial line a killed writer
    may have left, so a crash never yields a half record.
    """

    def __init__(self, directory: Path, meta: StoreMeta):
        self.directory = directory
        self.meta = meta
        self._path = directory / TRANSCRIPTS_FILE
        self._lock_path = directory / f"{TRANSCRIPTS_FILE}.lock"
        self._records: dict[str, tuple[str, Transcript]] = {}
        self.refresh()

    @classmethod
    def open(cls, root: str | Path, config: Mapping[str, Any], version: int = 1) -> TranscriptStore:
        """The transcript store of this ASR configuration under ``root``, created if missing."""
        return cls(*open_store_folder(Path(root), StoreMeta("transcripts", "asr", version, dict(config))))

    @classmethod
    def at(cls, directory: str | Path) -> TranscriptStore:
        meta = read_store_meta(Path(directory))
        if meta.kind != "transcripts":
            raise ValueError(f"{directory} is a {meta.kind} store, not a transcript store")
        return cls(Path(directory), meta)

    def refresh(self) -> None:
        """Re-read the file (the last record per id wins)."""
        records: dict[str, tuple[str, Transcript]] = {}
        if self._path.exists():
            complete, _, _partial = self._path.read_bytes().rpartition(b"\n")
            for line in complete.splitlines():
                record = json.loads(line)
                records[record["id"]] = (record["key"], Transcript.from_dict(record))
        self._records = records

    def __len__(self) -> int:
        return len(self._records)

    def ids(self) -> list[str]:
        return sorted(self._records)

    def has(self, utt_id: str, key: str) -> bool:
        record = self._records.get(utt_id)
        return record is not None and record[0] == key

    def get(self, utt_id: str) -> Transcript:
        return self._records[utt_id][1]

    def put_many(self, entries: Sequence[tuple[str, str, Transcript]]) -> None:
        """Append ``(utt_id, key, transcript)`` records in one atomic step."""
        if not entries:
            return
        payload = b"".join(
            json.dumps({"id": utt_id, "key": key, **transcript.to_dict()}, ensure_ascii=False).encode() + b"\n"
            for utt_id, key, transcript in entries
        )
        with file_lock(self._lock_path, shared=False), open(self._path, "ab+") as handle:
            handle.truncate(_end_of_last_line(handle))  # drop a killed writer's partial line
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        self._records.update((utt_id, (key, transcript)) for utt_id, key, transcript in entries)

    def info(self) -> dict[str, Any]:
        return {
            "store": self.directory.name,
            "path": str(self.directory),
            "kind": self.meta.kind,
            "extractor": self.meta.name,
            "version": self.meta.version,
            "config": self.meta.config,
            "entries": len(self._records),
            "words": sum(len(transcript.words) for _key, transcript in self._records.values()),
            "bytes": folder_size(self.directory),
        }


def _end_of_last_line(handle: Any) -> int:
    """Byte offset just past the file's last newline (0 if none), scanning from the end."""
    position = handle.seek(0, os.SEEK_END)
    while position > 0:
        start = max(position - _SCAN_CHUNK, 0)
        handle.seek(start)
        newline = handle.read(position - start).rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        position = start
    return 0
