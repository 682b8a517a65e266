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
from emotrace.training.metrics import classification_metrics


class EmotionModule(L.LightningModule):
    def __init__(self, model: EmotionModel, optim: OptimConfig, labels: tuple[str, ...]):
        super().__init__()
        self.model, self.optim, self.labels = model, optim, labels
        self._val_predictions: list[Tensor] = []
        self._val_labels: list[Tensor] = []

    def forward(self, batch: dict[str, Tensor]):
        return self.model(**{name: value for name, value in batch.items() if name != "labels"})

    def training_step(self, batch: dict[str, Tensor], batch_index: int) -> Tensor:
        loss = self.model.loss(self(batch), batch["labels"])
        size = len(batch["labels"])
        self.log("train_loss", loss.total, prog_bar=True, batch_size=size, sync_dist=True)
        for name, part in loss.parts.items():
            self.log(f"train_{name}", part, batch_size=size, sync_dist=True)
        return loss.total

    def validation_step(self, batch: dict[str, Tensor], batch_index: int) -> None:
        output = self(batch)
        self.log("val_loss", self.model.loss(output, batch["labels"]).total, batch_size=len(batch["labels"]))
        self._val_predictions.append(output.logits.argmax(-1).cpu())
        self._val_labels.append(batch["labels"].cpu())

    def on_validation_epoch_end(self) -> None:
        if not self._val_labels:
            return
        metrics = classification_metrics(
            torch.cat(self._val_labels).numpy(), torch.cat(self._val_predictions).numpy(), self.labels
        )
        self._val_predictions.clear()
        self._val_labels.clear()
        self.log("val_ua", metrics["ua"], prog_bar=True)
        self.log("val_wa", metrics["wa"])

    def configure_optimizers(self):
        """AdamW; linear warm-up, then cosine decay to zero over the remaining steps."""
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.optim.lr, weight_decay=self.optim.weight_decay)
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
        batch.pop("labels")
        logits[indices] = model(**batch).logits.float().cpu().numpy()
    return logits


def predict_probabilities(
    model: EmotionModel, dataset: FeatureDataset, batch_size: int = 64, temperature: float = 1.0
) -> np.ndarray:
    """Class probabilities ``(N, C)`` of every item, in dataset order, at ``temperature``
    (a checkpoint's calibration; 1: the model's own)."""
    logits = torch.from_numpy(predict_logits(model, dataset, batch_size))
    return ModelOutput(logits).probabilities_at(temperature).numpy()
