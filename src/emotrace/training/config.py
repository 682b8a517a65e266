"""Experiment configs: one YAML file names the corpus, the inputs, the method and how to train.

A config is plain dataclasses (nanoGPT-style), loaded from YAML with dotted overrides from
the command line (``model.lstm_hidden=64 optim.lr=3e-4``). ``${VAR}`` and ``~`` in paths
expand, so the same file works on every machine (``root: ${EMOTRACE_DATA}/ravdess``).
Example (``configs/ravdess/roi_attention.yaml``)::

    name: ravdess-roi-attention
    corpus: {name: ravdess, root: ${EMOTRACE_DATA}/ravdess}
    inputs:
      audio: {features: whisper-base, layers: [2, 3, 4, 5], frame_pooling: 2}
    protocol: utterance-level
    model: {name: roi_attention, lstm_hidden: 128}
    data: {batch_size: 32, time_mask: 0.1, crop_seconds: 2.5}
    optim: {lr: 1.0e-3, max_epochs: 40, patience: 10}
    calibration: temperature        # or none (the default is temperature scaling)

Several corpora train one model when ``corpora`` lists them instead of ``corpus``: each
keeps its own label set, the model's classes are their union, and the loss never treats a
class an item's corpus lacks as a negative for it. Their own speaker-independent folds are
then combined (fold *k* tests fold *k* of every corpus that has one), or, with
``held_out``, each fold tests whole corpora that the others trained for (cross-corpus)::

    corpora:
      - {name: ravdess, root: ${EMOTRACE_DATA}/ravdess}
      - {name: ased, root: ${EMOTRACE_DATA}/ased}
      - {name: nemo, root: ${EMOTRACE_DATA}/nemo}
    held_out: [ravdess, ased, nemo]   # leave-one-corpus-out; "ased+nemo" tests two at once
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from emotrace.atomic import write_text_atomically
from emotrace.features.transforms import InputSpec
from emotrace.protocols import UTTERANCE_LEVEL, check_protocol

#: where feature stores live unless a config or ``EMOTRACE_STORE`` says otherwise
DEFAULT_STORE = "~/.cache/emotrace/features"
#: how a fold's model is calibrated: temperature scaling on its validation speakers, or not at all
TEMPERATURE_SCALING = "temperature"
NO_CALIBRATION = "none"
CALIBRATIONS = (TEMPERATURE_SCALING, NO_CALIBRATION)


@dataclass
class CorpusConfig:
    name: str
    root: str
    label_set: str | None = None
    speaker_dependent: bool = False  # only on explicit request; every report says so
    subset: int | None = None  # at most this many utterances per speaker (quick trials, tests)
    # What a built corpus draws when read (the text paired with each clip in ravdess-meld);
    # None: the experiment's seed.
    read_seed: int | None = None


@dataclass
class DataConfig:
    """Batching, sampling and augmentation of training batches (validation and test
    batches are never augmented)."""

    batch_size: int = 32
    bucket_by_length: bool = True  # batches of similar lengths: less padding, faster
    balanced_sampling: bool = False  # draw classes equally often (replaces bucketing)
    corpus_balanced: bool = False  # several corpora: draw each equally often (batches still bucketed)
    class_weights: bool = False  # inverse-frequency weights in the cross-entropy
    crop_seconds: float | None = None  # random crops of at most this length
    time_mask: float = 0.0  # share of frames zeroed in random spans (SpecAugment-style)
    time_mask_spans: int = 2
    # Share of the training side's items (training and validation speakers, each side apart)
    # whose text is replaced, for the whole run, by the text of an item of another emotion:
    # the noisy-text control. Test items keep their own text.
    noisy_text: float = 0.0
    workers: int = 0
    # What draws the validation speakers (and the speakers of k-fold corpora); None: the
    # experiment's seed. Fixed apart from the seed, runs of several seeds validate on the same
    # speakers: what an ensemble of those runs needs to be judged fairly on validation.
    split_seed: int | None = None
    # Waveform augmentation: each training clip is read clean or as one of this many augmented
    # copies of its audio (emotrace.augmentation's default chain), drawn per read with the
    # run's seed; the copies are extracted into the store first (`emotrace extract --augment-copies N`).
    augment_copies: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.noisy_text < 1.0:
            raise ValueError(f"noisy_text is a share in [0, 1), got {self.noisy_text}")
        if isinstance(self.augment_copies, bool) or not isinstance(self.augment_copies, int) or self.augment_copies < 0:
            raise ValueError(f"augment_copies is a number of copies (0 for none), got {self.augment_copies!r}")


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 1e-2
    max_epochs: int = 40
    patience: int = 10  # epochs without a better validation UA before stopping
    warmup_epochs: float = 1.0
    gradient_clip: float = 1.0
    # Validate, select and keep an exponential moving average of the weights (decay per
    # step, e.g. 0.99 averages about the last 100 steps): smoother than any one step's
    # weights, which matters when a few validation speakers pick the epoch.
    ema_decay: float | None = None
    # The learning rate of weights initialised from a pretrained encoder (a model's fine-tuned
    # top layers); None: ``lr``.
    encoder_lr: float | None = None

    def __post_init__(self) -> None:
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in (0, 1), or be null for no averaging; got {self.ema_decay}")


@dataclass
class TrainerConfig:
    """Where training runs: Lightning's accelerator, devices and strategy (``ddp`` for
    several GPUs or nodes; on CPUs it uses the gloo backend)."""

    accelerator: str = "cpu"
    devices: int = 1
    strategy: str = "auto"
    num_nodes: int = 1
    threads: int | None = None  # torch intra-op threads per process (default: torch's)
    jobs: int = 1  # folds trained at once by `emotrace cv`


@dataclass
class ExperimentConfig:
    name: str
    corpus: CorpusConfig | None = None  # one corpus, or
    corpora: list[CorpusConfig] | None = None  # several, trained together
    inputs: dict[str, InputSpec] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    protocol: str = UTTERANCE_LEVEL
    # Cross-corpus folds over ``corpora``: each entry names the corpora one fold tests
    # ("ased", or "ased+nemo"); all other corpora train it. None: the corpora's own folds.
    held_out: list[str] | None = None
    store: str = DEFAULT_STORE
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    folds: list[str] | None = None  # None: every fold of the corpus's protocol
    seed: int = 0
    # A finished run whose fold models start this run's folds (fold by fold; the final
    # model from its final model): how staged schedules such as method C's chain stages.
    init_from: str | None = None
    calibration: str = TEMPERATURE_SCALING

    def __post_init__(self) -> None:
        check_protocol(self.protocol)
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {', '.join(CALIBRATIONS)}, got {self.calibration!r}")
        if (self.corpus is None) == (self.corpora is None):
            raise ValueError("give either corpus (one) or corpora (a list), not both or neither")
        if self.corpora is not None:
            self._check_corpora()
        elif self.held_out is not None:
            raise ValueError("held_out names corpora to test on: it needs `corpora`, a list of several")
        if "name" not in self.model:
            raise ValueError("model needs a 'name' naming the method (e.g. roi_attention)")
        if not self.inputs:
            raise ValueError("inputs must name at least one modality's features")

    def _check_corpora(self) -> None:
        names = [corpus.name for corpus in self.corpus_configs]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"corpora must name different corpora, got {names}")
        for entry in self.held_out or ():
            tested = entry.split("+")
            unknown = sorted(set(tested) - set(names))
            if unknown:
                raise ValueError(f"held_out entry {entry!r} names {unknown}, which are not among corpora {names}")
            if set(tested) == set(names):
                raise ValueError(f"held_out entry {entry!r} leaves no corpus to train on")

    @property
    def corpus_configs(self) -> list[CorpusConfig]:
        """The corpora this experiment reads: ``[corpus]``, or ``corpora``."""
        return [self.corpus] if self.corpus is not None else list(self.corpora or ())

    @property
    def corpus_name(self) -> str:
        """``ravdess``, or ``ravdess+ased+nemo`` for several corpora."""
        return "+".join(corpus.name for corpus in self.corpus_configs)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("corpora" if self.corpora is None else "corpus")
        if self.held_out is None:
            data.pop("held_out")
        for spec in data["inputs"].values():
            if spec["layers"] is not None:
                spec["layers"] = list(spec["layers"])
        return data

    @property
    def split_seed(self) -> int:
        """The seed that draws the folds' validation speakers: ``data.split_seed``, else ``seed``."""
        return self.seed if self.data.split_seed is None else self.data.split_seed

    def store_root(self) -> Path:
        return Path(expand(os.environ.get("EMOTRACE_STORE", self.store) if self.store == DEFAULT_STORE else self.store))


