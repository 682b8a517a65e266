"""Batches for training, from feature stores: load once, split per fold, pad, sample, augment.

A corpus's model inputs are read from the stores once per run (:func:`load_inputs`) and
kept in memory as the model reads them (chosen layers, speaker-normalised under the
speaker-adaptive protocol, pooled); each fold then indexes into them. Padding follows the
model contract (:mod:`emotrace.models.base`): ``(B, L, T, D)`` for stacked layers, else
``(B, T, D)``, with ``<modality>_lengths``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler, WeightedRandomSampler

from emotrace.corpora import Utterance
from emotrace.errors import InputError
from emotrace.features.base import Features
from emotrace.features.normalization import MomentAccumulator, Moments
from emotrace.features.store import FeatureStore
from emotrace.features.transforms import InputSpec, model_frames, select_layers
from emotrace.protocols import SPEAKER_ADAPTIVE
from emotrace.training.config import DataConfig

#: a modality's augmented copies: the store holding them and, per utterance id, their ids there
Copies = tuple[FeatureStore, Mapping[str, Sequence[str]]]


@dataclass
class ModalityInputs:
    """One modality's model inputs by utterance id, and what shapes the model sees."""

    frames: dict[str, np.ndarray]  # (L, T, D) float32
    frame_rate: float  # after pooling; 0 for text and utterance-level features
    stacked: bool  # the model reads (L, T, D) rather than (T, D)
    # augmented copies of an utterance's inputs (data.augment_copies), read by training items only
    copies: dict[str, list[np.ndarray]] = field(default_factory=dict)

    @property
    def dims(self) -> int:
        return next(iter(self.frames.values())).shape[2]

    @property
    def layers(self) -> int:
        return next(iter(self.frames.values())).shape[0]


def utterances_with_features(utterances: Sequence[Utterance], stores: Sequence[FeatureStore]) -> list[Utterance]:
    """The utterances that every store holds features of: what a run can use (extraction
    reports and skips the inputs it could not read)."""
    return [u for u in utterances if all(u.id in store for store in stores)]


def load_inputs(
    utterances: Sequence[Utterance],
    stores: Mapping[str, FeatureStore],
    specs: Mapping[str, InputSpec],
    protocol: str,
    copies: Mapping[str, Copies] | None = None,
    moments_from: Sequence[Utterance] | None = None,
) -> dict[str, ModalityInputs]:
    """Model inputs of ``utterances`` for each modality in ``specs``.

    Under the speaker-adaptive protocol each speaker's moments come from all of that
    speaker's utterances here (labels unused; test speakers included, as the protocol
    says), or from those of ``moments_from`` (other clips of the same speakers, e.g. a few
    of them, to measure how few the protocol needs); augmented copies are normalised with
    their clean clip's speaker's. ``copies``: per modality, the store of its augmented copies
    and, per utterance id, their ids there. Utterances missing from a store are an error
    naming them: extract first.
    """
    if moments_from is not None and protocol != SPEAKER_ADAPTIVE:
        raise ValueError(f"moments_from is for the {SPEAKER_ADAPTIVE} protocol, not {protocol}")
    result = {}
    for modality, spec in specs.items():
        store = stores[modality]
        copy_store, copy_ids = (copies or {}).get(modality, (store, {}))
        missing = [u.id for u in [*utterances, *(moments_from or ())] if u.id not in store]
        if missing:
            raise InputError(
                store.directory,
                f"has no {modality} features for {len(missing)} utterances (e.g. {missing[:3]}); "
                "run `emotrace extract` for them",
            )
        missing = [i for u in utterances for i in copy_ids.get(u.id, ()) if i not in copy_store]
        if missing:
            count = max(len(ids) for ids in copy_ids.values())
            raise InputError(
                copy_store.directory,
                f"lacks {len(missing)} augmented copies of {modality} features (e.g. {missing[:2]}); "
                f"run `emotrace extract CORPUS ROOT -f {spec.features} --store {store.directory.parent} "
                f"--augment-copies {count}` for each corpus",
            )
        key = (
            str(store.directory),
            spec,
            protocol,
            tuple((u.id, u.speaker, store.key(u.id), *map(copy_store.key, copy_ids.get(u.id, ()))) for u in utterances),
            None if moments_from is None else tuple((u.id, u.speaker, store.key(u.id)) for u in moments_from),
        )
        last = _LAST_INPUTS.pop(modality, None)
        if last is not None and last[0] == key:
            inputs = last[1]
        else:
            last = None  # the old inputs go before new ones are read: they can take gigabytes
            inputs = _modality_inputs(utterances, store, spec, protocol, (copy_store, copy_ids), moments_from)
        _LAST_INPUTS[modality] = (key, inputs)
        result[modality] = inputs
    return result


