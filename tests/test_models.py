"""The contract every model keeps: shapes, padding invariance, learning, registry round trip."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from emotrace.models import (
    MODELS,
    ContrastiveOutput,
    LateFusionOutput,
    QueryFusionOutput,
    ROIOutput,
    build_model,
    model_config,
    model_config_from_dict,
    model_config_to_dict,
    model_from_config,
)

pytestmark = pytest.mark.usefixtures("torch_single_thread")

NUM_CLASSES = 4
AUDIO_DIM, TEXT_DIM, VIDEO_DIM, SPECTROGRAM_BINS = 12, 10, 6, 16
AUDIO_LAYERS = 3

SMALL = {"projection_dim": 16, "input_dropout": 0.0}
LSTM_SMALL = {**SMALL, "lstm_hidden": 8, "lstm_dropout": 0.0, "output_dropout": 0.0}
INPUT_DIMS = {"audio": AUDIO_DIM, "text": TEXT_DIM, "video": VIDEO_DIM}

# Every method and modality combination: (registry name, hyperparameters).
CASES = {
    "lstm-audio-last": ("lstm", {**LSTM_SMALL, "pooling": "last"}),
    "lstm-text-mean": ("lstm", {**LSTM_SMALL, "modalities": ("text",), "bidirectional": False}),
    "lstm-early-fusion": ("lstm", {**LSTM_SMALL, "modalities": ("audio", "text")}),
    "late-fusion": ("late_fusion", {**LSTM_SMALL, "lstm_layers": 1}),
    "late-fusion-product": ("late_fusion", {**LSTM_SMALL, "lstm_layers": 1, "combine": "product"}),
    "transformer-audio": ("transformer", {**SMALL, "num_heads": 2, "feedforward_dim": 32, "dropout": 0.0}),
    "roi-audio": ("roi_attention", {**LSTM_SMALL, "attention_dim": 8}),
    "roi-audio-hybrid": ("roi_attention", {**LSTM_SMALL, "attention_dim": 8, "join_mean_pool": True}),
    "roi-video-paper": (
        "roi_attention",
        {
            "modalities": ("video",),
            "input_norm": False,
            "input_dropout": 0.0,
            "projection_dim": None,
            "lstm_hidden": 8,
            "lstm_dropout": 0.0,
            "output_dropout": 0.0,
            "join_mean_pool": False,
        },
    ),
    "query-fusion": (
        "query_fusion",
        {
            **SMALL,
            "num_heads": 2,
            "encoder_layers": 1,
            "decoder_layers": 1,
            "feedforward_dim": 32,
            "dropout": 0.0,
        },
    ),
    "query-fusion-options": (
        "query_fusion",
        {
            **SMALL,
            "num_heads": 2,
            "encoder_layers": 2,
            "decoder_layers": 1,
            "feedforward_dim": 32,
            "dropout": 0.0,
            "norm_first": True,
            "encoder_types": {"audio": "bilstm"},
            "queries_per_class": 2,
            "unimodal_loss_weight": 0.5,
        },
    ),
    "query-fusion-pooled": (
        "query_fusion",
        {
            **SMALL,
            "num_heads": 2,
            "encoder_layers": 1,
            "decoder_layers": 1,
            "feedforward_dim": 32,
            "dropout": 0.0,
            "queries_per_class": 3,
            "readout": "pooled",
        },
    ),
    "contrastive-authors": (
        "contrastive",
        {
            "projection_dim": None,
            "input_norm": False,
            "input_dropout": 0.0,
            "audio_encoder": "cnn_flat",
            "cnn_frames": 16,
            "text_encoder": "lstm_dot",
            "text_code_dim": 8,
            "code_dropout": 0.0,
            "loss_weighting": "authors",
            "negatives": "shuffled",
            "fresh_classifier": True,
            "fresh_classifier_dropout": 0.0,
        },
    ),
    "contrastive-bce": (
        "contrastive",
        {**SMALL, "audio_code_dim": 16, "text_code_dim": 8, "attention_dim": 8, "code_dropout": 0.0},
    ),
    "contrastive-mean-infonce": (
        "contrastive",
        {
            **SMALL,
            "audio_encoder": "mean",
            "text_encoder": "mean",
            "audio_code_dim": 16,
            "text_code_dim": 8,
            "regulariser": "infonce",
            "code_dropout": 0.0,
        },
    ),
    "contrastive-cnn": (
        "contrastive",
        {
            **SMALL,
            "audio_encoder": "cnn",
            "audio_code_dim": 16,
            "text_code_dim": 8,
            "attention_dim": 8,
            "code_dropout": 0.0,
        },
    ),
}


def make_model(case: str, **overrides) -> torch.nn.Module:
    name, hparams = CASES[case]
    hparams = {**hparams, **overrides}
    input_dims = dict(INPUT_DIMS)
    num_layers_in = {"audio": AUDIO_LAYERS}
    if hparams.get("audio_encoder") in ("cnn", "cnn_flat"):
        input_dims["audio"], num_layers_in = SPECTROGRAM_BINS, {}
    return build_model(name, num_classes=NUM_CLASSES, input_dims=input_dims, num_layers_in=num_layers_in, **hparams)


def make_inputs(model, batch: int = 4, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Random padded inputs for the model's modalities, with unequal lengths."""
    generator = generator or torch.Generator().manual_seed(0)
    inputs = {}
    for modality in model.config.modalities:
        frames, shortest = (24, 16) if modality == "audio" else (7, 1)
        dim = model.config.input_dims[modality]
        layers = model.config.layers_in(modality)
        shape = (batch, layers, frames, dim) if layers > 1 else (batch, frames, dim)
        inputs[modality] = torch.randn(*shape, generator=generator)
        inputs[f"{modality}_lengths"] = torch.randint(shortest, frames + 1, (batch,), generator=generator)
        inputs[f"{modality}_lengths"][0] = frames
    return inputs


