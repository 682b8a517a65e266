"""Augmented copies of a corpus's audio features, cached beside the clean ones.

Copy *k* of utterance *u* is stored under the id :func:`copy_id` ``(u, chain, k)`` and an
input key made of *u*'s audio key, the chain's config and *k*: a changed file or chain is
recomputed, and copies never collide with clean entries or with each other. They live in a
store folder of their own next to the clean one (:func:`copies_store`: the extractor's
config plus the chain's), because compacting a store rewrites its whole file: copies added
to the clean store would rewrite every clean feature too (17 GB for Whisper-base on three
corpora), and need that much free disk again. Extraction goes through the
same pipeline as clean features (:func:`~emotrace.features.pipeline.extract_corpus`:
decoding ahead in threads, batches written atomically, a rerun computing only what is
missing, a progress bar); only the keys and the decoding differ (:class:`AugmentedRun`).

Babble is drawn from the utterances extracted together, each clip's from other speakers of
its own corpus (``Utterance.dataset``; see :mod:`emotrace.augmentation` for what that means
for folds).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import TaskID

from emotrace.augmentation import AugmentationConfig, Augmenter, BabblePool, BabbleSource, Clip
from emotrace.corpora.records import Utterance
from emotrace.errors import InputError
from emotrace.features.base import Extractor, Features
from emotrace.features.inputs import ExtractorConfigError
from emotrace.features.keys import config_hash
from emotrace.features.pipeline import ExtractionRun, ExtractionSummary, extract_corpus, resolve_extractor
from emotrace.features.store import FeatureStore
from emotrace.features.storing import audio_key_or_error, load_or_error

#: bumped when the chain's code changes what a config produces, so old copies are recomputed
CHAIN_VERSION = 1
_SEPARATOR = "~aug-"


def chain_tag(config: AugmentationConfig) -> str:
    """Short hash of the chain's config: part of every copy's id and key."""
    return config_hash("augmentation", CHAIN_VERSION, config.to_dict())


def copy_id(utt_id: str, config: AugmentationConfig, copy: int) -> str:
    """The store id of copy ``copy`` (0-based) of ``utt_id`` under ``config``."""
    return f"{utt_id}{_SEPARATOR}{chain_tag(config)}-{copy}"


def copy_key(audio_key: str, config: AugmentationConfig, copy: int, babble: str = "") -> str:
    """The input key of a copy: the clean audio's key, the chain, the copy index and what its
    babble may be drawn from (:meth:`~emotrace.augmentation.BabblePool.fingerprint`), so that a
    copy made from another pool of utterances is made again."""
    text = f"{audio_key}|{chain_tag(config)}|{copy}" + (f"|{babble}" if babble else "")
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class CopiesOf(Extractor):
    """``extractor`` itself, under a config that adds the augmentation chain: what names the
    store folder of its copies (see the module's docstring)."""

    modality = "audio"

    def __init__(self, extractor: Extractor, chain: AugmentationConfig):
        self.extractor, self.chain = extractor, chain
        self.name, self.version = extractor.name, extractor.version

    def config(self) -> dict[str, Any]:
        return {**self.extractor.config(), "augmentation": {"chain": self.chain.to_dict(), "version": CHAIN_VERSION}}

    def extract(self, inputs: Sequence[np.ndarray] | Sequence[str]) -> list[Features]:
        return self.extractor.extract(inputs)


def copies_store(store_dir: str | Path, extractor: str | Extractor, chain: AugmentationConfig) -> FeatureStore:
    """The store holding the copies of ``extractor``'s features made with ``chain``."""
    copies = CopiesOf(resolve_extractor(extractor), chain)
    return FeatureStore.open(store_dir, copies.name, copies.config(), copies.version)


def babble_pool(utterances: Sequence[Utterance]) -> BabblePool:
    """A pool of the ``utterances`` with audio, grouped by their corpus (``dataset``)."""
    return BabblePool(
        [BabbleSource(u.speaker, u.dataset, u.audio, u.start, u.end) for u in utterances if u.audio is not None]
    )


class AugmentedRun(ExtractionRun):
    """An extraction whose inputs are augmented copies: keys derived from the clean audio's,
    waveforms the clean ones passed through the chain."""

    def __init__(self, *args: Any, augmenter: Augmenter, sources: dict[str, tuple[Utterance, int]], **kwargs: Any):
        """``sources``: per copy id, the clean utterance and the copy index."""
        super().__init__(*args, **kwargs)
        self.augmenter, self.sources = augmenter, sources

    def _keys(self, utterances: list[Utterance], task: TaskID) -> Iterator[str | InputError]:
        clean: dict[str, str | InputError] = {}
        for utterance in utterances:
            original, copy = self.sources[utterance.id]
            if original.id not in clean:
                clean[original.id] = audio_key_or_error(original)
            key = clean[original.id]
            self.bar.advance(task)
            pool = self.augmenter.babble_pool
            babble = pool.fingerprint(original.dataset, original.speaker) if pool is not None else ""
            yield key if isinstance(key, InputError) else copy_key(key, self.augmenter.config, copy, babble)

    def load(self, utterance: Utterance) -> np.ndarray | InputError:
        original, copy = self.sources[utterance.id]
        waveform = load_or_error(original)
        if isinstance(waveform, InputError):
            return waveform
        try:
            return self.augmenter.augment(waveform, Clip(original.id, original.speaker, original.dataset), copy)
        except InputError as error:  # a babble source that cannot be decoded
            return error


def extract_augmented(
    utterances: Sequence[Utterance],
    extractors: Sequence[str | Extractor],
    store_dir: str | Path,
    copies: int,
    config: AugmentationConfig | None = None,
    **options: Any,
) -> ExtractionSummary:
    """Store ``copies`` augmented copies of each utterance's audio features under
    ``store_dir``, beside the clean ones; ``options`` as for :func:`extract_corpus`."""
    if copies < 1:
        raise ValueError(f"copies must be at least 1, got {copies}")
    resolved = [resolve_extractor(spec) for spec in extractors]
    not_audio = [extractor.name for extractor in resolved if extractor.modality != "audio"]
    if not_audio:
        raise ExtractorConfigError(f"augmented copies are of audio features; {', '.join(not_audio)} is not audio")
    config = config or AugmentationConfig()
    with_audio = [u for u in utterances if u.audio is not None]
    sources: dict[str, tuple[Utterance, int]] = {}
    copied = []
    for copy in range(copies):
        for utterance in with_audio:
            item = replace(utterance, id=copy_id(utterance.id, config, copy), transcript=None)
            sources[item.id] = (utterance, copy)
            copied.append(item)
    augmenter = Augmenter(config, babble_pool(with_audio))
    run = partial(AugmentedRun, augmenter=augmenter, sources=sources)
    stores = [CopiesOf(extractor, config) for extractor in resolved]
    return extract_corpus(copied, stores, store_dir, asr=None, make_run=run, **options)