#: Per modality, the inputs :func:`load_inputs` read last and what they were read from
#: (stored content keys included): several runs in one process over the same corpora
#: (seeds, folds, a benchmark's systems) read the stores once. Nothing trains on them in place.
_LAST_INPUTS: dict[str, tuple[tuple, ModalityInputs]] = {}


def _modality_inputs(
    utterances: Sequence[Utterance],
    store: FeatureStore,
    spec: InputSpec,
    protocol: str,
    copies: Copies,
    moments_from: Sequence[Utterance] | None = None,
) -> ModalityInputs:
    sources = utterances if moments_from is None else moments_from
    moments = _speaker_moments(sources, store, spec) if protocol == SPEAKER_ADAPTIVE else None
    unmeasured = sorted({u.speaker for u in utterances} - set(moments)) if moments is not None else []
    if unmeasured:
        raise ValueError(f"no clips to estimate the moments of speakers {unmeasured[:5]} from")
    (copy_store, copy_ids), frames, copy_frames, rate = copies, {}, {}, 0.0
    for utterance in utterances:
        features = store.get(utterance.id)
        speaker_moments = moments[utterance.speaker] if moments else None
        frames[utterance.id] = model_frames(features, spec, speaker_moments)
        if copy_ids.get(utterance.id):
            copy_frames[utterance.id] = [
                model_frames(copy_store.get(i), spec, speaker_moments) for i in copy_ids[utterance.id]
            ]
        rate = features.frame_rate / spec.frame_pooling
    first = next(iter(frames.values()))
    return ModalityInputs(frames, rate, stacked=first.shape[0] > 1, copies=copy_frames)


def _speaker_moments(utterances: Sequence[Utterance], store: FeatureStore, spec: InputSpec) -> dict[str, Moments]:
    accumulators: dict[str, MomentAccumulator] = {}
    for utterance in utterances:
        features: Features = store.get(utterance.id)
        accumulators.setdefault(utterance.speaker, MomentAccumulator()).add(select_layers(features, spec.layers))
    return {speaker: accumulator.moments() for speaker, accumulator in accumulators.items()}


def training_moments(inputs: Mapping[str, ModalityInputs], ids: Sequence[str]) -> dict[str, tuple[Tensor, Tensor]]:
    """Per modality, the ``(mean, std)`` over all frames of the utterances ``ids``, each
    ``(layers, dims)``: what a model with ``standardise_inputs`` is given before training."""
    result = {}
    for name, modality in inputs.items():
        accumulator = MomentAccumulator()
        for utt_id in ids:
            accumulator.add(modality.frames[utt_id])
        moments = accumulator.moments()
        result[name] = (torch.from_numpy(moments.mean), torch.from_numpy(moments.std))
    return result