def pad(inputs: dict[str, torch.Tensor], extra: int) -> dict[str, torch.Tensor]:
    """The same batch with ``extra`` more frames of random garbage on every stream."""
    padded = {}
    for key, value in inputs.items():
        if key.endswith("_lengths"):
            padded[key] = value
        else:
            garbage = 100 * torch.randn(*value.shape[:-2], extra, value.shape[-1])
            padded[key] = torch.cat([value, garbage], dim=-2)
    return padded


@pytest.mark.parametrize("case", CASES)
def test_output_shapes(case):
    model = make_model(case).eval()
    inputs = make_inputs(model, batch=5)
    output = model(**inputs)
    assert output.logits.shape == (5, NUM_CLASSES)
    assert torch.isfinite(output.logits).all()
    if isinstance(output, ROIOutput):
        frames = inputs[f"{model.config.modalities[0]}"].shape[-2]
        assert output.attention.shape == (5, frames)
        assert output.frame_posteriors.shape == (5, frames, NUM_CLASSES)
        assert output.mixture.shape == (5, NUM_CLASSES)
    if isinstance(output, QueryFusionOutput):
        assert {m: a.shape for m, a in output.cross_attention.items()} == {
            "audio": (5, NUM_CLASSES, inputs["audio"].shape[-2]),
            "text": (5, NUM_CLASSES, inputs["text"].shape[-2]),
        }
    if isinstance(output, ContrastiveOutput):
        assert output.audio_logits.shape == output.text_logits.shape == (5, NUM_CLASSES)
        assert output.audio_code.shape == (5, model.config.audio_width)
        assert output.text_code.shape == (5, model.config.text_code_dim)
    if isinstance(output, LateFusionOutput):
        assert set(output.modality_logits) == {"audio", "text"}


