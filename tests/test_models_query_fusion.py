"""Method B: missing modalities, random modality masking, cross-attention maps."""

from __future__ import annotations

import pytest
import torch

from emotrace.models import QueryFusion, QueryFusionConfig

pytestmark = pytest.mark.usefixtures("torch_single_thread")

B, T_AUDIO, T_TEXT = 6, 20, 9


def make_model(**overrides) -> QueryFusion:
    torch.manual_seed(0)
    hparams = dict(
        num_classes=4,
        input_dims={"audio": 12, "text": 10},
        num_layers_in={"audio": 3},
        projection_dim=16,
        num_heads=2,
        feedforward_dim=32,
        dropout=0.0,
        input_dropout=0.0,
    )
    return QueryFusion(QueryFusionConfig(**{**hparams, **overrides}))


def make_inputs() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {
        "audio": torch.randn(B, 3, T_AUDIO, 12, generator=generator),
        "audio_lengths": torch.tensor([20, 15, 8, 3, 20, 11]),
        "text": torch.randn(B, T_TEXT, 10, generator=generator),
        "text_lengths": torch.tensor([9, 2, 5, 9, 1, 7]),
    }


def test_runs_with_audio_only_text_only_and_both():
    model = make_model().eval()
    inputs = make_inputs()
    audio = {k: v for k, v in inputs.items() if k.startswith("audio")}
    text = {k: v for k, v in inputs.items() if k.startswith("text")}
    with torch.no_grad():
        for given in (audio, text, inputs):
            output = model(**given)
            assert output.logits.shape == (B, 4) and torch.isfinite(output.logits).all()
            passed = {k for k in given if not k.endswith("_lengths")}
            assert set(output.cross_attention) == passed
            assert {m for m, used in output.modalities_used.items() if used.all()} == passed
            assert not any(output.modalities_used[m].any() for m in {"audio", "text"} - passed)
        with pytest.raises(ValueError, match="at least one"):
            model()


def test_cross_attention_spreads_each_query_over_valid_positions():
    model = make_model().eval()
    inputs = make_inputs()
    with torch.no_grad():
        output = model(**inputs)
    total = output.cross_attention["audio"].sum(-1) + output.cross_attention["text"].sum(-1)
    torch.testing.assert_close(total, torch.ones(B, 4))
    for modality, frames in (("audio", T_AUDIO), ("text", T_TEXT)):
        padding = torch.arange(frames)[None, :] >= inputs[f"{modality}_lengths"][:, None]
        assert (output.cross_attention[modality].transpose(1, 2)[padding] == 0).all()


def test_an_absent_modality_equals_an_empty_one():
    model = make_model().eval()
    inputs = make_inputs()
    with torch.no_grad():
        absent = model(audio=inputs["audio"], audio_lengths=inputs["audio_lengths"])
        empty = model(**{**inputs, "text_lengths": torch.zeros(B, dtype=torch.long)})
    torch.testing.assert_close(empty.logits, absent.logits)
    assert not empty.modalities_used["text"].any()
    assert (empty.cross_attention["text"] == 0).all()


def test_items_with_one_empty_modality_use_the_other():
    model = make_model().eval()
    inputs = make_inputs()
    inputs["text_lengths"] = torch.tensor([9, 0, 5, 0, 1, 7])
    with torch.no_grad():
        output = model(**inputs)
        alone = model(audio=inputs["audio"][[1]], audio_lengths=inputs["audio_lengths"][[1]])
    assert output.modalities_used["text"].tolist() == [True, False, True, False, True, True]
    torch.testing.assert_close(output.logits[1], alone.logits[0])
    inputs["audio_lengths"] = torch.tensor([20, 0, 8, 3, 20, 11])
    with pytest.raises(ValueError, match="non-empty"):
        model(**inputs)


