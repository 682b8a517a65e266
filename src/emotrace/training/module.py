"""The Lightning module that trains any registered model, and batch prediction.

The module is thin on purpose: the model computes its own loss (``model.loss``), so a
method with a regulariser (contrastive) trains here unchanged. Validation UA, computed
over the whole validation set at the end of each epoch, drives model selection and early
stopping; every rank validates the full set, so the score is the same on all of them.
"""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import torch
from torch import Tensor

from emotrace.models.base import EmotionModel
from emotrace.models.outputs import ModelOutput
from emotrace.training.config import OptimConfig
from emotrace.training.data import FeatureDataset, collate
from emotrace.training.metrics import group_mean_metrics

#: batch entries that are not model inputs
BATCH_TARGETS = ("labels", "corpora")


class EmotionModule(L.LightningModule):
    """``class_masks (corpora, classes)``, for several corpora trained together: which classes
    each corpus has. Batches then carry ``corpora``; each item's loss and validation
    prediction range over its corpus's classes only, and validation UA is the mean of the
    corpora's own UAs, so a small corpus counts as much as a large one in model selection."""

    def __init__(
        self, model: EmotionModel, optim: OptimConfig, labels: tuple[str, ...], class_masks: Tensor | None = None
    ):
        super().__init__()
        self.model, self.optim, self.labels = model, optim, labels
        self.register_buffer("class_masks", class_masks, persistent=False)
        self._val_predictions: list[Tensor] = []
        self._val_labels: list[Tensor] = []
        self._val_corpora: list[Tensor] = []

    def forward(self, batch: dict[str, Tensor]):
        return self.model(**{name: value for name, value in batch.items() if name not in BATCH_TARGETS})

    def _mask(self, batch: dict[str, Tensor]) -> Tensor | None:
        return None if self.class_masks is None else self.class_masks[batch["corpora"]]

    def training_step(self, batch: dict[str, Tensor], batch_index: int) -> Tensor:
        loss = self.model.loss(self(batch), batch["labels"], self._mask(batch))
        size = len(batch["labels"])
        self.log("train_loss", loss.total, prog_bar=True, batch_size=size, sync_dist=True)
        for name, part in loss.parts.items():
            self.log(f"train_{name}", part, batch_size=size, sync_dist=True)
        return loss.total

    def validation_step(self, batch: dict[str, Tensor], batch_index: int) -> None:
        output = self(batch)
        mask = self._mask(batch)
        self.log("val_loss", self.model.loss(output, batch["labels"], mask).total, batch_size=len(batch["labels"]))
        logits = output.logits if mask is None else output.logits.masked_fill(~mask, float("-inf"))
        self._val_predictions.append(logits.argmax(-1).cpu())
        self._val_labels.append(batch["labels"].cpu())
        if mask is not None:
            self._val_corpora.append(batch["corpora"].cpu())

    def on_validation_epoch_end(self) -> None:
        if not self._val_labels:
            return
        labels, predictions = torch.cat(self._val_labels).numpy(), torch.cat(self._val_predictions).numpy()
        groups = torch.cat(self._val_corpora).numpy() if self._val_corpora else np.zeros(len(labels), int)
        scores = group_mean_metrics(labels, predictions, groups, self.labels)
        self._val_predictions.clear()
        self._val_labels.clear()
        self._val_corpora.clear()
        self.log("val_ua", scores["ua"], prog_bar=True)
        self.log("val_wa", scores["wa"])

    def configure_optimizers(self):
        """AdamW; linear warm-up, then cosine decay to zero over the remaining steps."""
        pretrained = {id(parameter) for parameter in self.model.pretrained_parameters()}
        groups = [{"params": [p for p in self.parameters() if id(p) not in pretrained]}]
        if pretrained:
            encoder_lr = self.optim.lr if self.optim.encoder_lr is None else self.optim.encoder_lr
            groups.append({"params": self.model.pretrained_parameters(), "lr": encoder_lr})
        optimizer = torch.optim.AdamW(groups, lr=self.optim.lr, weight_decay=self.optim.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        steps_per_epoch = total / max(1, self.trainer.max_epochs)
        warmup = min(total - 1, round(self.optim.warmup_epochs * steps_per_epoch))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


@torch.inference_mode()
def predict_logits(model: EmotionModel, dataset: FeatureDataset, batch_size: int = 64) -> np.ndarray:
    """Class logits ``(N, C)`` of every item, in dataset order (eval mode, no
    augmentation; items batched shortest first so padding stays small)."""
    model.eval()
    stacked = {name: inputs.stacked for name, inputs in dataset.inputs.items()}
    order = sorted(range(len(dataset)), key=dataset.length)
    logits = np.zeros((len(dataset), model.config.num_classes), np.float32)
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        batch = collate([dataset[i] for i in indices], stacked)
        for name in BATCH_TARGETS:
            batch.pop(name, None)
        logits[indices] = model(**batch).logits.float().cpu().numpy()
    return logits


def predict_probabilities(model: EmotionModel, dataset: FeatureDataset, batch_size: int = 64) -> np.ndarray:
    """The model's own (uncalibrated) class probabilities ``(N, C)`` of every item, in dataset order."""
    return ModelOutput(torch.from_numpy(predict_logits(model, dataset, batch_size))).probabilities.numpy()
