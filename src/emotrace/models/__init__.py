"""Emotion recognition models: three methods and their baselines, one file each.

``roi_attention`` (method A), ``query_fusion`` (method B), ``contrastive`` (method C),
``baselines``; the input convention and loss contract are in :mod:`emotrace.models.base`,
the outputs and their explanations in :mod:`emotrace.models.outputs`, regions of interest
in :mod:`emotrace.models.regions`, and names in :mod:`emotrace.models.registry`.
This package depends on torch (and numpy, for explanations) only.
"""

from emotrace.models.base import MODALITIES, EmotionModel, ModelConfig
from emotrace.models.baselines import (
    LateFusion,
    LateFusionConfig,
    LSTMClassifier,
    LSTMConfig,
    TransformerClassifier,
    TransformerConfig,
)
from emotrace.models.contrastive import ContrastiveConfig, ContrastiveFusion
from emotrace.models.outputs import (
    ContrastiveOutput,
    Explanation,
    LateFusionOutput,
    LossOutput,
    ModelOutput,
    QueryFusionOutput,
    ROIOutput,
)
from emotrace.models.query_fusion import QueryFusion, QueryFusionConfig
from emotrace.models.regions import roi_segments
from emotrace.models.registry import (
    MODELS,
    build_model,
    model_config,
    model_config_from_dict,
    model_config_to_dict,
    model_from_config,
    model_name,
)
from emotrace.models.roi_attention import ROIAttention, ROIAttentionConfig

__all__ = [
    "MODALITIES",
    "MODELS",
    "ContrastiveConfig",
    "ContrastiveFusion",
    "ContrastiveOutput",
    "EmotionModel",
    "Explanation",
    "LSTMClassifier",
    "LSTMConfig",
    "LateFusion",
    "LateFusionConfig",
    "LateFusionOutput",
    "LossOutput",
    "ModelConfig",
    "ModelOutput",
    "QueryFusion",
    "QueryFusionConfig",
    "QueryFusionOutput",
    "ROIAttention",
    "ROIAttentionConfig",
    "ROIOutput",
    "TransformerClassifier",
    "TransformerConfig",
    "build_model",
    "model_config",
    "model_config_from_dict",
    "model_config_to_dict",
    "model_from_config",
    "model_name",
    "roi_segments",
]
