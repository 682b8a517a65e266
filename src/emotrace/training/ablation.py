"""Analyses of a run's finished fold models: tested again with some of their inputs absent
(:func:`evaluate_without`); :func:`finished_fold_models` also serves the deletion test."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from emotrace.checkpoint import load_checkpoint
from emotrace.corpora import CorpusData, Fold
from emotrace.models.base import EmotionModel
from emotrace.training.config import ExperimentConfig, load_config
from emotrace.training.cv import CONFIG_FILE, METRICS_FILE, load_experiment_corpus, prepare, selected_folds
from emotrace.training.data import FeatureDataset
from emotrace.training.metrics import classification_metrics, summarise_folds
from emotrace.training.module import predict_probabilities


def evaluate_without(run_dir: str | Path, missing: Sequence[str]) -> dict[str, Any]:
    """Test every finished fold model again with the ``missing`` modalities absent.

    For models that accept a missing modality (method B): how much of their accuracy rests
    on it. Returns per-fold metrics and their summary; the run's own files are untouched.
    """
    run_dir = Path(run_dir)
    config = load_config(run_dir / CONFIG_FILE)
    corpus = load_experiment_corpus(config)
    experiment = prepare(config, progress=False, corpus=corpus)
    unknown = sorted(set(missing) - set(experiment.inputs))
    if unknown or len(set(missing)) >= len(experiment.inputs):
        raise ValueError(f"can leave out some of {sorted(experiment.inputs)}, not {sorted(missing)}")
    kept = {m: inputs for m, inputs in experiment.inputs.items() if m not in missing}
    per_fold = {}
    for fold, model in finished_fold_models(run_dir, config, corpus):
        _, _, test_part = fold.split(experiment.corpus.utterances)
        labels = [experiment.corpus.label_set.index(u.label) for u in test_part]
        test = FeatureDataset([u.id for u in test_part], labels, kept, config.data)
        predictions = predict_probabilities(model, test).argmax(1)
        per_fold[fold.name] = classification_metrics(labels, predictions, experiment.labels)
    if not per_fold:
        raise ValueError(f"{run_dir}: no finished folds")
    return {"missing": sorted(missing), "per_fold": per_fold, **summarise_folds(per_fold, experiment.labels)}


def finished_fold_models(
    run_dir: Path, config: ExperimentConfig, corpus: CorpusData
) -> Iterator[tuple[Fold, EmotionModel]]:
    """Each selected fold that has finished (its ``metrics.json`` exists) with its model: what
    analyses of a run's fold models (ablation, faithfulness) read."""
    for fold in selected_folds(config, corpus):
        fold_dir = run_dir / "folds" / fold.name
        if (fold_dir / METRICS_FILE).exists():
            yield fold, load_checkpoint(fold_dir / "model").model
