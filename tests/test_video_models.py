"""Face video as a model input: method A on video frames, method B over audio and video with the
video masked or missing like any modality, and the runtime's absence as a clear error."""

from __future__ import annotations

import sys

import pytest
import torch

from emotrace.features.video.face_models import VideoModelError, interpreter
from emotrace.models import (
    ROIOutput,
    build_model,
    model_config_from_dict,
    model_config_to_dict,
)


def test_method_a_reads_video_frames(torch_single_thread) -> None:
    torch.manual_seed(0)
    model = build_model(
        "roi_attention",
        num_classes=6,
        input_dims={"video": 39},
        modalities=("video",),
        standardise_inputs=True,
        input_norm=False,
    ).eval()
    model.set_input_moments({"video": (torch.zeros(1, 39), torch.ones(1, 39))})
    output = model(video=torch.randn(3, 40, 39), video_lengths=torch.tensor([40, 30, 12]))
    assert isinstance(output, ROIOutput) and output.logits.shape == (3, 6)
    assert torch.allclose(output.attention.sum(1), torch.ones(3)) and (output.attention[2, 12:] == 0).all()
    assert model_config_from_dict(model_config_to_dict(model.config)) == model.config


def test_method_b_masks_and_misses_the_video_like_any_modality(torch_single_thread) -> None:
    torch.manual_seed(0)
    model = build_model(
        "query_fusion",
        num_classes=6,
        input_dims={"audio": 16, "video": 39},
        modalities=("audio", "video"),
        projection_dim=32,
        feedforward_dim=64,
    ).eval()
    audio, video = torch.randn(2, 25, 16), torch.randn(2, 30, 39)
    both = model(audio=audio, video=video, video_lengths=torch.tensor([30, 0]))  # item 2 has no face video
    assert both.cross_attention["video"].shape == (2, 6, 30)
    assert both.modalities_used["video"].tolist() == [True, False]
    assert torch.allclose(both.cross_attention["video"][1], torch.zeros(6, 30))
    audio_only = model(audio=audio)
    assert torch.allclose(audio_only.logits[1], both.logits[1], atol=1e-5)  # no video = empty video
    assert audio_only.modalities_used["video"].tolist() == [False, False]

    model.train()
    model.config.modality_mask_prob = 1.0
    hidden = model(audio=audio, video=video).modalities_used
    assert (hidden["audio"] ^ hidden["video"]).all()  # each item loses exactly one of its two streams


def test_missing_runtime_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(VideoModelError, match=r"pip install 'emotrace\[video\]'"):
        interpreter("face_landmark.tflite")