class FeatureDataset(Dataset):
    """Items ``{modality: (L, T, D) tensor, "label": int}`` (plus ``"corpus": int`` when
    ``corpora`` is given), augmented when ``augment``: then each read of an item with
    augmented copies draws (from the seeded generator) its clean inputs or one of the copies,
    so each epoch sees a clip clean or as one of its copies."""

    def __init__(
        self,
        ids: Sequence[str],
        labels: Sequence[int],
        inputs: Mapping[str, ModalityInputs],
        config: DataConfig | None = None,
        augment: bool = False,
        seed: int = 0,
        mask_fill: Mapping[str, np.ndarray] | None = None,
        corpora: Sequence[int] | None = None,
    ):
        """``mask_fill``: per modality, the ``(layers, dims)`` value time masks write (default
        zeros); the training mean when the model standardises its inputs, so that a masked
        frame is a blank one after standardisation rather than an outlier. ``corpora``: each
        item's corpus (the row of its class mask) when several corpora train together."""
        self.ids, self.labels, self.inputs = list(ids), list(labels), inputs
        self.corpora = None if corpora is None else list(corpora)
        self.config = config or DataConfig()
        self.augment = augment
        self.generator = np.random.default_rng(seed)
        self.mask_fill = dict(mask_fill or {})

    def __len__(self) -> int:
        return len(self.ids)

    def length(self, index: int) -> int:
        """Frames of the longest modality of item ``index`` (for bucketing)."""
        return max(modality.frames[self.ids[index]].shape[1] for modality in self.inputs.values())

    def __getitem__(self, index: int) -> dict[str, Tensor | int]:
        item: dict[str, Tensor | int] = {"label": self.labels[index]}
        if self.corpora is not None:
            item["corpus"] = self.corpora[index]
        utt_id = self.ids[index]
        variants = max((len(modality.copies.get(utt_id, ())) for modality in self.inputs.values()), default=0)
        variant = int(self.generator.integers(variants + 1)) if self.augment and variants else 0
        for name, modality in self.inputs.items():
            frames = modality.frames[utt_id]
            if variant and modality.copies.get(utt_id):
                frames = modality.copies[utt_id][variant - 1]
            if self.augment and modality.frame_rate > 0:
                frames = self._augmented(frames, modality.frame_rate, self.mask_fill.get(name))
            item[name] = torch.from_numpy(frames)
        return item

    def _augmented(self, frames: np.ndarray, frame_rate: float, fill: np.ndarray | None) -> np.ndarray:
        """A random crop, then random time masks (spans of ``fill``, else zeros), on a copy."""
        length = frames.shape[1]
        if self.config.crop_seconds:
            crop = max(1, round(self.config.crop_seconds * frame_rate))
            if length > crop:
                start = int(self.generator.integers(0, length - crop + 1))
                frames = frames[:, start : start + crop]
                length = crop
        if self.config.time_mask > 0 and length > 1:
            frames = frames.copy()
            span = max(1, round(self.config.time_mask * length / self.config.time_mask_spans))
            for _ in range(self.config.time_mask_spans):
                width = int(self.generator.integers(1, span + 1))
                start = int(self.generator.integers(0, max(1, length - width + 1)))
                frames[:, start : start + width] = 0.0 if fill is None else fill[:, None, :]
        return frames


def collate(items: Sequence[dict[str, Tensor | int]], stacked: Mapping[str, bool]) -> dict[str, Tensor]:
    """Pad a list of items into the model's batch dict (plus ``labels``, and ``corpora``
    when items name their corpus)."""
    batch: dict[str, Tensor] = {"labels": torch.tensor([item["label"] for item in items], dtype=torch.long)}
    if "corpus" in items[0]:
        batch["corpora"] = torch.tensor([item["corpus"] for item in items], dtype=torch.long)
    for name, is_stacked in stacked.items():
        tensors = [item[name] for item in items]
        lengths = torch.tensor([t.shape[1] for t in tensors], dtype=torch.long)
        layers, dims = tensors[0].shape[0], tensors[0].shape[2]
        padded = tensors[0].new_zeros(len(tensors), layers, int(lengths.max()), dims)
        for row, tensor in enumerate(tensors):
            padded[row, :, : tensor.shape[1]] = tensor
        batch[name] = padded if is_stacked else padded[:, 0]
        batch[f"{name}_lengths"] = lengths
    return batch


