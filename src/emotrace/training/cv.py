"""Cross-validation runs: every fold of a corpus's protocol, resumable, into one directory.

::

    RUN_DIR/config.yaml                   the resolved experiment (another config is refused)
    RUN_DIR/folds/<fold>/model/           checkpoint: model.safetensors + config.json
    RUN_DIR/folds/<fold>/predictions.jsonl
    RUN_DIR/folds/<fold>/metrics.json     test metrics; written last, it marks the fold done
    RUN_DIR/folds/<fold>/log/version_*/   per-epoch training loss and validation UA (CSV), per attempt
    RUN_DIR/folds/<fold>/lightning/       resume state while the fold trains
    RUN_DIR/model/                        the final model on all speakers (``emotrace train``)
    RUN_DIR/metrics.json, predictions.jsonl, confusion.png, report.md   (see report.py)

A fold whose ``metrics.json`` exists is never trained again; a fold killed mid-training
resumes from its last epoch. Model selection uses validation UA on the fold's validation
speakers, never the test fold.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, EMAWeightAveraging, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger
from rich.console import Console

from emotrace.atomic import write_json_atomically, write_jsonl_atomically
from emotrace.checkpoint import Checkpoint, load_checkpoint
from emotrace.corpora import CorpusData, Fold, load_corpus
from emotrace.corpora.combined import class_sets, combine, corpus_index, final_fold
from emotrace.errors import InputError
from emotrace.features.pipeline import resolve_extractor
from emotrace.features.store import FeatureStore
from emotrace.models import model_config, model_from_config
from emotrace.models.base import EmotionModel
from emotrace.protocols import SPEAKER_ADAPTIVE
from emotrace.training.calibration import calibration_metrics, fit_temperature, scaled_probabilities
from emotrace.training.config import (
    NO_CALIBRATION,
    TEMPERATURE_SCALING,
    CorpusConfig,
    ExperimentConfig,
    config_from_dict,
    save_config,
)
from emotrace.training.crosscorpus import class_masks, fold_metrics, prediction_rows
from emotrace.training.data import (
    FeatureDataset,
    FoldDataModule,
    ModalityInputs,
    inverse_frequency_weights,
    load_inputs,
    training_moments,
    utterances_with_features,
    with_noisy_text,
)
from emotrace.training.extraction import copy_sources, extract_inputs
from emotrace.training.module import EmotionModule, predict_logits

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.jsonl"


@dataclass
class Experiment:
    """A config with its corpus loaded and its model inputs in memory."""

    config: ExperimentConfig
    corpus: CorpusData
    inputs: dict[str, ModalityInputs]
    skipped: list[str]  # utterances left out because their features could not be made

    @property
    def labels(self) -> tuple[str, ...]:
        return self.corpus.label_set.classes

    @property
    def multi_corpus(self) -> bool:
        return bool(self.corpus.parts)

    def class_masks(self) -> torch.Tensor | None:
        """``(corpora, classes)``: which classes each corpus has; None for one corpus."""
        if not self.multi_corpus:
            return None
        return torch.from_numpy(class_masks(self.labels, class_sets(self.corpus)))


def load_experiment_corpus(config: ExperimentConfig) -> CorpusData:
    """The config's corpus, or its corpora combined (labels, folds; a per-speaker subset
    when asked), no features."""
    parts = [_load_part(corpus, config.split_seed, config.seed) for corpus in config.corpus_configs]
    if config.corpora is None:
        return parts[0]
    return combine(parts, config.held_out, config.split_seed)


def _load_part(corpus: CorpusConfig, split_seed: int, seed: int) -> CorpusData:
    data = load_corpus(
        corpus.name,
        corpus.root,
        corpus.label_set,
        speaker_dependent=corpus.speaker_dependent,
        seed=split_seed,
        read_seed=seed if corpus.read_seed is None else corpus.read_seed,
    )
    return _subset(data, corpus.subset) if corpus.subset else data


def prepare(
    config: ExperimentConfig,
    progress: bool = True,
    console: Console | None = None,
    corpus: CorpusData | None = None,
    extract: bool = True,
) -> Experiment:
    """Load the corpus, extract whatever features are missing (unless ``extract`` is off),
    and read the model inputs."""
    corpus = corpus or load_experiment_corpus(config)
    if config.protocol == SPEAKER_ADAPTIVE and not all(u.speaker for u in corpus.utterances):
        raise InputError(
            f"corpus {config.corpus_name}",
            "has utterances without a speaker; the speaker-adaptive "
            "protocol normalises each speaker's features, so every utterance needs one",
        )
    store_root = config.store_root()
    extractors = {modality: resolve_extractor(spec.features) for modality, spec in config.inputs.items()}
    if extract:
        extract_inputs(config, corpus.utterances, progress, console)
    stores = {
        modality: FeatureStore.open(store_root, extractor.name, extractor.config(), extractor.version)
        for modality, extractor in extractors.items()
    }
    usable = utterances_with_features(corpus.utterances, list(stores.values()))
    skipped = sorted({u.id for u in corpus.utterances} - {u.id for u in usable})
    copies = copy_sources(config, usable)
    inputs = load_inputs(usable, stores, config.inputs, config.protocol, copies)
    for store in [*stores.values(), *(copy_store for copy_store, _ in copies.values())]:
        store.close()
    kept = CorpusData(corpus.name, corpus.label_set, tuple(usable), corpus.folds, corpus.dropped, corpus.parts)
    return Experiment(config, kept, inputs, skipped)


def _subset(corpus: CorpusData, per_speaker: int) -> CorpusData:
    """At most ``per_speaker`` utterances of each speaker, spread evenly over its list."""
    by_speaker: dict[str, list] = {}
    for utterance in corpus.utterances:
        by_speaker.setdefault(utterance.speaker, []).append(utterance)
    kept = set()
    for utterances in by_speaker.values():
        step = max(1, len(utterances) // per_speaker)
        kept.update(u.id for u in utterances[::step][:per_speaker])
    chosen = tuple(u for u in corpus.utterances if u.id in kept)
    return CorpusData(corpus.name, corpus.label_set, chosen, corpus.folds, corpus.dropped, corpus.parts)


def is_main_process() -> bool:
    """False in the extra processes a distributed (DDP) launch starts: they train, and
    leave writing reports to rank 0 (torchrun sets RANK, SLURM's srun SLURM_PROCID)."""
    return os.environ.get("RANK", os.environ.get("SLURM_PROCID", os.environ.get("LOCAL_RANK", "0"))) == "0"


def build_model(experiment: Experiment, train_labels: Sequence[int]) -> EmotionModel:
    """The config's model sized to the data: classes, input widths, stacked layers."""
    hparams = dict(experiment.config.model)
    name = hparams.pop("name")
    hparams.setdefault("modalities", tuple(experiment.inputs))
    hparams["num_classes"] = len(experiment.labels)
    hparams["input_dims"] = {m: inputs.dims for m, inputs in experiment.inputs.items()}
    hparams["num_layers_in"] = {m: inputs.layers for m, inputs in experiment.inputs.items() if inputs.stacked}
    if experiment.config.data.class_weights:
        hparams["class_weights"] = inverse_frequency_weights(train_labels, len(experiment.labels))
    return model_from_config(model_config(name, **hparams))


def fold_dataset(
    experiment: Experiment, utterances, augment: bool = False, mask_fill=None, noisy_text: bool = False
) -> FeatureDataset:
    """Items of ``utterances``; with ``noisy_text``, the config's share of them carry the text
    of another emotion (the training side of the noisy-text control)."""
    labels = [experiment.corpus.label_set.index(u.label) for u in utterances]
    ids, config = [u.id for u in utterances], experiment.config
    inputs = experiment.inputs
    if noisy_text and config.data.noisy_text:
        inputs = with_noisy_text(inputs, ids, labels, config.data.noisy_text, config.seed)
    corpora = None
    if experiment.multi_corpus:
        index = corpus_index(experiment.corpus)
        corpora = [index[u.dataset] for u in utterances]
    return FeatureDataset(ids, labels, inputs, config.data, augment, config.seed, mask_fill, corpora)


def train_fold(experiment: Experiment, fold: Fold, fold_dir: Path, progress: bool = True) -> dict[str, Any]:
    """Train one fold (resuming if interrupted), test it, write its files; returns its
    metrics. A fold that is already done returns its metrics without any work."""
    metrics_path = fold_dir / METRICS_FILE
    if metrics_path.exists():
        return json.loads(metrics_path.read_text())
    config = experiment.config
    started = time.perf_counter()
    train_part, val_part, test_part = fold.split(experiment.corpus.utterances)
    if not train_part:
        raise ValueError(f"fold {fold.name} has no training utterances")
    moments = None
    if config.model.get("standardise_inputs"):
        moments = training_moments(experiment.inputs, [u.id for u in train_part])
    mask_fill = {modality: mean.numpy() for modality, (mean, _) in moments.items()} if moments else None
    train = fold_dataset(experiment, train_part, augment=True, mask_fill=mask_fill, noisy_text=True)
    val = fold_dataset(experiment, val_part, noisy_text=True)
    L.seed_everything(config.seed, workers=True, verbose=False)
    model = build_model(experiment, train.labels)
    state_dir = fold_dir / "lightning"
    last = state_dir / "last.ckpt"
    if config.init_from and not last.exists():  # a resumed fold restores its own weights
        _initialise(model, experiment, Path(config.init_from), fold.name)
    if moments:
        model.set_input_moments(moments)
    module = EmotionModule(model, config.optim, experiment.labels, experiment.class_masks())

    selection = (
        ModelCheckpoint(dirpath=state_dir, filename="best", monitor="val_ua", mode="max", save_top_k=1, save_last=True)
        if val_part
        else ModelCheckpoint(dirpath=state_dir, save_last=True)
    )
    callbacks: list[Any] = [selection]
    if val_part:
        callbacks.append(EarlyStopping(monitor="val_ua", mode="max", patience=config.optim.patience))
    if config.optim.ema_decay:
        callbacks.append(EMAWeightAveraging(decay=config.optim.ema_decay))
    if progress:
        callbacks.append(RichProgressBar())
    trainer = L.Trainer(
        accelerator=config.trainer.accelerator,
        devices=config.trainer.devices,
        strategy=config.trainer.strategy,
        num_nodes=config.trainer.num_nodes,
        max_epochs=config.optim.max_epochs,
        gradient_clip_val=config.optim.gradient_clip,
        callbacks=callbacks,
        logger=CSVLogger(fold_dir, name="log"),  # a version per attempt: history survives a crash
        default_root_dir=fold_dir,
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        enable_model_summary=False,
        enable_progress_bar=progress,
        log_every_n_steps=10,
        deterministic=True,
    )
    data = FoldDataModule(train, val, config.data, config.seed)
    trainer.fit(module, datamodule=data, ckpt_path=last if last.exists() else None, weights_only=True)
    if not trainer.is_global_zero:
        return {}

    best_score = None
    if val_part and selection.best_model_path:
        state = torch.load(selection.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state)
        best_score = float(selection.best_model_score)
    model = module.model.cpu().eval()
    # calibrated on the validation speakers, after they chose the epoch; never on the test fold
    calibration = TEMPERATURE_SCALING if val_part and config.calibration == TEMPERATURE_SCALING else NO_CALIBRATION
    temperature = fit_temperature(predict_logits(model, val), val.labels) if calibration != NO_CALIBRATION else 1.0
    info = {
        "experiment": config.name,
        "corpus": config.corpus_name,
        "fold": fold.name,
        "folds_protocol": experiment.corpus.folds.protocol,
        "val_speakers": list(fold.val),
        "val_ua": best_score,
        "epochs": trainer.current_epoch,
    }
    if experiment.multi_corpus:
        info["corpora"] = {name: list(classes) for name, classes in class_sets(experiment.corpus).items()}
        info["trained_on"] = sorted({u.dataset for u in train_part})
    result: dict[str, Any] = {
        "fold": fold.name,
        "protocol": config.protocol,
        "val_ua": best_score,
        "epochs": trainer.current_epoch,
        "train": len(train_part),
        "val": len(val_part),
        "test": len(test_part),
        "calibration": calibration,
    }
    if test_part:
        test = fold_dataset(experiment, test_part)
        logits = predict_logits(model, test)
        probabilities = scaled_probabilities(logits, temperature)
        sets = class_sets(experiment.corpus) if experiment.multi_corpus else None
        trained_on = {u.dataset for u in train_part}
        rows = prediction_rows(test_part, fold.name, probabilities, experiment.labels, sets, trained_on)
        result.update(fold_metrics(rows, experiment.labels, sets, trained_on))
        result.update(calibration_metrics(logits, test.labels, temperature, experiment.labels))
        info["test"] = {name: result[name] for name in ("ua", "wa", "macro_f1", "weighted_f1", "ece")}
        write_jsonl_atomically(fold_dir / PREDICTIONS_FILE, rows)
    Checkpoint(model, experiment.labels, config.inputs, config.protocol, info, temperature).save(fold_dir / "model")
    result["seconds"] = time.perf_counter() - started
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    write_json_atomically(metrics_path, result)
    shutil.rmtree(state_dir, ignore_errors=True)  # the checkpoint above replaces the resume state
    return result


def _initialise(model: EmotionModel, experiment: Experiment, run_dir: Path, fold_name: str) -> None:
    """Start ``model`` from the weights of ``run_dir``'s model for the same fold (a staged
    schedule's previous stage): same architecture, labels and inputs; stage or loss may differ.

    A previous stage that read fewer of this run's inputs (a unimodal stage: method B trained
    on audio alone, then given text) starts the branches it has; every one of its weights must
    fit this model, and the branches of the other inputs start fresh."""
    final = fold_name == "all"
    source = run_dir / ("model" if final else f"folds/{fold_name}/model")
    try:
        previous = load_checkpoint(source)
    except FileNotFoundError:
        command = "emotrace train" if final else "emotrace cv"
        raise InputError(
            source, f"init_from has no model for fold {fold_name}: run `{command}` on that stage first"
        ) from None
    inputs = dict(experiment.config.inputs)
    shared = {modality: spec for modality, spec in inputs.items() if modality in previous.inputs}
    if previous.labels != experiment.labels or not shared or previous.inputs != shared:
        raise InputError(
            source,
            f"was trained on labels {list(previous.labels)} and inputs {previous.inputs}; "
            f"this run has {list(experiment.labels)} and {inputs}",
        )
    state = previous.model.state_dict()
    if shared != inputs:  # a stage of fewer inputs: each of its weights must have its place here
        own = model.state_dict()
        misfit = next(
            (name for name, value in state.items() if name not in own or own[name].shape != value.shape), None
        )
        if misfit is not None:
            raise InputError(source, f"does not fit this model (its weight {misfit} has no place of that shape here)")
    try:
        model.load_state_dict(state, strict=shared == inputs)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[1:2] or [str(error)]
        raise InputError(source, f"does not fit this model ({first[0].strip()})") from None


def start_run(config: ExperimentConfig, run_dir: Path) -> None:
    """Create ``run_dir`` for ``config``, or check that it already holds the same experiment."""
    from emotrace.training.config import load_config

    path = run_dir / CONFIG_FILE
    if path.exists():
        if _identity(load_config(path)) != _identity(config):
            raise ValueError(
                f"{run_dir} holds a run of a different config; choose another run directory "
                f"or delete it (compare {path} with your config and overrides)"
            )
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, path)


