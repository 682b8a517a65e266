"""Model names, and configs as plain dicts.

A YAML experiment names a method and its hyperparameters; a checkpoint stores its model
config as JSON. Both use the same dict: ``{"name": <registry name>, **config fields}``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from emotrace.models.base import EmotionModel, ModelConfig
from emotrace.models.baselines import (
    LateFusion,
    LateFusionConfig,
    LSTMClassifier,
    LSTMConfig,
    TransformerClassifier,
    TransformerConfig,
)
from emotrace.models.contrastive import ContrastiveConfig, ContrastiveFusion
from emotrace.models.query_fusion import QueryFusion, QueryFusionConfig
from emotrace.models.roi_attention import ROIAttention, ROIAttentionConfig

MODELS: dict[str, tuple[type[ModelConfig], type[EmotionModel]]] = {
    "lstm": (LSTMConfig, LSTMClassifier),
    "transformer": (TransformerConfig, TransformerClassifier),
    "late_fusion": (LateFusionConfig, LateFusion),
    "roi_attention": (ROIAttentionConfig, ROIAttention),
    "query_fusion": (QueryFusionConfig, QueryFusion),
    "contrastive": (ContrastiveConfig, ContrastiveFusion),
}


def _entry(name: str) -> tuple[type[ModelConfig], type[EmotionModel]]:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    return MODELS[name]


def model_name(config: ModelConfig) -> str:
    """The registry name of a config's method."""
    for name, (config_class, _) in MODELS.items():
        if type(config) is config_class:
            return name
    raise ValueError(f"{type(config).__name__} is not a registered model config")


def model_config(name: str, **hparams: Any) -> ModelConfig:
    """The config of method ``name`` with ``hparams`` over its defaults."""
    config_class, _ = _entry(name)
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(hparams) - known)
    if unknown:
        raise ValueError(f"{name} has no hyperparameters {unknown}; it has {sorted(known)}")
    return config_class(**hparams)


def model_from_config(config: ModelConfig) -> EmotionModel:
    return MODELS[model_name(config)][1](config)


def build_model(name: str, **hparams: Any) -> EmotionModel:
    """A freshly initialised model: ``build_model("roi_attention", num_classes=8,
    input_dims={"audio": 512}, num_layers_in={"audio": 7})``."""
    return model_from_config(model_config(name, **hparams))


def model_config_to_dict(config: ModelConfig) -> dict[str, Any]:
    """``{"name": ..., **fields}``; JSON- and YAML-serialisable."""
    return {"name": model_name(config), **dataclasses.asdict(config)}


def model_config_from_dict(data: Mapping[str, Any]) -> ModelConfig:
    """Inverse of :func:`model_config_to_dict`; accepts lists where tuples are expected."""
    if "name" not in data:
        raise ValueError("a model config dict needs a 'name' naming the method")
    fields = dict(data)
    return model_config(fields.pop("name"), **fields)
