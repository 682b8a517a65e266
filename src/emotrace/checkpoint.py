"""A trained model on disk: ``model.safetensors`` + ``config.json``, nothing executable.

``config.json`` holds everything needed to rebuild the model and feed it the inputs it was
trained on, so that training, evaluation, prediction and export agree by construction::

    {"format": 1,
     "model": {"name": "roi_attention", ...config fields},
     "labels": ["neutral", "calm", ...],            # class index -> canonical emotion
     "inputs": {"audio": {"features": "whisper-base", "layers": [2, 3, 4, 5], "frame_pooling": 2}},
     "protocol": "utterance-level",                 # or "speaker-adaptive"
     "temperature": 1.3,                            # probabilities are softmax(logits / temperature)
     "info": {...}}                                 # training config, metrics, provenance

``temperature`` is the model's calibration (temperature scaling, fitted on validation
speakers when it was trained); a checkpoint written before it existed has none and loads
with 1.0, its probabilities unchanged.

Weights are safetensors, so loading never unpickles anything. A save writes a hidden
temporary folder and renames it into place, so a crash never leaves half a checkpoint.

A layer of its own, above models and features: it ties a model to the features it reads
(:class:`~emotrace.features.transforms.InputSpec`), so models need know nothing of features.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from numbers import Real
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model, save_model

from emotrace.atomic import atomic_directory
from emotrace.errors import InputError
from emotrace.features.transforms import InputSpec
from emotrace.models.base import EmotionModel
from emotrace.models.registry import (
    model_config_from_dict,
    model_config_to_dict,
    model_from_config,
)

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


class CheckpointError(InputError, ValueError):
    """A checkpoint file that cannot be used, in one line naming the file: broken JSON or
    safetensors, a config that does not describe the weights, labels that do not fit the outputs.
    Also a ValueError, which is what code that trains on checkpoints already catches."""


@dataclass
class Checkpoint:
    """A model with the facts needed to use it."""

    model: EmotionModel
    labels: tuple[str, ...]
    inputs: dict[str, InputSpec]
    protocol: str
    info: dict[str, Any] = field(default_factory=dict)
    temperature: float = 1.0

    def __post_init__(self) -> None:
        self.temperature = check_temperature(self.temperature)

    def config_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "model": model_config_to_dict(self.model.config),
            "labels": list(self.labels),
            "inputs": {modality: asdict(spec) for modality, spec in self.inputs.items()},
            "protocol": self.protocol,
            "temperature": self.temperature,
            "info": self.info,
        }

    def save(self, directory: str | Path) -> Path:
        """Write the checkpoint to ``directory`` atomically (replacing one that is there)."""
        directory = Path(directory)
        if len(self.labels) != self.model.config.num_classes:
            raise ValueError(f"{len(self.labels)} labels for {self.model.config.num_classes} classes")
        check_temperature(self.temperature)  # it may have been set since the checkpoint was made
        with atomic_directory(directory) as temp:
            save_model(self.model, str(temp / WEIGHTS_FILE))
            (temp / CONFIG_FILE).write_text(json.dumps(self.config_dict(), indent=2, sort_keys=True))
        return directory


def check_temperature(temperature: Any) -> float:
    """``temperature`` itself when it is a finite number above 0; a one-line ValueError otherwise."""
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, Real)
        or not (math.isfinite(temperature) and temperature > 0)
    ):
        raise ValueError(f"temperature must be a finite number above 0, got {temperature!r}")
    return float(temperature)


def is_checkpoint(directory: str | Path) -> bool:
    directory = Path(directory)
    return (directory / WEIGHTS_FILE).is_file() and (directory / CONFIG_FILE).is_file()


def load_checkpoint(directory: str | Path, device: str = "cpu") -> Checkpoint:
    """The checkpoint in ``directory``, its model in eval mode on ``device``.

    Both files are checked before the weights are used: a :class:`CheckpointError` names
    the file and its problem (not JSON, not safetensors or cut short, tensors missing or of
    other shapes than the config builds, a label count unlike the model's outputs).
    """
    directory = Path(directory)
    if not is_checkpoint(directory):
        raise FileNotFoundError(f"{directory}: not a checkpoint (needs {WEIGHTS_FILE} and {CONFIG_FILE})")
    config_file, weights_file = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    config = _read_config(config_file)
    try:
        model = model_from_config(model_config_from_dict(config["model"]))
        inputs = {modality: InputSpec(**spec) for modality, spec in config["inputs"].items()}
        labels, protocol = tuple(str(label) for label in config["labels"]), str(config["protocol"])
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CheckpointError(config_file, f"does not describe a model ({type(error).__name__}: {error})") from None
    if len(labels) != model.config.num_classes:
        raise CheckpointError(
            config_file, f"has {len(labels)} labels for a model with {model.config.num_classes} outputs"
        )
    try:
        temperature = check_temperature(config.get("temperature", 1.0))
    except ValueError as error:
        raise CheckpointError(config_file, str(error)) from None
    _check_weights(model, weights_file, config_file)
    try:
        load_model(model, str(weights_file), device=device)
    except (SafetensorError, RuntimeError, OSError) as error:
        raise CheckpointError(weights_file, f"cannot be loaded ({error})") from None
    model.to(device).eval()
    return Checkpoint(model, labels, inputs, protocol, config.get("info", {}), temperature)


def _read_config(config_file: Path) -> dict[str, Any]:
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise CheckpointError(config_file, "is not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise CheckpointError(config_file, f"is not valid JSON ({error})") from None
    if not isinstance(config, dict):
        raise CheckpointError(config_file, "is not a JSON object")
    if config.get("format") != FORMAT_VERSION:
        raise CheckpointError(config_file, f"checkpoint format {config.get('format')}, expected {FORMAT_VERSION}")
    return config


def _check_weights(model: EmotionModel, weights_file: Path, config_file: Path) -> None:
    """The safetensors file reads whole, and holds the tensors, of the shapes, that the config's model has."""
    size = weights_file.stat().st_size
    try:
        with safe_open(str(weights_file), framework="pt") as weights:
            shapes = {name: tuple(weights.get_slice(name).get_shape()) for name in weights.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as error:
        raise CheckpointError(weights_file, f"is not a whole safetensors file ({size} bytes; {error})") from None
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    problems = [f"missing {name}" for name in expected if name not in shapes]
    problems += [f"unexpected {name}" for name in shapes if name not in expected]
    problems += [
        f"{name} is {list(shapes[name])}, the config's model needs {list(shape)}"
        for name, shape in expected.items()
        if name in shapes and shapes[name] != shape
    ]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CheckpointError(weights_file, f"does not match {config_file.name}: {'; '.join(problems[:3])}{more}")
