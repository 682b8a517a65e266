"""Self-supervised speech models (wav2vec2, HuBERT, WavLM, data2vec-audio): every hidden layer.

Any Hugging Face checkpoint that ``AutoModel`` and ``AutoFeatureExtractor`` load, by id or
local folder. Hidden states follow Hugging Face's ``output_hidden_states``: layer 0 is the
transformer's input, layer ``k`` the output of its ``k``-th layer. Layers past the deepest
one kept are dropped from the model before it runs, except one: models that normalise
after their last layer apply that norm to whatever layer comes last, so one layer beyond
the deepest kept stays to leave the kept ones as the full model computes them.

Each input goes through the model on its own, never zero-padded into a batch: models with
group-normalised convolutions (wav2vec2-base, HuBERT-base) take no attention mask, and
padding would change their features. Long inputs go through overlapping windows
(default 20 s with 1 s of context on each side), stitched by frame index, so memory stays
bounded whatever the length.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoFeatureExtractor, AutoModel, PreTrainedModel

from emotrace.audio import SAMPLE_RATE
from emotrace.errors import InputError
from emotrace.features.base import Extractor, Features
from emotrace.features.chunks import plan_windows, stitch
from emotrace.features.inputs import ExtractorConfigError, checked_waveforms
from emotrace.features.weights import load_pretrained, load_processor

# used only to mask time steps while pre-training; checkpoints saved for inference omit it
_UNUSED_AT_INFERENCE = ("masked_spec_embed",)


class SelfSupervisedExtractor(Extractor):
    """Hidden states of a speech SSL model: ``(layers, frames, hidden_size)`` at 50 Hz for the usual models."""

    modality = "audio"
    version = 1

    def __init__(
        self,
        model: str,
        layers: Sequence[int] | None = None,
        window_seconds: float = 20.0,
        overlap_seconds: float = 1.0,
    ):
        """``model``: Hugging Face id or local folder; ``layers``: kept layers (None: all)."""
        if window_seconds <= 2 * overlap_seconds or overlap_seconds <= 0:
            raise ExtractorConfigError(
                f"window ({window_seconds} s) must be longer than twice the overlap ({overlap_seconds} s), "
                "and the overlap positive"
            )
        folder = Path(model).resolve() if Path(model).is_dir() else None
        self.name = f"hf:{model}"
        self.model = str(folder or model)
        self.weights = "local" if folder is not None else "hub"
        self.requested_layers = tuple(layers) if layers is not None else None
        self.window_seconds = window_seconds
        self.overlap_seconds = overlap_seconds

    def config(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "weights": self.weights,
            "layers": list(self.requested_layers) if self.requested_layers is not None else "all",
            "window_seconds": self.window_seconds,
            "overlap_seconds": self.overlap_seconds,
        }

    @cached_property
    def _loaded(self) -> tuple[PreTrainedModel, Any, tuple[int, ...], int]:
        """The model (cut after the layer it last needs), its feature extractor, the kept layers, the frame step."""
        model = load_pretrained(AutoModel, self.model, unused=_UNUSED_AT_INFERENCE)
        preprocessor = load_processor(AutoFeatureExtractor, self.model)
        encoder_layers = getattr(getattr(model, "encoder", None), "layers", None)
        if not isinstance(encoder_layers, torch.nn.ModuleList) or not hasattr(model.config, "conv_stride"):
            raise ExtractorConfigError(f"{self.model}: not a speech SSL model with a conv front end and encoder layers")
        depth = len(encoder_layers)
        layers = self.requested_layers if self.requested_layers is not None else tuple(range(depth + 1))
        if not layers or any(not 0 <= layer <= depth for layer in layers):
            raise ExtractorConfigError(f"{self.name}: layers must be in 0..{depth}, got {list(layers)}")
        model.encoder.layers = encoder_layers[: min(depth, max(layers) + 1)]
        return model, preprocessor, layers, math.prod(model.config.conv_stride)

    @property
    def layers(self) -> tuple[int, ...]:
        """The layers kept (loads the model to resolve 'all')."""
        return self._loaded[2]

    def extract(self, inputs: Sequence[np.ndarray] | Sequence[str]) -> list[Features]:
        model, preprocessor, layers, step = self._loaded
        window = round(self.window_seconds * SAMPLE_RATE / step) * step
        overlap = round(self.overlap_seconds * SAMPLE_RATE / step) * step
        results = []
        for position, waveform in enumerate(checked_waveforms(inputs)):
            if model._get_feat_extract_output_lengths(len(waveform)) < 1:
                raise InputError(f"input {position}", f"{len(waveform)} samples is too short for {self.model}")
            # normalised over the whole input, so every window sees the same scaling
            values = preprocessor(waveform, sampling_rate=SAMPLE_RATE, return_tensors="np").input_values[0]
            plan = plan_windows(len(values), window, overlap, step)
            outputs = [self._hidden_states(model, values[part.start : part.stop], layers) for part in plan]
            results.append(Features(data=stitch(outputs, plan), frame_rate=SAMPLE_RATE / step, layers=layers))
        return results

    @staticmethod
    def _hidden_states(model: PreTrainedModel, values: np.ndarray, layers: tuple[int, ...]) -> np.ndarray:
        with torch.inference_mode():
            hidden = model(torch.from_numpy(values)[None], output_hidden_states=True).hidden_states
        return torch.stack([hidden[layer][0] for layer in layers]).numpy().astype(np.float32, copy=False)
