"""Data-parallel training on two CPU processes (gloo): across the ranks, every utterance is
trained on exactly once per epoch, with or without length bucketing, and ranks run as many steps."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from emotrace.training.config import DataConfig
from emotrace.training.data import (
    BucketBatchSampler,
    FeatureDataset,
    FoldDataModule,
    ModalityInputs,
    ShuffledBatchSampler,
)

ITEMS = 19  # in batches of 4: five batches, which two ranks cannot share evenly
BATCH = 4
EPOCHS = 2


class SeenItems(L.LightningModule):
    """Records which items each training step of each epoch held (an item's frames hold its
    index), and writes them to ``folder/rank<R>.json`` at the end."""

    def __init__(self, folder: Path):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.folder = folder
        self.seen: list[list[list[int]]] = []

    def on_train_epoch_start(self) -> None:
        self.seen.append([])

    def training_step(self, batch: dict[str, torch.Tensor], batch_index: int) -> torch.Tensor:
        lengths = batch["audio_lengths"]
        self.seen[-1].append(batch["audio"][:, 0, 0].round().long().tolist())
        assert torch.all(lengths > 0)
        return (self.weight * batch["audio"].sum()).sum()

    def on_train_end(self) -> None:
        (self.folder / f"rank{self.global_rank}.json").write_text(json.dumps(self.seen))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)

    def teardown(self, stage: str) -> None:
        # a spawned rank that exits with its gloo group alive can abort in gloo's threads
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def dataset() -> FeatureDataset:
    """``ITEMS`` utterances of 3 to 20 frames whose every frame holds the item's index."""
    lengths = np.random.default_rng(0).integers(3, 21, ITEMS)
    ids = [f"utt{index}" for index in range(ITEMS)]
    frames = {
        utt_id: np.full((1, int(length), 1), index, np.float32)
        for index, (utt_id, length) in enumerate(zip(ids, lengths))
    }
    return FeatureDataset(ids, [index % 2 for index in range(ITEMS)], {"audio": ModalityInputs(frames, 25.0, False)})


@pytest.mark.slow
@pytest.mark.parametrize("bucket_by_length", [True, False])
def test_two_gloo_ranks_see_every_utterance_once_per_epoch(tmp_path, bucket_by_length):
    config = DataConfig(batch_size=BATCH, bucket_by_length=bucket_by_length, workers=0)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_epochs=EPOCHS,
        use_distributed_sampler=False,  # as emotrace cv trains: the data module shards
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(SeenItems(tmp_path), datamodule=FoldDataModule(dataset(), None, config, seed=0))

    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [len(epochs) for epochs in ranks] == [EPOCHS, EPOCHS]
    for epoch in range(EPOCHS):
        steps = [len(rank[epoch]) for rank in ranks]
        assert steps[0] == steps[1] == 3  # five batches of 4 become six, none repeated
        seen = sorted(item for rank in ranks for batch in rank[epoch] for item in batch)
        assert seen == list(range(ITEMS))
    first, second = ([item for rank in ranks for batch in rank[epoch] for item in batch] for epoch in range(EPOCHS))
    assert first != second  # a new order each epoch: Lightning set each sampler's epoch


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_samplers_shard_every_item_once(world_size):
    lengths = list(np.random.default_rng(1).integers(5, 100, 103))
    for sampler_at in (
        lambda rank: ShuffledBatchSampler(len(lengths), 8, seed=2, rank=rank, world_size=world_size),
        lambda rank: BucketBatchSampler(lengths, 8, seed=2, rank=rank, world_size=world_size),
    ):
        ranks = [list(sampler_at(rank)) for rank in range(world_size)]
        assert {len(batches) for batches in ranks} == {len(sampler_at(0))}
        assert sorted(item for batches in ranks for batch in batches for item in batch) == list(range(103))
        assert all(0 < len(batch) <= 8 for batches in ranks for batch in batches)


def test_a_single_rank_keeps_the_bucket_batches_of_before():
    """One process gets the very batches the sampler gave before it learnt to shard evenly."""
    lengths = list(np.random.default_rng(0).integers(5, 100, 103))
    generator = np.random.default_rng((1, 0))
    order = generator.permutation(103).tolist()
    chunk = sorted(order, key=lengths.__getitem__)  # one pool: 103 items < 50 batches of 8
    expected = [chunk[i : i + 8] for i in range(0, 103, 8)]
    generator.shuffle(expected)
    assert list(BucketBatchSampler(lengths, 8, seed=1)) == expected


def test_too_few_items_for_the_ranks_is_an_error():
    with pytest.raises(ValueError, match="cannot give 4 ranks"):
        list(ShuffledBatchSampler(3, 8, world_size=4))
