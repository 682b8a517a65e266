"""The feature store: round trips, keys, invalidation, crash debris, concurrent writers."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from emotrace.features.asr import Transcript, Word
from emotrace.features.base import Features
from emotrace.features.keys import audio_key, text_key
from emotrace.features.pipeline import open_stores
from emotrace.features.store import Entry, FeatureStore
from emotrace.features.transcripts import TranscriptStore

CONFIG = {"hop": 160, "layers": [3, 4]}


def features_for(utt_id: str, frames: int | None = None) -> Features:
    """Deterministic two-layer features of an id, so any process can check any entry."""
    seed = sum(ord(char) for char in utt_id)
    rng = np.random.default_rng(seed)
    frames = seed % 7 + 1 if frames is None else frames
    return Features(rng.standard_normal((2, frames, 5)).astype(np.float32), frame_rate=50.0, layers=(3, 4))


def test_round_trip_before_and_after_compaction(tmp_path: Path) -> None:
    store = FeatureStore.open(tmp_path, "test-extractor", CONFIG)
    audio_entries = [Entry(f"utt{i}", f"key{i}", features_for(f"utt{i}"), {"seconds": i}) for i in range(6)]
    store.put_many(audio_entries[:3])
    store.put_many(audio_entries[3:])
    text = Features(
        np.ones((2, 4, 5), np.float32),
        frame_rate=0.0,
        layers=(3, 4),
        tokens=("[CLS]", "hel", "##lo", "[SEP]"),
        word_index=np.array([-1, 0, 0, -1]),
    )
    store.put("text", "text-key", text, {"text": "hello"})
    empty = Features(np.zeros((2, 0, 5), np.float32), frame_rate=50.0, layers=(3, 4))
    store.put("empty", "empty-key", empty)

    def check(reader: FeatureStore) -> None:
        assert reader.ids() == sorted([*(entry.utt_id for entry in audio_entries), "text", "empty"])
        for entry in audio_entries:
            loaded = reader.get(entry.utt_id)
            np.testing.assert_array_equal(loaded.data, entry.features.data)
            assert loaded.layers == (3, 4) and loaded.frame_rate == 50.0 and loaded.tokens is None
            assert reader.entry_meta(entry.utt_id) == {"seconds": int(entry.utt_id[3:])}
            assert reader.has(entry.utt_id, entry.key) and not reader.has(entry.utt_id, "other")
        loaded_text = reader.get("text")
        assert loaded_text.tokens == text.tokens
        np.testing.assert_array_equal(loaded_text.word_index, [-1, 0, 0, -1])
        assert reader.get("empty").data.shape == (2, 0, 5)
        many = reader.get_many(["utt5", "text", "utt0"])
        np.testing.assert_array_equal(many[0].data, audio_entries[5].features.data)
        np.testing.assert_array_equal(many[2].data, audio_entries[0].features.data)

    check(store)
    check(FeatureStore.at(store.directory))
    assert store.compact() is True
    assert store.info()["shards"] == 0 and (store.directory / "features.h5").exists()
    check(store)
    check(FeatureStore.open(tmp_path, "test-extractor", CONFIG))
    assert store.compact() is False  # nothing new to merge


def test_info_describes_the_store(tmp_path: Path) -> None:
    store = FeatureStore.open(tmp_path, "test-extractor", CONFIG, version=2)
    store.put_many([Entry("a", "ka", features_for("a", 3)), Entry("b", "kb", features_for("b", 4))])
    info = store.info()
    assert info["extractor"] == "test-extractor" and info["version"] == 2 and info["config"] == CONFIG
    assert (info["entries"], info["total_frames"], info["dims"], info["layers"]) == (2, 7, 5, [3, 4])
    assert info["frame_rate"] == 50.0 and info["bytes"] > 0
    assert info["store"].startswith("test-extractor-")


def test_a_config_change_opens_a_separate_store(tmp_path: Path) -> None:
    first = FeatureStore.open(tmp_path, "whisper-base", {"layers": [3, 4], "model": "m"})
    first.put("a", "ka", features_for("a"))
    same = FeatureStore.open(tmp_path, "whisper-base", {"model": "m", "layers": [3, 4]})  # key order is moot
    changed = FeatureStore.open(tmp_path, "whisper-base", {"layers": [2], "model": "m"})
    newer_code = FeatureStore.open(tmp_path, "whisper-base", {"layers": [3, 4], "model": "m"}, version=2)
    assert same.directory == first.directory and same.ids() == ["a"]
    assert len({first.directory, changed.directory, newer_code.directory}) == 3
    assert changed.ids() == [] and newer_code.ids() == []
    described = sorted((store.meta.version, store.meta.config["layers"]) for store in open_stores(tmp_path))
    assert described == [(1, [2]), (1, [3, 4]), (2, [3, 4])]


def test_a_changed_input_replaces_only_its_entry(tmp_path: Path) -> None:
    store = FeatureStore.open(tmp_path, "test-extractor", CONFIG)
    store.put_many([Entry(name, f"old-{name}", features_for(name)) for name in ("a", "b", "c")])
    store.compact()
    assert not store.has("b", "new-b") and store.has("a", "old-a")
    replacement = features_for("b-changed", 9)
    store.put("b", "new-b", replacement)
    for reader in (store, FeatureStore.at(store.directory)):
        assert reader.has("b", "new-b") and reader.key("a") == "old-a" and len(reader) == 3
        np.testing.assert_array_equal(reader.get("b").data, replacement.data)
    store.compact()
    reopened = FeatureStore.at(store.directory)
    assert (
        reopened.info()["entries"] == 3
        and reopened.info()["total_frames"] == sum(features_for(name).data.shape[1] for name in ("a", "c")) + 9
    )


def test_entries_must_keep_the_store_shape(tmp_path: Path) -> None:
    store = FeatureStore.open(tmp_path, "test-extractor", CONFIG)
    store.put("a", "ka", features_for("a"))
    wrong = Features(np.zeros((1, 3, 5), np.float32), frame_rate=50.0, layers=(3,))
    with pytest.raises(ValueError, match="config"):
        store.put("b", "kb", wrong)
    assert FeatureStore.at(store.directory).ids() == ["a"]  # the failed batch left nothing


def test_debris_of_a_killed_writer_is_ignored_then_removed(tmp_path: Path) -> None:
    store = FeatureStore.open(tmp_path, "test-extractor", CONFIG)
    store.put("a", "ka", features_for("a"))
    debris = store.directory / "shards" / ".tmp-killed.h5"
    debris.write_bytes(b"\x89HDF half a file")
    store.refresh()
    assert store.ids() == ["a"]
    store.put("b", "kb", features_for("b"))
    store.compact()
    assert not debris.exists() and FeatureStore.at(store.directory).ids() == ["a", "b"]


def test_content_keys_follow_bytes_and_segment_bounds(tmp_path: Path) -> None:
    clip = tmp_path / "clip.flac"
    clip.write_bytes(b"first version")
    first = audio_key(clip)
    assert audio_key(clip) == first
    assert audio_key(clip, 0.0, 1.5) not in {first, audio_key(clip, 0.0, 2.0)}
    clip.write_bytes(b"second version")
    assert audio_key(clip) != first
    assert text_key("Kids are talking") != text_key("Kids are talking.")


def _write_concurrently(root: str, ids: list[str], start: multiprocessing.synchronize.Event) -> None:
    store = FeatureStore.open(root, "test-extractor", CONFIG)
    start.wait()
    for batch_start in range(0, len(ids), 3):
        batch = ids[batch_start : batch_start + 3]
        store.put_many([Entry(utt_id, f"key-{utt_id}", features_for(utt_id)) for utt_id in batch])
        if batch_start == 15:
            store.compact()  # races the other process's writes
    store.compact()


def test_two_processes_writing_one_store(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    first_ids = [f"utt{i:02d}" for i in range(0, 30)]
    second_ids = [f"utt{i:02d}" for i in range(15, 45)]  # half of them overlap
    writers = [
        context.Process(target=_write_concurrently, args=(str(tmp_path), ids, start)) for ids in (first_ids, second_ids)
    ]
    for writer in writers:
        writer.start()
    start.set()
    for writer in writers:
        writer.join(timeout=120)
        assert writer.exitcode == 0
    store = FeatureStore.open(tmp_path, "test-extractor", CONFIG)
    expected = sorted(set(first_ids) | set(second_ids))
    assert store.ids() == expected and store.info()["shards"] == 0
    for utt_id, loaded in zip(expected, store.get_many(expected)):
        np.testing.assert_array_equal(loaded.data, features_for(utt_id).data)
        assert store.key(utt_id) == f"key-{utt_id}"
    assert store.info()["total_frames"] == sum(features_for(utt_id).data.shape[1] for utt_id in expected)


def test_transcripts_round_trip_and_survive_a_partial_line(tmp_path: Path) -> None:
    config = {"model": "tiny.en", "beam_size": 5}
    store = TranscriptStore.open(tmp_path, config)
    hello = Transcript("Hello there.", (Word("Hello", 0.1, 0.4, 0.9), Word("there.", 0.4, 0.8, 0.8)), "en")
    store.put_many([("a", "key-a", hello)])
    with open(store.directory / "transcripts.jsonl", "ab") as handle:
        handle.write(b'{"id": "b", "key": "key-b", "te')  # a writer killed mid-line
    reread = TranscriptStore.open(tmp_path, config)
    assert reread.ids() == ["a"] and reread.get("a") == hello and reread.has("a", "key-a")
    reread.put_many([("b", "key-b", Transcript("Bye.", (), "en")), ("a", "key-a2", Transcript("Hi.", (), "en"))])
    final = TranscriptStore.at(store.directory)
    assert final.ids() == ["a", "b"] and final.get("a").text == "Hi." and not final.has("a", "key-a")
    assert (store.directory / "transcripts.jsonl").read_bytes().count(b"\n") == 3
    assert TranscriptStore.open(tmp_path, {**config, "beam_size": 1}).ids() == []
    assert [info["kind"] for info in (s.info() for s in open_stores(tmp_path))] == ["transcripts", "transcripts"]
