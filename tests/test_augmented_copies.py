"""Augmented copies of cached features: their store entries, the CLI option, and training
reading them for training clips only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from emotrace.augmentation import AugmentationConfig
from emotrace.cli import app
from emotrace.corpora import load_corpus
from emotrace.errors import InputError
from emotrace.features.augmented import chain_tag, copies_store, copy_id, extract_augmented
from emotrace.features.inputs import ExtractorConfigError
from emotrace.features.pipeline import extract_corpus
from emotrace.features.registry import get_extractor
from emotrace.features.store import FeatureStore
from emotrace.training import cv as cv_module
from emotrace.training.config import DataConfig, load_config
from emotrace.training.data import FeatureDataset
from test_pipeline import WordLengths
from test_training import pitched_corpus

pytestmark = pytest.mark.usefixtures("torch_single_thread")

LOGMEL = "logmel"


@pytest.fixture(scope="module")
def voices(tmp_path_factory) -> Path:
    """A manifest of 4 speakers x 2 emotions x 3 clips of harmonic 'voices' (pitch: emotion)."""

    def voice(pitch: float, t: np.ndarray) -> np.ndarray:
        return sum(0.1 / k * np.sin(2 * np.pi * k * pitch * t) for k in range(1, 5))

    return pitched_corpus(tmp_path_factory.mktemp("voices"), {"angry": 300.0, "sad": 120.0}, 15.0, 0.5, voice)


def test_copies_are_their_own_store_entries_keyed_by_chain_and_index(voices, tmp_path):
    utterances = list(load_corpus("manifest", voices).utterances)[:4]
    extract_corpus(utterances, [LOGMEL], tmp_path, progress=False)
    summary = extract_augmented(utterances, [LOGMEL], tmp_path, 2, progress=False)
    assert summary.stores[0].computed == 8
    chain, other = AugmentationConfig(), AugmentationConfig(reverb=0.0)  # another chain, no rooms to simulate
    assert chain_tag(chain) != chain_tag(other) != chain_tag(AugmentationConfig(seed=1))
    with FeatureStore.open(tmp_path, "logmel", get_extractor(LOGMEL).config(), 1) as clean_store:
        copies = copies_store(tmp_path, LOGMEL, chain)
        assert copies.directory != clean_store.directory and len(clean_store) == 4 and len(copies) == 8
        for utterance in utterances:
            ids = [copy_id(utterance.id, chain, copy) for copy in range(2)]
            keys = [clean_store.key(utterance.id), *map(copies.key, ids)]
            assert None not in keys and len(set(keys)) == 3  # clean, copy 0, copy 1: all different
            clean, first = clean_store.get(utterance.id).data, copies.get(ids[0]).data
            assert first.shape[::2] == clean.shape[::2]  # (layers, frames, dims): frames change with speed
            assert not np.array_equal(first[:, :10], clean[:, :10])
        copies.close()
    again = extract_augmented(utterances, [LOGMEL], tmp_path, 2, progress=False)  # a rerun computes nothing
    assert again.stores[0].computed == 0 and again.stores[0].cached == 8
    another = extract_augmented(utterances, [LOGMEL], tmp_path, 1, other, progress=False)  # another chain
    assert another.stores[0].computed == 4 and another.stores[0].store != summary.stores[0].store


def test_bad_copy_requests_are_named(voices, tmp_path):
    utterances = list(load_corpus("manifest", voices).utterances)[:2]
    with pytest.raises(ValueError, match="copies must be at least 1"):
        extract_augmented(utterances, [LOGMEL], tmp_path, 0, progress=False)
    with pytest.raises(ExtractorConfigError, match="augmented copies are of audio features"):
        extract_augmented(utterances, [WordLengths()], tmp_path, 1, progress=False)
    with pytest.raises(ValueError, match="augment_copies is a number of copies"):
        DataConfig(augment_copies=-1)


def test_cli_extract_stores_the_copies(voices, tmp_path):
    done = CliRunner().invoke(
        app,
        [
            "extract",
            "manifest",
            str(voices),
            "-f",
            LOGMEL,
            "--store",
            str(tmp_path),
            "--limit",
            "3",
            "--augment-copies",
            "1",
        ],
    )
    assert done.exit_code == 0, done.output
    with copies_store(tmp_path, LOGMEL, AugmentationConfig()) as store:
        assert len(store) == 3 and all(f"~aug-{chain_tag(AugmentationConfig())}-0" in i for i in store.ids())


def write_config(path: Path, manifest: Path, store: Path, copies: int) -> Path:
    config = {
        "name": "tiny",
        "corpus": {"name": "manifest", "root": str(manifest)},
        "inputs": {"audio": {"features": LOGMEL, "frame_pooling": 4}},
        "model": {"name": "lstm", "lstm_hidden": 8, "lstm_layers": 1, "projection_dim": 16},
        "store": str(store),
        "data": {"batch_size": 8, "augment_copies": copies},
        "optim": {"max_epochs": 3, "patience": 5},
        "folds": ["fold1"],
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_training_reads_copies_for_training_clips_only(voices, tmp_path, monkeypatch):
    """Every read is traced to the array it came from: the clean frames or a copy's."""
    reads: list[tuple[bool, str, str]] = []  # (training dataset, utterance id, "clean" or "copy")
    original = FeatureDataset.__getitem__

    def traced(self, index):
        item = original(self, index)
        utt_id, modality = self.ids[index], self.inputs["audio"]
        pointer = item["audio"].data_ptr()
        copies = [frames.ctypes.data for frames in modality.copies.get(utt_id, ())]
        source = "clean" if pointer == modality.frames[utt_id].ctypes.data else "copy" if pointer in copies else "?"
        reads.append((self.augment, utt_id, source))
        return item

    monkeypatch.setattr(FeatureDataset, "__getitem__", traced)
    config = load_config(write_config(tmp_path / "c.yaml", voices, tmp_path / "store", copies=2))
    cv_module.run_cv(config, tmp_path / "run", progress=False)
    experiment = cv_module.prepare(config, progress=False, extract=False)
    fold = next(fold for fold in experiment.corpus.folds if fold.name == "fold1")
    train, val, test = (set(u.id for u in part) for part in fold.split(experiment.corpus.utterances))
    assert {source for _, _, source in reads} == {"clean", "copy"}
    assert all(training for training, _, source in reads if source == "copy")  # only training reads copies
    assert {utt_id for training, utt_id, _ in reads if training} <= train
    assert {utt_id for training, utt_id, _ in reads if not training} <= val | test
    copy_share = np.mean([source == "copy" for training, _, source in reads if training])
    assert 0.4 < copy_share < 0.9  # each read draws clean or one of 2 copies: 2/3 are copies

    reads.clear()
    plain = load_config(write_config(tmp_path / "p.yaml", voices, tmp_path / "store", copies=0))
    cv_module.run_cv(plain, tmp_path / "plain", progress=False)
    assert reads and {source for _, _, source in reads} == {"clean"}


