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

from safetensors.torch import load_model, save_model

from emotrace.atomic import atomic_directory
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
    if isinstance(temperature, bool) or not isinstance(temperature, Real) or not (
        math.isfinite(temperature) and temperature > 0
    ):
        raise ValueError(f"temperature must be a finite number above 0, got {temperature!r}")
    return float(temperature)


def is_checkpoint(directory: str | Path) -> bool:
    directory = Path(directory)
    return (directory / WEIGHTS_FILE).is_file() and (directory / CONFIG_FILE).is_file()


def load_checkpoint(directory: str | Path, device: str = "cpu") -> Checkpoint:
    """The checkpoint in ``directory``, its model in eval mode on ``device``."""
    directory = Path(directory)
    if not is_checkpoint(directory):
        raise FileNotFoundError(f"{directory}: not a checkpoint (needs {WEIGHTS_FILE} and {CONFIG_FILE})")
    config = json.loads((directory / CONFIG_FILE).read_text())
    if config.get("format") != FORMAT_VERSION:
        raise ValueError(f"{directory}: checkpoint format {config.get('format')}, expected {FORMAT_VERSION}")
    try:
        temperature = check_temperature(config.get("temperature", 1.0))
    except ValueError as error:
        raise ValueError(f"{directory}: {error}") from None
    model = model_from_config(model_config_from_dict(config["model"]))
    load_model(model, str(directory / WEIGHTS_FILE), device=device)
    model.to(device).eval()
    inputs = {modality: InputSpec(**spec) for modality, spec in config["inputs"].items()}
    return Checkpoint(model, tuple(config["labels"]), inputs, config["protocol"], config.get("info", {}), temperature)