def test_masking_hides_exactly_one_modality_and_hidden_values_have_no_effect():
    model = make_model(modality_mask_prob=1.0).train()
    inputs = make_inputs()
    torch.manual_seed(3)
    output = model(**inputs)
    audio_used, text_used = output.modalities_used["audio"], output.modalities_used["text"]
    assert torch.equal(audio_used, ~text_used)  # one hidden, never both
    assert audio_used.any() and text_used.any()
    assert (output.cross_attention["audio"][~audio_used] == 0).all()  # gone from the memory
    assert (output.cross_attention["text"][~text_used] == 0).all()

    noise = {m: 1e3 * torch.randn_like(inputs[m]) for m in ("audio", "text")}
    changed = dict(inputs)
    changed["audio"] = torch.where(audio_used[:, None, None, None], inputs["audio"], noise["audio"])
    changed["text"] = torch.where(text_used[:, None, None], inputs["text"], noise["text"])
    torch.manual_seed(3)
    again = model(**changed)
    assert torch.equal(again.modalities_used["audio"], audio_used)
    assert torch.equal(again.logits, output.logits)


def test_masking_needs_two_present_modalities_and_is_off_in_eval():
    model = make_model(modality_mask_prob=1.0).train()
    inputs = make_inputs()
    inputs["text_lengths"] = torch.tensor([9, 0, 5, 0, 1, 7])
    output = model(**inputs)
    assert output.modalities_used["audio"][[1, 3]].all()  # the only modality is never hidden
    assert model(audio=inputs["audio"], audio_lengths=inputs["audio_lengths"]).modalities_used["audio"].all()
    assert model.eval()(**make_inputs()).modalities_used["text"].all()


def test_masking_rate_follows_the_probability():
    model = make_model(modality_mask_prob=0.3).train()
    present = torch.ones(20000, 2, dtype=torch.bool)
    hidden = model.sample_hidden_modalities(present)
    assert hidden.sum(1).max() == 1
    assert hidden.any(1).float().mean().item() == pytest.approx(0.3, abs=0.02)
    assert hidden[:, 0].float().mean().item() == pytest.approx(0.15, abs=0.02)


def test_unimodal_losses_decode_each_modality_alone_through_the_same_queries():
    model = make_model(unimodal_loss_weight=0.5, modality_mask_prob=0.0, encoder_types={"audio": "bilstm"})
    inputs = make_inputs()
    inputs["text_lengths"] = torch.tensor([9, 0, 5, 9, 1, 7])  # item 1 has no text
    model.train()
    output = model(**inputs)
    assert set(output.modality_logits) == {"audio", "text"}
    model.eval()
    with torch.no_grad():
        audio_alone = model(audio=inputs["audio"], audio_lengths=inputs["audio_lengths"]).logits
    torch.testing.assert_close(output.modality_logits["audio"], audio_alone, atol=1e-5, rtol=1e-4)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    loss = model.loss(output, labels)
    has_text = inputs["text_lengths"] > 0
    text_alone = torch.nn.functional.cross_entropy(output.modality_logits["text"][has_text], labels[has_text])
    torch.testing.assert_close(loss.parts["ce_text_alone"], text_alone)
    expected = loss.parts["ce"] + 0.5 * (loss.parts["ce_audio_alone"] + loss.parts["ce_text_alone"]) / 2
    torch.testing.assert_close(loss.total, expected)
    with torch.no_grad():
        assert model(**inputs).modality_logits == {}  # evaluation pays for the fused pass only


@pytest.mark.parametrize("readout", ["per_class", "pooled"])
def test_several_queries_per_class_keep_one_attention_map_per_class(readout):
    model = make_model(queries_per_class=3, readout=readout, norm_first=True).eval()
    assert model.queries.shape == (4 * 3, 16)
    with torch.no_grad():
        output = model(**make_inputs())
    assert output.logits.shape == (B, 4) and output.cross_attention["audio"].shape == (B, 4, T_AUDIO)
    total = output.cross_attention["audio"].sum(-1) + output.cross_attention["text"].sum(-1)
    torch.testing.assert_close(total, torch.ones(B, 4))


def test_bad_option_values_are_refused():
    with pytest.raises(ValueError, match="encoder_types"):
        make_model(encoder_types={"video": "bilstm"})
    with pytest.raises(ValueError, match="queries_per_class"):
        make_model(queries_per_class=0)
    with pytest.raises(ValueError, match="even projection_dim"):
        make_model(projection_dim=15, num_heads=1, encoder_types={"audio": "bilstm"})