@pytest.mark.parametrize("case", CASES)
def test_padding_does_not_change_outputs(case):
    torch.manual_seed(0)
    model = make_model(case).eval()
    inputs = make_inputs(model)
    with torch.no_grad():
        plain, padded = model(**inputs), model(**pad(inputs, extra=5))
    torch.testing.assert_close(padded.logits, plain.logits, atol=1e-5, rtol=1e-4)
    if isinstance(plain, ROIOutput):
        frames = plain.attention.shape[1]
        torch.testing.assert_close(padded.attention[:, :frames], plain.attention, atol=1e-6, rtol=1e-4)
        assert (padded.attention[:, frames:] == 0).all()
        torch.testing.assert_close(padded.mixture, plain.mixture, atol=1e-6, rtol=1e-4)
    if isinstance(plain, QueryFusionOutput):
        for modality, weights in plain.cross_attention.items():
            frames = weights.shape[-1]
            padded_weights = padded.cross_attention[modality]
            torch.testing.assert_close(padded_weights[..., :frames], weights, atol=1e-6, rtol=1e-4)
            assert (padded_weights[..., frames:] == 0).all()


@pytest.mark.parametrize("case", CASES)
def test_model_overfits_a_small_batch(case):
    # Plain classification on every model; the extra terms have tests of their own.
    plain = {"contrastive": {"stage": "fused"}, "query_fusion": {"modality_mask_prob": 0.0}}
    torch.manual_seed(0)
    model = make_model(case, **plain.get(CASES[case][0], {}))
    inputs = make_inputs(model, batch=8)
    labels = torch.arange(8) % NUM_CLASSES
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(80):
        optimiser.zero_grad()
        loss = model.loss(model(**inputs), labels).total
        loss.backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        output = model(**inputs)
    assert model.loss(output, labels).total < 0.05
    assert (output.logits.argmax(-1) == labels).all()


@pytest.mark.parametrize("case", CASES)
def test_config_round_trip_rebuilds_the_same_model(case):
    model = make_model(case).eval()
    as_json = json.dumps(model_config_to_dict(model.config))
    config = model_config_from_dict(json.loads(as_json))
    assert config == model.config
    rebuilt = model_from_config(config).eval()
    rebuilt.load_state_dict(model.state_dict())
    inputs = make_inputs(model)
    with torch.no_grad():
        assert torch.equal(rebuilt(**inputs).logits, model(**inputs).logits)


@pytest.mark.parametrize("name", MODELS)
def test_default_hyperparameters_build_a_working_model(name):
    input_dims = {"audio": 32, "text": 24}
    model = build_model(name, num_classes=NUM_CLASSES, input_dims=input_dims).eval()
    inputs = make_inputs(model, batch=2)
    with torch.no_grad():
        assert model(**inputs).logits.shape == (2, NUM_CLASSES)


def test_every_registered_model_is_covered():
    assert {name for name, _ in CASES.values()} == set(MODELS)


def test_registry_rejects_unknown_names_and_hyperparameters():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("nonexistent", num_classes=4, input_dims={"audio": 8})
    with pytest.raises(ValueError, match="lstm_hiden"):
        model_config("lstm", num_classes=4, input_dims={"audio": 8}, lstm_hiden=3)
    with pytest.raises(ValueError, match="name"):
        model_config_from_dict({"num_classes": 4, "input_dims": {"audio": 8}})
    with pytest.raises(ValueError, match="input_dims"):
        model_config("query_fusion", num_classes=4, input_dims={"audio": 8})


def test_inputs_are_checked():
    model = make_model("lstm-early-fusion").eval()
    inputs = make_inputs(model)
    with pytest.raises(ValueError, match="needs `text`"):
        model(audio=inputs["audio"], audio_lengths=inputs["audio_lengths"])
    with pytest.raises(TypeError, match="labels"):
        model(**inputs, labels=torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="lengths"):
        model(**{**inputs, "text_lengths": torch.zeros(4, dtype=torch.long)})
    with pytest.raises(ValueError, match=r"\(B, 3, T, 12\)"):
        model(**{**inputs, "audio": inputs["audio"][:, :2]})


