"""Analyses of a run's finished fold models: tested again with some of their inputs absent
(:func:`evaluate_without`), or, speaker-adaptive, with each test speaker's moments from a
sample of their clips (:func:`evaluate_speaker_sample`); :func:`finished_fold_checkpoints` also
serves the deletion test."""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from emotrace.checkpoint import Checkpoint, load_checkpoint
from emotrace.corpora import CorpusData, Fold, Utterance
from emotrace.corpora.combined import class_sets
from emotrace.features.pipeline import resolve_extractor
from emotrace.features.store import FeatureStore
from emotrace.protocols import SPEAKER_ADAPTIVE
from emotrace.training.config import ExperimentConfig, load_config
from emotrace.training.crosscorpus import fold_metrics, prediction_rows
from emotrace.training.cv import (
    CONFIG_FILE,
    METRICS_FILE,
    Experiment,
    fold_dataset,
    load_experiment_corpus,
    prepare,
    selected_folds,
)
from emotrace.training.data import FeatureDataset, load_inputs, utterances_with_features
from emotrace.training.ensemble import calibrated_probabilities
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
    for fold, checkpoint in finished_fold_checkpoints(run_dir, config, corpus):
        _, _, test_part = fold.split(experiment.corpus.utterances)
        labels = [experiment.corpus.label_set.index(u.label) for u in test_part]
        test = FeatureDataset([u.id for u in test_part], labels, kept, config.data)
        predictions = predict_probabilities(checkpoint.model, test).argmax(1)
        per_fold[fold.name] = classification_metrics(labels, predictions, experiment.labels)
    if not per_fold:
        raise ValueError(f"{run_dir}: no finished folds")
    return {"missing": sorted(missing), "per_fold": per_fold, **summarise_folds(per_fold, experiment.labels)}


def evaluate_speaker_sample(
    run_dir: str | Path, clips: int | None = None, emotion: str | None = None, seed: int = 0
) -> dict[str, Any]:
    """Test a speaker-adaptive run's fold models again with each test speaker's moments
    estimated from a sample of that speaker's clips instead of all of them.

    The protocol takes every clip of a test speaker, which in acted corpora spans all emotions
    about equally; a user may have a few clips, or a speaker heard in one mood. ``clips``: that
    many drawn at random per speaker (a speaker with fewer keeps all of theirs); ``emotion``:
    only the speaker's clips of that class, or with ``"one"`` of one class drawn per speaker (a
    speaker without clips of the class keeps all of theirs, listed in
    ``speakers_without_the_emotion``); both: ``clips`` of those. Each fold draws with its own
    generator, seeded by ``seed`` and the fold's name, so folds do not depend on each other.
    Every test clip the run scored is scored again. Returns per fold the test metrics the run
    reports (cross-corpus breakdown included), the number of clips the moments came from, and
    the speakers without the emotion; the run's own files are untouched.
    """
    run_dir = Path(run_dir)
    config = load_config(run_dir / CONFIG_FILE)
    if config.protocol != SPEAKER_ADAPTIVE:
        raise ValueError(f"{run_dir} is {config.protocol}: only a speaker-adaptive run reads speaker moments")
    if clips is not None and clips < 1:
        raise ValueError(f"clips must be at least 1, not {clips}")
    corpus = load_experiment_corpus(config)
    if emotion not in (None, "one", *corpus.label_set.classes):
        raise ValueError(f"{emotion!r} is not a class of {corpus.name}: {list(corpus.label_set.classes)} or 'one'")
    extractors = {modality: resolve_extractor(spec.features) for modality, spec in config.inputs.items()}
    sets = class_sets(corpus) if corpus.parts else None
    per_fold = {}
    with ExitStack() as stack:
        stores = {
            modality: stack.enter_context(
                FeatureStore.open(config.store_root(), extractor.name, extractor.config(), extractor.version)
            )
            for modality, extractor in extractors.items()
        }
        usable = utterances_with_features(corpus.utterances, list(stores.values()))  # as prepare keeps them
        for fold, checkpoint in finished_fold_checkpoints(run_dir, config, corpus):
            train_part, _, test_part = fold.split(usable)
            speakers = {u.speaker for u in test_part}
            # the run took a speaker's moments from all of their clips, in any part of the split
            rng = np.random.default_rng([seed, zlib.crc32(fold.name.encode())])
            sample, lacking = moment_sample([u for u in usable if u.speaker in speakers], clips, emotion, rng)
            inputs = load_inputs(test_part, stores, config.inputs, SPEAKER_ADAPTIVE, moments_from=sample)
            test = fold_dataset(Experiment(config, corpus, inputs, []), test_part)
            probabilities = calibrated_probabilities(checkpoint, test)
            trained_on = {u.dataset for u in train_part}
            rows = prediction_rows(test_part, fold.name, probabilities, corpus.label_set.classes, sets, trained_on)
            per_fold[fold.name] = {
                **fold_metrics(rows, corpus.label_set.classes, sets, trained_on),
                "moment_clips": len(sample),
                "speakers_without_the_emotion": lacking,
            }
    if not per_fold:
        raise ValueError(f"{run_dir}: no finished folds")
    return {"clips": clips, "emotion": emotion, "seed": seed, "per_fold": per_fold}


def moment_sample(
    utterances: Sequence[Utterance], clips: int | None, emotion: str | None, rng: np.random.Generator
) -> tuple[list[Utterance], list[str]]:
    """Per speaker, the clips their moments come from (see :func:`evaluate_speaker_sample`),
    and the speakers who have no clip of ``emotion``: those keep all their clips (corpora
    leave a few speakers without one class, and dropping them would change the test set)."""
    by_speaker: dict[str, list[Utterance]] = {}
    for utterance in utterances:
        by_speaker.setdefault(utterance.speaker, []).append(utterance)
    sample: list[Utterance] = []
    lacking = []
    for speaker, mine in by_speaker.items():
        if emotion is not None:
            wanted = emotion if emotion != "one" else rng.choice(sorted({u.label for u in mine}))
            of_emotion = [u for u in mine if u.label == wanted]
            if of_emotion:
                mine = of_emotion
            else:
                lacking.append(speaker)
        if clips is not None and len(mine) > clips:
            mine = [mine[i] for i in sorted(rng.choice(len(mine), clips, replace=False))]
        sample.extend(mine)
    return sample, sorted(lacking)


def finished_fold_checkpoints(
    run_dir: Path, config: ExperimentConfig, corpus: CorpusData
) -> Iterator[tuple[Fold, Checkpoint]]:
    """Each selected fold that has finished (its ``metrics.json`` exists) with its checkpoint:
    what analyses of a run's fold models (ablation, faithfulness) read."""
    for fold in selected_folds(config, corpus):
        fold_dir = run_dir / "folds" / fold.name
        if (fold_dir / METRICS_FILE).exists():
            yield fold, load_checkpoint(fold_dir / "model")
