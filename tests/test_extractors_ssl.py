"""Self-supervised speech models through ``hf:<path>``: every layer, layer cuts, long inputs in windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model, WavLMConfig, WavLMModel

from emotrace.errors import InputError
from emotrace.features.chunks import plan_windows, stitch
from emotrace.features.inputs import ExtractorConfigError
from emotrace.features.registry import get_extractor
from emotrace.features.ssl import SelfSupervisedExtractor

RATE = 16000
TINY = dict(
    hidden_size=32,
    num_hidden_layers=3,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=(16,) * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
)


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny_wav2vec2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """wav2vec2-base style: group-normalised convolutions, no attention mask."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-wav2vec2")
    Wav2Vec2Model(Wav2Vec2Config(**TINY)).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_wavlm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """WavLM-large style: layer-normalised convolutions, a norm after the last layer."""
    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("tiny-wavlm")
    config = WavLMConfig(
        **TINY, feat_extract_norm="layer", do_stable_layer_norm=True, num_buckets=16, max_bucket_distance=50
    )
    WavLMModel(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(folder)
    return folder


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(round(seconds * RATE))).astype(np.float32)


@pytest.mark.parametrize("model", ["tiny_wav2vec2", "tiny_wavlm"])
def test_every_layer_at_50_hz(model: str, request: pytest.FixtureRequest) -> None:
    folder = request.getfixturevalue(model)
    extractor = get_extractor(f"hf:{folder}")
    reference = Wav2Vec2Model if model == "tiny_wav2vec2" else WavLMModel
    for seconds in (1.0, 2.37):
        waveform = noise(seconds)
        features = extractor.extract([waveform])[0]
        frames = (len(waveform) - 400) // 320 + 1  # the conv stack: a 25 ms field, a 20 ms step
        assert features.data.shape == (4, frames, 32)
        assert features.frame_rate == 50.0 and features.layers == (0, 1, 2, 3)
        hf = reference.from_pretrained(folder).eval()
        inputs = Wav2Vec2FeatureExtractor.from_pretrained(folder)(waveform, sampling_rate=RATE, return_tensors="pt")
        with torch.inference_mode():
            hidden = hf(inputs.input_values, output_hidden_states=True).hidden_states
        np.testing.assert_allclose(features.data, torch.cat(hidden).numpy(), atol=1e-5)


@pytest.mark.parametrize("layers", [[0], [1], [1, 2], [3]])
def test_kept_layers_equal_the_full_models(tiny_wavlm: Path, layers: list[int]) -> None:
    waveform = noise(1.5)
    everything = get_extractor(f"hf:{tiny_wavlm}").extract([waveform])[0].data
    cut = SelfSupervisedExtractor(str(tiny_wavlm), layers=layers)
    features = cut.extract([waveform])[0]
    assert features.layers == tuple(layers)
    np.testing.assert_allclose(features.data, everything[layers], atol=1e-5)
    # layers past the deepest kept are dropped, but one stays beyond it (the final norm's)
    assert len(cut._loaded[0].encoder.layers) == min(3, max(layers) + 1)


def test_long_inputs_in_windows_match_one_pass(tiny_wavlm: Path) -> None:
    waveform = noise(5.0, seed=3)
    whole = get_extractor(f"hf:{tiny_wavlm}").extract([waveform])[0].data
    windowed = get_extractor(f"hf:{tiny_wavlm}:window=2:overlap=0.5").extract([waveform])[0].data
    assert windowed.shape == whole.shape
    # the conv front end and positional convolution see less than the overlap: layer 0 is exact
    np.testing.assert_allclose(windowed[0], whole[0], atol=1e-5)
    # attention sees only its window: deeper layers are close, not equal
    np.testing.assert_allclose(windowed[1:], whole[1:], atol=0.05)
    assert not np.allclose(windowed[3], whole[3], atol=1e-5)


def test_window_plans_cover_the_input_once() -> None:
    for samples in (100 * 320, 1000 * 320 + 7, 2500 * 320 + 319):
        plan = plan_windows(samples, window=1000 * 320, overlap=50 * 320, frame_step=320)
        assert plan[0].start == 0 and plan[-1].stop == samples
        assert all(part.stop - part.start <= 1000 * 320 for part in plan)
        frames = [np.arange(part.start // 320, part.stop // 320)[None, :, None] for part in plan]
        stitched = stitch(frames, plan)[0, :, 0]
        np.testing.assert_array_equal(stitched, np.arange(len(stitched)))  # every frame once, in order
        assert len(stitched) == samples // 320
    with pytest.raises(ValueError):
        plan_windows(10_000, window=1000, overlap=500, frame_step=320)


def test_group_normalised_models_run_input_by_input(tiny_wav2vec2: Path) -> None:
    extractor = get_extractor(f"hf:{tiny_wav2vec2}:layers=2")
    short, longer = noise(0.5, seed=4), noise(1.7, seed=5)
    together = extractor.extract([short, longer])
    np.testing.assert_array_equal(together[0].data, extractor.extract([short])[0].data)


def test_bad_inputs_and_layers(tiny_wav2vec2: Path) -> None:
    extractor = get_extractor(f"hf:{tiny_wav2vec2}")
    with pytest.raises(InputError, match="too short"):
        extractor.extract([noise(1.0), np.zeros(300, np.float32)])
    with pytest.raises(InputError, match="text"):
        extractor.extract(["hello"])
    with pytest.raises(ExtractorConfigError, match=r"0\.\.3"):
        get_extractor(f"hf:{tiny_wav2vec2}:layers=4").extract([noise(1.0)])
    with pytest.raises(ExtractorConfigError, match="window"):
        get_extractor(f"hf:{tiny_wav2vec2}:window=2:overlap=1")
    with pytest.raises(ExtractorConfigError, match="cannot load"):
        get_extractor(f"hf:{tiny_wav2vec2 / 'missing'}").extract([noise(1.0)])
