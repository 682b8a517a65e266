"""Content keys: what a cached result was computed from, so that a changed input is recomputed.

An audio key is the blake2b of the file's bytes plus the segment bounds; a text key, of the
text. Hashing is always done (no size/mtime shortcut): a rerun reads each file once, which
costs far less than trusting a stale timestamp. :func:`config_hash` names a store folder
after the extractor configuration, so that a config change opens a separate store.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_HASH_CHUNK = 1 << 20


def audio_key(path: str | Path, start: float | None = None, end: float | None = None) -> str:
    """Content key of an audio input: blake2b of the file bytes, plus the segment bounds."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    if start is not None or end is not None:
        digest.update(f"|segment {start}:{end}".encode())
    return digest.hexdigest()


def text_key(text: str) -> str:
    """Content key of a text input."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def config_hash(name: str, version: int, config: Mapping[str, Any]) -> str:
    """Short stable hash naming a store folder (JSON with sorted keys, so dict order is moot)."""
    canonical = json.dumps({"name": name, "version": version, "config": config}, sort_keys=True)
    return hashlib.blake2b(canonical.encode(), digest_size=4).hexdigest()