def _identity(config: ExperimentConfig) -> dict[str, Any]:
    """What makes an experiment: everything but where features live, which folds this call
    runs, and how many processes and threads run them: none of those change a result."""
    data = config.to_dict()
    data.pop("store")
    data.pop("folds")
    data["trainer"] = {k: v for k, v in data["trainer"].items() if k not in ("jobs", "threads")}
    return data


def selected_folds(config: ExperimentConfig, corpus: CorpusData) -> list[Fold]:
    folds = list(corpus.folds)
    if not folds:
        raise InputError(f"corpus {config.corpus_name}", corpus.folds.description)
    if config.folds is None:
        return folds
    known = {fold.name for fold in folds}
    unknown = [name for name in config.folds if name not in known]
    if unknown:
        raise ValueError(f"unknown folds {unknown}; {config.corpus_name} has {sorted(known)}")
    return [fold for fold in folds if fold.name in config.folds]


def run_cv(
    config: ExperimentConfig, run_dir: str | Path, progress: bool = True, console: Console | None = None
) -> dict[str, dict[str, Any]]:
    """Every selected fold, ``config.trainer.jobs`` at a time; returns per-fold metrics."""
    from emotrace.training.report import write_report

    run_dir = Path(run_dir)
    start_run(config, run_dir)
    console = console or Console()
    jobs = max(1, config.trainer.jobs)
    _set_threads(config)
    corpus = load_experiment_corpus(config)
    folds = selected_folds(config, corpus)
    results = {
        fold.name: json.loads((run_dir / "folds" / fold.name / METRICS_FILE).read_text())
        for fold in folds
        if (run_dir / "folds" / fold.name / METRICS_FILE).exists()
    }
    pending = [fold for fold in folds if fold.name not in results]
    if pending:
        console.print(f"{len(results)} folds done already; training {len(pending)}")
    if pending and (jobs == 1 or len(pending) == 1):
        experiment = prepare(config, progress, console, corpus)
        if experiment.skipped:
            console.print(f"[yellow]{len(experiment.skipped)} utterances left out: their features could not be made")
        for fold in pending:
            tested = ", ".join(fold.test) if len(fold.test) <= 8 else f"{len(fold.test)} {fold.unit}s"
            console.print(f"[bold]fold {fold.name}[/] (test: {tested})")
            results[fold.name] = train_fold(experiment, fold, run_dir / "folds" / fold.name, progress)
            _print_fold(console, results[fold.name])
    elif pending:
        extract_inputs(config, corpus.utterances, progress, console)
        context = get_context("spawn")  # a fresh interpreter per worker: torch and fork do not mix
        with ProcessPoolExecutor(
            min(jobs, len(pending)), mp_context=context, initializer=_die_with_parent, initargs=(os.getpid(),)
        ) as pool:
            futures = {
                fold.name: pool.submit(_fold_worker, config.to_dict(), str(run_dir), fold.name) for fold in pending
            }
            for name, future in futures.items():
                results[name] = future.result()
                _print_fold(console, results[name])
    if is_main_process():
        write_report(run_dir)
    return {fold.name: results[fold.name] for fold in folds}


