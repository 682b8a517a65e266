"""Method A with the encoder's top layer fine-tuned on cached lower states: untrained, it
reproduces the cached states; it trains; a checkpoint predicts as the model did."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emotrace.audio import load_audio
from emotrace.checkpoint import Checkpoint, load_checkpoint
from emotrace.features.transforms import InputSpec
from emotrace.features.transforms import pool_frames as pool_numpy
from emotrace.features.whisper import PACKAGED_WHISPER, WhisperEncoderExtractor, packaged_ctranslate2_folder
from emotrace.models import model_config, model_from_config
from emotrace.models.encoder_top import pool_frames
from emotrace.training.config import OptimConfig
from emotrace.training.faithfulness import attention_deletion
from emotrace.training.module import EmotionModule

pytestmark = pytest.mark.usefixtures("torch_single_thread")

LAYERS = (2, 3, 4, 5)


@pytest.fixture(scope="module")
def cached(fixture_clips) -> list[np.ndarray]:
    """``(4, T, 512)`` Whisper-base states of layers 2-5 of two real clips, as the store caches them."""
    if packaged_ctranslate2_folder("whisper-base") is None:
        pytest.skip(f"{PACKAGED_WHISPER['whisper-base'].packages} not installed")
    extractor = WhisperEncoderExtractor("whisper-base", LAYERS)
    return [features.data for features in extractor.extract([load_audio(path) for path in fixture_clips[:2]])]


def _model(pooling: int = 1, count: int = 1):
    config = model_config(
        "roi_attention",
        num_classes=4,
        input_dims={"audio": 512},
        num_layers_in={"audio": len(LAYERS)},
        lstm_hidden=8,
        lstm_layers=1,
        projection_dim=16,
        attention_dim=8,
        finetune_top_layers=count,
        frame_pooling=pooling,
    )
    return model_from_config(config)


def _batch(cached: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([states.shape[1] for states in cached])
    batch = torch.zeros(len(cached), len(LAYERS), int(lengths.max()), 512)
    for row, states in enumerate(cached):
        batch[row, :, : states.shape[1]] = torch.from_numpy(states)
    return batch, lengths


def test_the_untrained_copy_reproduces_the_cached_top_states(cached) -> None:
    batch, lengths = _batch(cached)
    assert lengths[0] != lengths[1]  # one clip is padded: its padding must not leak in
    model = _model().eval()
    with torch.no_grad():
        states, pooled_lengths = model.encoder_top(batch, lengths)
    assert torch.equal(pooled_lengths, lengths)
    for row, expected in enumerate(cached):
        got = states[row, :, : lengths[row]].numpy()
        np.testing.assert_array_equal(got[:-1], expected[:-1])  # the lower states pass through
        scale = np.abs(expected[-1]).max()
        np.testing.assert_allclose(got[-1], expected[-1], atol=2e-4 * scale, rtol=0)


def test_pooling_inside_the_model_is_the_input_specs_pooling(cached) -> None:
    batch, lengths = _batch(cached)
    pooled, pooled_lengths = pool_frames(batch, lengths, 4)
    for row, states in enumerate(cached):
        expected = pool_numpy(states, 4)
        assert pooled_lengths[row] == expected.shape[1]
        np.testing.assert_allclose(pooled[row, :, : pooled_lengths[row]].numpy(), expected, rtol=1e-5, atol=1e-5)
    assert _model(pooling=4).input_frames_per_output("audio") == 4


def test_gradients_reach_the_copy_at_its_own_learning_rate(cached) -> None:
    batch, lengths = _batch(cached)
    model = _model(pooling=4)
    output = model(audio=batch, audio_lengths=lengths)
    assert output.attention.shape[1] == (int(lengths.max()) + 3) // 4
    model.loss(output, torch.tensor([0, 2])).total.backward()
    copies = model.pretrained_parameters()
    assert copies and all(p.grad is not None and p.grad.abs().sum() > 0 for p in copies)
    module = EmotionModule(model, OptimConfig(lr=1e-3, encoder_lr=1e-5), ("a", "b", "c", "d"))
    module.trainer = type("Trainer", (), {"estimated_stepping_batches": 10, "max_epochs": 1})()
    optimizer = module.configure_optimizers()["optimizer"]
    rates = sorted((group["initial_lr"], len(group["params"])) for group in optimizer.param_groups)
    assert rates[0] == (1e-5, len(copies)) and rates[1][0] == 1e-3
    with pytest.raises(ValueError, match="cached state below"):
        _model(count=4)
    with pytest.raises(ValueError, match="input spec pools"):
        _model(pooling=4, count=0)


def test_a_fine_tuned_checkpoint_predicts_as_the_model_did(cached, tmp_path) -> None:
    batch, lengths = _batch(cached)
    model = _model(pooling=4)
    with torch.no_grad():
        for parameter in model.pretrained_parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))  # trained away from the pretrained weights
    model.eval()
    spec = InputSpec("whisper-base", LAYERS, frame_pooling=1)
    Checkpoint(model, ("neutral", "happy", "sad", "angry"), {"audio": spec}, "utterance-level").save(tmp_path / "m")
    loaded = load_checkpoint(tmp_path / "m").model.eval()
    assert loaded.config.finetune_top_layers == 1 and loaded.config.frame_pooling == 4
    with torch.no_grad():
        expected = model(audio=batch, audio_lengths=lengths)
        got = loaded(audio=batch, audio_lengths=lengths)
    assert torch.equal(got.logits, expected.logits) and torch.equal(got.attention, expected.attention)


def test_the_deletion_test_refuses_a_model_that_pools_inside(cached) -> None:
    with pytest.raises(ValueError, match="pool inside"):
        attention_deletion(_model(pooling=4), dataset=None)  # refused before any frame is read
