"""Method C: the pair discriminator learns same-emotion pairs; stages pick the loss."""

from __future__ import annotations

import pytest
import torch

from emotrace.models import ContrastiveConfig, ContrastiveFusion

pytestmark = pytest.mark.usefixtures("torch_single_thread")

NUM_CLASSES, B = 4, 32


def make_model(**overrides) -> ContrastiveFusion:
    torch.manual_seed(0)
    hparams = dict(
        num_classes=NUM_CLASSES,
        input_dims={"audio": 12, "text": 10},
        projection_dim=16,
        audio_code_dim=16,
        text_code_dim=8,
        attention_dim=8,
        input_dropout=0.0,
        code_dropout=0.0,
    )
    return ContrastiveFusion(ContrastiveConfig(**{**hparams, **overrides}))


def separable_batch(seed: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Each class has its own audio and its own text prototype, plus noise."""
    generator = torch.Generator().manual_seed(seed)
    prototypes = torch.Generator().manual_seed(0)
    audio_means = torch.randn(NUM_CLASSES, 12, generator=prototypes)
    text_means = torch.randn(NUM_CLASSES, 10, generator=prototypes)
    labels = torch.arange(B) % NUM_CLASSES
    inputs = {
        "audio": audio_means[labels, None, :] + 0.5 * torch.randn(B, 10, 12, generator=generator),
        "audio_lengths": torch.randint(4, 11, (B,), generator=generator),
        "text": text_means[labels, None, :] + 0.5 * torch.randn(B, 6, 10, generator=generator),
        "text_lengths": torch.randint(2, 7, (B,), generator=generator),
    }
    return inputs, labels


def regulariser_on_fresh_data(model: ContrastiveFusion) -> float:
    inputs, labels = separable_batch(seed=99)
    model.eval()
    with torch.no_grad():
        output = model(**inputs)
        torch.manual_seed(5)
        return model.regulariser_loss(output.audio_code, output.text_code, labels).item()


@pytest.mark.parametrize("regulariser", ["bce", "infonce"])
def test_regulariser_falls_when_pairs_are_separable(regulariser):
    model = make_model(regulariser=regulariser, alpha=1.0)
    before = regulariser_on_fresh_data(model)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(120):
        inputs, labels = separable_batch(seed=step)
        model.train()
        optimiser.zero_grad()
        model.loss(model(**inputs), labels).total.backward()
        optimiser.step()
    after = regulariser_on_fresh_data(model)
    assert after < 0.25 * before


def test_discriminator_learns_to_tell_same_from_different_emotions():
    model = make_model(alpha=1.0)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(120):
        inputs, labels = separable_batch(seed=step)
        optimiser.zero_grad()
        model.loss(model(**inputs), labels).total.backward()
        optimiser.step()
    inputs, labels = separable_batch(seed=99)
    with torch.no_grad():
        output = model.eval()(**inputs)
        same_emotion = model.discriminator(output.audio_code[:, None], output.text_code[None, :]).sigmoid()
    matches = labels[:, None] == labels[None, :]
    assert same_emotion[matches].mean() > 0.9
    assert same_emotion[~matches].mean() < 0.1


def gradients_after_loss(model: ContrastiveFusion) -> dict[str, bool]:
    inputs, labels = separable_batch(seed=0)
    model.zero_grad()
    model.loss(model(**inputs), labels).total.backward()
    parts = ("audio_head", "text_head", "classifier", "discriminator", "audio_encoder", "text_encoder")
    return {
        part: any(p.grad is not None and p.grad.abs().sum() > 0 for p in getattr(model, part).parameters())
        for part in parts
    }


def test_stages_train_the_parts_of_their_step():
    model = make_model(stage="unimodal")
    assert gradients_after_loss(model) == {
        "audio_head": True,
        "text_head": True,
        "classifier": False,
        "discriminator": False,
        "audio_encoder": True,
        "text_encoder": True,
    }
    model.config.stage = "fused"
    assert gradients_after_loss(model) == {
        "audio_head": False,
        "text_head": False,
        "classifier": True,
        "discriminator": False,
        "audio_encoder": True,
        "text_encoder": True,
    }
    model.config.stage = "regularised"
    assert gradients_after_loss(model) == {
        "audio_head": False,
        "text_head": False,
        "classifier": True,
        "discriminator": True,
        "audio_encoder": True,
        "text_encoder": True,
    }


def test_the_unimodal_stage_predicts_with_the_heads_ensemble():
    """Its concatenation classifier is untrained, so validation must read the heads."""
    model = make_model(stage="unimodal").eval()
    inputs, _ = separable_batch(seed=0)
    output = model(**inputs)
    ensemble = (output.audio_logits.softmax(-1) + output.text_logits.softmax(-1)) / 2
    torch.testing.assert_close(output.logits.softmax(-1), ensemble)
    model.config.stage = "fused"
    fused = model(**inputs)
    assert not torch.allclose(fused.logits.softmax(-1), ensemble)


def test_regularised_loss_adds_alpha_times_the_regulariser():
    model = make_model(alpha=0.3).eval()
    inputs, labels = separable_batch(seed=0)
    output = model(**inputs)
    torch.manual_seed(1)
    loss = model.loss(output, labels)
    torch.manual_seed(1)
    regulariser = model.regulariser_loss(output.audio_code, output.text_code, labels)
    assert set(loss.parts) == {"ce", "bce"}
    torch.testing.assert_close(loss.parts["bce"], regulariser)
    torch.testing.assert_close(loss.total, loss.parts["ce"] + 0.3 * regulariser)


def test_spectrogram_cnn_checks_its_input():
    model = make_model(audio_encoder="cnn", input_dims={"audio": 32, "text": 10}).eval()
    text = {"text": torch.randn(2, 4, 10)}
    assert model(audio=torch.randn(2, 16, 32), **text).audio_code.shape == (2, 16)
    with pytest.raises(ValueError, match="at least 16 frames"):
        model(audio=torch.randn(2, 15, 32), **text)
    with pytest.raises(ValueError, match=r"\(B, T, 32\)"):
        model(audio=torch.randn(2, 16, 30), **text)


def test_config_rejects_what_the_method_cannot_do():
    dims = {"audio": 12, "text": 10, "video": 4}
    with pytest.raises(ValueError, match="audio with text"):
        ContrastiveConfig(num_classes=4, input_dims=dims, modalities=("audio", "video"))
    with pytest.raises(ValueError, match="stacked layers"):
        ContrastiveConfig(num_classes=4, input_dims=dims, audio_encoder="cnn", num_layers_in={"audio": 3})
    with pytest.raises(ValueError, match="stage"):
        ContrastiveConfig(num_classes=4, input_dims=dims, stage="pretrain")


def test_the_authors_weighting_and_negatives():
    model = make_model(loss_weighting="authors", negatives="shuffled", alpha=0.3)
    inputs, labels = separable_batch(seed=1)
    output = model(**inputs)
    torch.manual_seed(3)
    loss = model.loss(output, labels)
    torch.manual_seed(3)  # the same shuffle
    shuffled = torch.randperm(B)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    positive = model.discriminator(output.audio_code, output.text_code)
    negative = model.discriminator(output.audio_code, output.text_code[shuffled])
    expected = bce(positive, torch.ones(B)) + bce(negative, torch.zeros(B))  # every shuffled pair negative
    torch.testing.assert_close(loss.parts["bce"], expected)
    torch.testing.assert_close(loss.total, 0.7 * loss.parts["ce"] + 0.3 * expected)
    additive = make_model(alpha=0.3)  # this project's default: CE + alpha * mean BCE, label-aware targets
    output = additive(**inputs)
    torch.manual_seed(3)
    loss = additive.loss(output, labels)
    same = (labels == labels[shuffled]).float()
    assert same.sum() > 0  # pairs the authors call negative and label-aware targets call positive
    positive = additive.discriminator(output.audio_code, output.text_code)
    negative = additive.discriminator(output.audio_code, output.text_code[shuffled])
    expected = (bce(positive, torch.ones(B)) + bce(negative, same)) / 2
    torch.testing.assert_close(loss.total, loss.parts["ce"] + 0.3 * expected)


def test_the_authors_networks_have_their_sizes():
    model = make_model(
        audio_encoder="cnn_flat",
        input_dims={"audio": 128, "text": 10},
        text_encoder="lstm_dot",
        text_code_dim=200,
        projection_dim=None,
        input_norm=False,
    )
    assert model.config.audio_width == 512
    cnn = sum(p.numel() for p in model.audio_encoder.parameters())
    assert cnn == (9 * 1 + 1) * 8 + 3 * (9 * 8 + 1) * 8  # 4 blocks of 8 filters: about 2k parameters
    assert not model.text_encoder.lstm.bidirectional and model.text_encoder.lstm.hidden_size == 200
    spectrogram = torch.randn(2, 300, 128)
    codes = model.audio_encoder(spectrogram, torch.tensor([300, 100]))
    assert codes.shape == (2, 512)
    one_window = model.audio_encoder(spectrogram[1:, :128], torch.tensor([100]))
    torch.testing.assert_close(codes[1:], one_window)  # padding and empty windows change nothing


def test_the_fresh_classifier_serves_only_the_regularised_stage():
    fused = make_model(fresh_classifier=True, stage="fused").eval()
    inputs, labels = separable_batch(seed=2)
    with torch.no_grad():
        torch.testing.assert_close(
            fused(**inputs).logits,
            fused.classifier(torch.cat([fused(**inputs).audio_code, fused(**inputs).text_code], dim=-1)),
        )
    fused.train()
    fused.loss(fused(**inputs), labels).total.backward()
    assert fused.fresh_classifier.weight.grad is None  # stage 2 leaves it untrained
    regularised = make_model(fresh_classifier=True, stage="regularised")
    regularised.load_state_dict(fused.state_dict())  # what init_from does
    regularised.eval()
    with torch.no_grad():
        output = regularised(**inputs)
        expected = regularised.fresh_classifier(torch.cat([output.audio_code, output.text_code], dim=-1))
    torch.testing.assert_close(output.logits, expected)