def test_training_without_extraction_names_the_command_for_missing_copies(voices, tmp_path):
    store = tmp_path / "store"
    config = load_config(write_config(tmp_path / "c.yaml", voices, store, copies=1))
    extract_corpus(load_corpus("manifest", voices).utterances, [LOGMEL], store, progress=False)  # clean only
    with pytest.raises(InputError, match=r"lacks 24 augmented copies .*--augment-copies 1"):
        cv_module.prepare(config, progress=False, extract=False)


def test_copies_are_made_again_when_their_babble_pool_changes(voices, tmp_path):
    """A copy's babble comes from the other speakers' clips extracted with it: another pool of
    clips gives other babble, so the cached copy must not be reused."""
    everyone = list(load_corpus("manifest", voices).utterances)
    first = [u for u in everyone if u.speaker == "s0"][:2] + [u for u in everyone if u.speaker == "s1"][:1]
    more = first + [u for u in everyone if u.speaker == "s2"][:1]
    assert extract_augmented(first, [LOGMEL], tmp_path, 1, progress=False).stores[0].computed == 3
    assert extract_augmented(first, [LOGMEL], tmp_path, 1, progress=False).stores[0].computed == 0
    assert extract_augmented(more, [LOGMEL], tmp_path, 1, progress=False).stores[0].computed == 4