def expand(value: str) -> str:
    """``${VAR}`` and ``~`` expanded; an unset variable is an error, not an empty string."""
    expanded = os.path.expanduser(os.path.expandvars(value))
    if "$" in expanded:
        raise ValueError(f"{value!r}: environment variable not set")
    return expanded


def config_from_dict(data: dict[str, Any]) -> ExperimentConfig:
    """An :class:`ExperimentConfig` from nested dicts, rejecting unknown keys by name."""
    data = dict(data)
    sections = {"corpus": CorpusConfig, "data": DataConfig, "optim": OptimConfig, "trainer": TrainerConfig}
    for key, section in sections.items():
        if key in data:
            data[key] = _build(section, data[key], key)
    if "corpora" in data:
        if not isinstance(data["corpora"], list):
            raise ValueError(f"corpora must be a list of corpus mappings, got {data['corpora']!r}")
        data["corpora"] = [_build(CorpusConfig, item, f"corpora[{i}]") for i, item in enumerate(data["corpora"])]
    if isinstance(data.get("held_out"), str):
        data["held_out"] = [data["held_out"]]
    inputs = data.get("inputs") or {}
    data["inputs"] = {modality: _build(InputSpec, spec, f"inputs.{modality}") for modality, spec in inputs.items()}
    return _build(ExperimentConfig, data, "config")