class Collate:
    """A picklable :func:`collate` bound to the modalities' shapes (for worker processes)."""

    def __init__(self, stacked: Mapping[str, bool]):
        self.stacked = dict(stacked)

    def __call__(self, items: Sequence[dict[str, Tensor | int]]) -> dict[str, Tensor]:
        return collate(items, self.stacked)


class ShuffledBatchSampler(Sampler[list[int]]):
    """Shuffled batches sharded over distributed ranks: every item exactly once per epoch.

    Every rank draws the same order (from the seed and the epoch) and takes every
    ``world_size``-th batch. DDP needs every rank to run as many steps: when the batches do
    not divide evenly, the largest are halved rather than items repeated (a repeated item
    would count twice in the epoch). With ``weights``, an epoch is instead as many draws
    (with replacement) with those relative probabilities (e.g. corpus-balanced sampling).
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        weights: Sequence[float] | None = None,
    ):
        self.size, self.batch_size = size, batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.probabilities = None if weights is None else np.asarray(weights, np.float64) / np.sum(weights)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def sampler(self) -> ShuffledBatchSampler:
        """What Lightning sets the epoch of before each epoch: a batch sampler's ``sampler``
        (it never calls the batch sampler's own ``set_epoch``), here the batch sampler itself."""
        return self

    def _order(self, generator: np.random.Generator) -> list[int]:
        """The epoch's items: a permutation, or weighted draws with replacement."""
        if self.probabilities is None:
            return generator.permutation(self.size).tolist()
        return generator.choice(self.size, self.size, p=self.probabilities).tolist()

    def _all_batches(self, generator: np.random.Generator) -> list[list[int]]:
        order = self._order(generator)
        return [order[i : i + self.batch_size] for i in range(0, self.size, self.batch_size)]

    def _batches(self) -> list[list[int]]:
        batches = self._all_batches(np.random.default_rng((self.seed, self.epoch)))
        while len(batches) % self.world_size:
            largest = max(range(len(batches)), key=lambda index: len(batches[index]))
            batch = batches[largest]
            if len(batch) < 2:
                raise ValueError(f"{self.size} training items cannot give {self.world_size} ranks as many batches each")
            batches[largest : largest + 1] = [batch[: len(batch) // 2], batch[len(batch) // 2 :]]
        return batches[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        return math.ceil(math.ceil(self.size / self.batch_size) / self.world_size)


class BucketBatchSampler(ShuffledBatchSampler):
    """Shuffled batches of similar lengths, sharded over distributed ranks.

    Items are shuffled (or drawn, with ``weights``), cut into pools of 50 batches, each pool
    sorted by length and cut into batches, and the batches shuffled again: padding stays
    small while every epoch sees new batch mixes.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        weights: Sequence[float] | None = None,
    ):
        super().__init__(len(lengths), batch_size, seed, rank, world_size, weights)
        self.lengths = list(lengths)

    def _all_batches(self, generator: np.random.Generator) -> list[list[int]]:
        order = self._order(generator)
        pool = self.batch_size * 50
        batches = []
        for start in range(0, len(order), pool):
            chunk = sorted(order[start : start + pool], key=self.lengths.__getitem__)
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        generator.shuffle(batches)
        return batches


def with_noisy_text(
    inputs: Mapping[str, ModalityInputs], ids: Sequence[str], labels: Sequence[int], share: float, seed: int
) -> dict[str, ModalityInputs]:
    """``inputs`` where a seeded ``share`` of ``ids`` (rounded) carry the ``text`` of another of
    ``ids`` whose label differs: mismatched pairs for the noisy-text control. Donors come from
    ``ids`` only, so text never crosses to another split; the other items are untouched."""
    if "text" not in inputs:
        raise ValueError("noisy_text needs a text input")
    generator = np.random.default_rng(seed)
    labels = np.asarray(labels)
    frames = dict(inputs["text"].frames)
    for index in generator.permutation(len(ids))[: round(share * len(ids))]:
        donors = np.flatnonzero(labels != labels[index])
        if len(donors):
            frames[ids[index]] = inputs["text"].frames[ids[int(generator.choice(donors))]]
    noisy = ModalityInputs(frames, inputs["text"].frame_rate, inputs["text"].stacked)
    return {**inputs, "text": noisy}


def inverse_frequency_weights(labels: Sequence[int], num_classes: int) -> list[float]:
    """``n / (C · n_c)`` per class: 1 for every class when balanced; classes absent get 0."""
    counts = Counter(labels)
    return [len(labels) / (num_classes * counts[c]) if counts[c] else 0.0 for c in range(num_classes)]


def corpus_balanced_weights(corpora: Sequence[int], labels: Sequence[int], balance_classes: bool) -> list[float]:
    """Per item, a draw weight that gives every corpus the same share of an epoch (and,
    with ``balance_classes``, every class of a corpus the same share of that corpus's)."""
    per_corpus = Counter(corpora)
    per_class = Counter(zip(corpora, labels))
    classes_of = Counter(corpus for corpus, _ in per_class)
    return [
        1.0 / (classes_of[c] * per_class[(c, y)]) if balance_classes else 1.0 / per_corpus[c]
        for c, y in zip(corpora, labels)
    ]


class FoldDataModule(L.LightningDataModule):
    """Train and validation loaders of one fold, distributed-aware.

    Under DDP the training batches are sharded over the ranks here (each utterance once per
    epoch, or with class-balanced sampling, an independent draw per rank of its share); every
    rank validates on the whole validation set, so each computes the same validation metrics.
    """

    def __init__(self, train: FeatureDataset, val: FeatureDataset | None, config: DataConfig, seed: int):
        super().__init__()
        self.train, self.val, self.config, self.seed = train, val, config, seed
        self.collate = Collate({name: inputs.stacked for name, inputs in train.inputs.items()})

    def train_dataloader(self) -> DataLoader:
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        if self.config.corpus_balanced and self.train.corpora is not None:
            weights = corpus_balanced_weights(self.train.corpora, self.train.labels, self.config.balanced_sampling)
            lengths = [self.train.length(i) for i in range(len(self.train))]
            sampler = BucketBatchSampler(lengths, self.config.batch_size, self.seed, rank, world, weights)
            return self._loader(self.train, batch_sampler=sampler)
        if self.config.balanced_sampling:
            weights = inverse_frequency_weights(self.train.labels, max(self.train.labels) + 1)
            sampler = WeightedRandomSampler(
                [weights[label] for label in self.train.labels],
                num_samples=math.ceil(len(self.train) / world),
                generator=torch.Generator().manual_seed(self.seed + rank),
            )
            return self._loader(self.train, sampler=sampler, batch_size=self.config.batch_size)
        if self.config.bucket_by_length:
            lengths = [self.train.length(i) for i in range(len(self.train))]
            sampler = BucketBatchSampler(lengths, self.config.batch_size, self.seed, rank, world)
            return self._loader(self.train, batch_sampler=sampler)
        if world > 1:  # the trainer adds no DistributedSampler (use_distributed_sampler=False): shard here
            sampler = ShuffledBatchSampler(len(self.train), self.config.batch_size, self.seed, rank, world)
            return self._loader(self.train, batch_sampler=sampler)
        generator = torch.Generator().manual_seed(self.seed)
        return self._loader(self.train, shuffle=True, batch_size=self.config.batch_size, generator=generator)

    def val_dataloader(self) -> DataLoader | list:
        if self.val is None or len(self.val) == 0:
            return []
        return self._loader(self.val, batch_size=self.config.batch_size)

    def _loader(self, dataset: FeatureDataset, **kwargs) -> DataLoader:
        return DataLoader(
            dataset,
            collate_fn=self.collate,
            num_workers=self.config.workers,
            persistent_workers=self.config.workers > 0,
            **kwargs,
        )