def train_final(
    config: ExperimentConfig, run_dir: str | Path, progress: bool = True, console: Console | None = None
) -> Path:
    """The model for use: trained on every speaker but a seeded validation share, saved to
    ``RUN_DIR/model`` (its test figures are those of the run's cross-validation)."""
    run_dir = Path(run_dir)
    start_run(config, run_dir)
    _set_threads(config)
    experiment = prepare(config, progress, console)
    if not all(u.speaker for u in experiment.corpus.utterances):
        raise InputError(
            f"corpus {config.corpus_name}",
            "has utterances without a speaker: a final model's validation speakers cannot be drawn",
        )
    fold = final_fold(experiment.corpus, config.split_seed)
    final_dir = run_dir / "final"
    train_fold(experiment, fold, final_dir, progress)
    model_dir = run_dir / "model"
    if is_main_process():
        shutil.rmtree(model_dir, ignore_errors=True)
        shutil.copytree(final_dir / "model", model_dir)
    return model_dir


def _fold_worker(config: dict[str, Any], run_dir: str, fold_name: str) -> dict[str, Any]:
    experiment_config = config_from_dict(config)
    settings = experiment_config.trainer
    torch.set_num_threads(settings.threads or max(1, (os.cpu_count() or 1) // settings.jobs))
    experiment = prepare(experiment_config, progress=False, extract=False)  # the parent extracted
    fold = next(fold for fold in experiment.corpus.folds if fold.name == fold_name)
    return train_fold(experiment, fold, Path(run_dir) / "folds" / fold_name, progress=False)


def _die_with_parent(parent: int | None = None) -> None:
    """Fold workers end when the ``emotrace cv`` process that started them (``parent``, by
    default this process's parent now) is killed, instead of training on unseen; a rerun
    resumes their folds from the last epoch."""
    parent = os.getppid() if parent is None else parent

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="emotrace-parent-watch", daemon=True).start()


def _set_threads(config: ExperimentConfig) -> None:
    if config.trainer.threads:
        torch.set_num_threads(config.trainer.threads)


def _print_fold(console: Console, result: dict[str, Any]) -> None:
    if "ua" in result:
        console.print(
            f"fold {result['fold']}: UA {result['ua']:.1f}  WA {result['wa']:.1f}  "
            f"(val UA {result['val_ua'] or float('nan'):.1f}, {result['epochs']} epochs, {result['seconds']:.0f} s)"
        )