def test_unimodal_models_ignore_other_modalities():
    model = make_model("roi-audio").eval()
    inputs = make_inputs(model)
    with torch.no_grad():
        alone = model(**inputs).logits
        with_text = model(**inputs, text=torch.randn(4, 5, TEXT_DIM), text_lengths=torch.full((4,), 5)).logits
    assert torch.equal(alone, with_text)


def test_single_layer_streams_accept_both_shapes():
    model = make_model("roi-video-paper").eval()
    inputs = make_inputs(model)
    with torch.no_grad():
        flat = model(**inputs).logits
        stacked = model(video=inputs["video"].unsqueeze(1), video_lengths=inputs["video_lengths"]).logits
    assert torch.equal(flat, stacked)


def test_loss_applies_label_smoothing_and_class_weights():
    logits = torch.randn(6, NUM_CLASSES)
    labels = torch.tensor([0, 1, 2, 3, 0, 0])
    weights = (0.5, 2.0, 1.0, 1.0)
    model = make_model("roi-audio", label_smoothing=0.1, class_weights=weights)
    expected = F.cross_entropy(logits, labels, weight=torch.tensor(weights), label_smoothing=0.1)
    torch.testing.assert_close(model.loss(ROIOutput(logits, None, None, None, None), labels).total, expected)


def test_late_fusion_averages_probabilities_and_trains_each_modality_alone():
    model = make_model("late-fusion").eval()
    output = model(**make_inputs(model))
    average = (output.modality_logits["audio"].softmax(-1) + output.modality_logits["text"].softmax(-1)) / 2
    torch.testing.assert_close(output.probabilities, average)
    labels = torch.tensor([0, 1, 2, 3])
    loss = model.loss(output, labels)
    assert set(loss.parts) == {"ce_audio", "ce_text"}
    audio_alone = F.cross_entropy(output.modality_logits["audio"], labels)
    torch.testing.assert_close(loss.total, audio_alone + loss.parts["ce_text"])


def test_product_late_fusion_multiplies_the_modalities_probabilities():
    model = make_model("late-fusion-product").eval()
    output = model(**make_inputs(model))
    product = output.modality_logits["audio"].softmax(-1) * output.modality_logits["text"].softmax(-1)
    torch.testing.assert_close(output.probabilities, product / product.sum(-1, keepdim=True))
    assert set(model.loss(output, torch.tensor([0, 1, 2, 3])).parts) == {"ce_audio", "ce_text"}


def test_standardised_inputs_equal_the_model_on_z_scored_frames():
    hparams = dict(
        num_classes=NUM_CLASSES,
        input_dims={"audio": AUDIO_DIM},
        num_layers_in={"audio": AUDIO_LAYERS},
        **LSTM_SMALL,
        attention_dim=8,
    )
    standardised = build_model("roi_attention", standardise_inputs=True, **hparams).eval()
    plain = build_model("roi_attention", **hparams).eval()
    moments = ("input_mean", "input_std")
    plain.load_state_dict({k: v for k, v in standardised.state_dict().items() if not k.endswith(moments)})
    torch.manual_seed(1)
    mean, std = torch.randn(AUDIO_LAYERS, AUDIO_DIM), torch.rand(AUDIO_LAYERS, AUDIO_DIM) + 0.5
    standardised.set_input_moments({"audio": (mean, std)})
    frames = torch.randn(2, AUDIO_LAYERS, 9, AUDIO_DIM) * 40 + 100
    expected = plain(audio=(frames - mean[:, None]) / std[:, None]).logits
    torch.testing.assert_close(standardised(audio=frames).logits, expected)
    assert not torch.allclose(plain(audio=frames).logits, expected)

    with pytest.raises(ValueError, match=r"audio moments \(2, 12\) do not match \(3, 12\)"):
        standardised.set_input_moments({"audio": (mean[:2], std[:2])})
    with pytest.raises(ValueError, match="configured without standardise_inputs"):
        plain.set_input_moments({"audio": (mean, std)})