def _build(cls: type, values: Any, where: str) -> Any:
    if isinstance(values, str) and cls is InputSpec:
        values = {"features": values}
    if not isinstance(values, dict):
        raise ValueError(f"{where} must be a mapping, got {values!r}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
    hints = typing.get_type_hints(cls)
    values = {key: _coerce(value, hints[key], f"{where}.{key}") for key, value in values.items()}
    try:
        return cls(**values)
    except TypeError as error:
        raise ValueError(f"{where}: {error}") from None


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Numbers YAML reads as strings (``3e-4`` is a string in YAML 1.1) become numbers."""
    numeric = [t for t in (float, int) if t == hint or t in typing.get_args(hint)]
    if not numeric or not isinstance(value, (str, int, float)) or isinstance(value, bool):
        return value
    try:
        return numeric[0](value)
    except ValueError:
        raise ValueError(f"{where}: expected a number, got {value!r}") from None


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``["model.lstm_hidden=64", "optim.lr=3e-4"]`` applied to nested dicts (YAML values)."""
    data = yaml.safe_load(yaml.safe_dump(data))  # a deep copy
    for override in overrides:
        key, sep, raw = override.partition("=")
        if not sep or not key:
            raise ValueError(f"override {override!r} is not key=value")
        *path, last = key.split(".")
        node = data
        for part in path:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {override!r}: {part} is not a section")
        node[last] = yaml.safe_load(raw)
    return data


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """The experiment in a YAML file, with overrides; errors name the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: cannot read config ({error})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config is a YAML mapping")
    try:
        config = config_from_dict(apply_overrides(data, overrides))
        for corpus in config.corpus_configs:
            corpus.root = expand(corpus.root)
        if config.init_from is not None:
            config.init_from = expand(config.init_from)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    return config


def save_config(config: ExperimentConfig, path: str | Path) -> None:
    write_text_atomically(Path(path), yaml.safe_dump(config.to_dict(), sort_keys=False))
