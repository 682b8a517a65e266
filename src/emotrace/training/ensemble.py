"""Seed ensembles of a run's fold models: is averaging K trainings worth K heads at predict time?

The members are runs of one config that differ only in the training seed and share their
folds and validation speakers (``data.split_seed`` fixed), so the ensemble and each member
are judged on the same speakers. Each member's probabilities are its calibrated ones (its
logits over its own temperature); the ensemble's are their mean. Validation UA is scored as
training scores it (per corpus, among that corpus's classes, then the mean over corpora);
the test side as :func:`~emotrace.training.crosscorpus.fold_metrics` scores a run's
predictions. Predictions are recomputed from the fold models: runs do not save those of
validation clips.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emotrace.checkpoint import Checkpoint, load_checkpoint
from emotrace.corpora.combined import class_sets
from emotrace.training.calibration import scaled_probabilities
from emotrace.training.config import ExperimentConfig, load_config
from emotrace.training.crosscorpus import fold_metrics, prediction_rows
from emotrace.training.cv import CONFIG_FILE, METRICS_FILE, Experiment, fold_dataset, prepare, selected_folds
from emotrace.training.data import FeatureDataset
from emotrace.training.metrics import group_mean_metrics
from emotrace.training.module import predict_logits


def evaluate_ensemble(run_dirs: Sequence[str | Path]) -> dict[str, Any]:
    """Every fold the runs ``run_dirs`` all finished, scored by each member and by the mean of
    their calibrated probabilities.

    Returns ``members``, ``val_ua`` (the ensemble's, mean over folds), ``member_val_ua`` (each
    member's, mean over folds) and ``per_fold``: per fold its ``val_ua``, ``member_val_ua`` and
    the ensemble's test metrics (``cross_corpus`` per held-out corpus for cross-corpus folds).
    Raises ValueError when the runs are not one config's seeds or validate on different speakers.
    """
    run_dirs = [Path(run_dir) for run_dir in run_dirs]
    if len(run_dirs) < 2:
        raise ValueError(f"an ensemble needs at least two runs, got {len(run_dirs)}")
    configs = [load_config(run_dir / CONFIG_FILE) for run_dir in run_dirs]
    for run_dir, config in zip(run_dirs[1:], configs[1:]):
        if _recipe(config) != _recipe(configs[0]):
            raise ValueError(
                f"{run_dir} is not a run of {run_dirs[0]}'s config with another seed "
                "(all else must match, the validation speakers' data.split_seed included)"
            )
    experiment = prepare(configs[0], progress=False, extract=False)
    per_fold = {}
    for fold in selected_folds(configs[0], experiment.corpus):
        fold_dirs = [run_dir / "folds" / fold.name for run_dir in run_dirs]
        if not all((fold_dir / METRICS_FILE).exists() for fold_dir in fold_dirs):
            continue
        members = [load_checkpoint(fold_dir / "model") for fold_dir in fold_dirs]
        for fold_dir, member in zip(fold_dirs[1:], members[1:]):
            if member.info.get("val_speakers") != members[0].info.get("val_speakers"):
                raise ValueError(
                    f"{fold_dir} validates on other speakers than {fold_dirs[0]}: fix data.split_seed across members"
                )
        train_part, val_part, test_part = fold.split(experiment.corpus.utterances)
        val = fold_dataset(experiment, val_part, noisy_text=True)
        member_val = [calibrated_probabilities(member, val) for member in members]
        scores: dict[str, Any] = {
            "val_ua": validation_ua(experiment, val, np.mean(member_val, axis=0)),
            "member_val_ua": [validation_ua(experiment, val, probabilities) for probabilities in member_val],
        }
        if test_part:
            test = fold_dataset(experiment, test_part)
            averaged = np.mean([calibrated_probabilities(member, test) for member in members], axis=0)
            sets = class_sets(experiment.corpus) if experiment.multi_corpus else None
            trained_on = {u.dataset for u in train_part}
            rows = prediction_rows(test_part, fold.name, averaged, experiment.labels, sets, trained_on)
            scores.update(fold_metrics(rows, experiment.labels, sets, trained_on))
        per_fold[fold.name] = scores
    if not per_fold:
        raise ValueError(f"no fold is finished in all of {[str(run_dir) for run_dir in run_dirs]}")
    return {
        "members": len(run_dirs),
        "val_ua": float(np.mean([scores["val_ua"] for scores in per_fold.values()])),
        "member_val_ua": np.mean([scores["member_val_ua"] for scores in per_fold.values()], axis=0).tolist(),
        "per_fold": per_fold,
    }


def calibrated_probabilities(member: Checkpoint, dataset: FeatureDataset) -> np.ndarray:
    """``(N, C)``: the member's probabilities of every item, its logits over its temperature."""
    return scaled_probabilities(predict_logits(member.model, dataset), member.temperature)


def validation_ua(experiment: Experiment, dataset: FeatureDataset, probabilities: np.ndarray) -> float:
    """UA as model selection scores it: each item predicted among its corpus's classes, each
    corpus's UA, then their mean (one corpus: plain UA)."""
    if experiment.multi_corpus:
        masks = experiment.class_masks().numpy()
        groups = np.asarray(dataset.corpora)
        probabilities = np.where(masks[groups], probabilities, -np.inf)
    else:
        groups = np.zeros(len(dataset), int)
    return group_mean_metrics(dataset.labels, probabilities.argmax(1), groups, experiment.labels)["ua"]


def _recipe(config: ExperimentConfig) -> dict[str, Any]:
    """What ensemble members must share: everything but the training seed, where features
    live and how many processes train; the validation speakers' seed included."""
    data = config.to_dict()
    for name in ("seed", "store", "folds", "trainer", "name"):
        data.pop(name)
    data["data"]["split_seed"] = config.split_seed
    return data
