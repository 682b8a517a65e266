"""Each model output explains one item itself, and each model says which modalities it can do without."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emotrace.models import roi_segments
from test_models import CASES, NUM_CLASSES, make_inputs, make_model

pytestmark = pytest.mark.usefixtures("torch_single_thread")

AUDIO_RATE, OFFSET = 25.0, 2.0


def run(case: str):
    """Padded inputs (batch of 4, item 0 full length) of a model of ``case``, and its output in eval mode."""
    model = make_model(case).eval()
    inputs = make_inputs(model)
    with torch.no_grad():
        return inputs, model(**inputs)


@pytest.mark.parametrize("item", [0, 2])
def test_roi_explains_attention_regions_dynamics_and_mixture(item):
    inputs, output = run("roi-audio")
    length = int(inputs["audio_lengths"][item])
    explanation = output.explain(item, {"audio": AUDIO_RATE}, offset=OFFSET)

    assert explanation.modalities == {"audio": True} and explanation.stream == "audio"
    assert explanation.frame_rate == AUDIO_RATE
    np.testing.assert_allclose(explanation.attention, output.attention[item, :length].numpy())
    assert explanation.attention.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(explanation.frame_times, OFFSET + (np.arange(length) + 0.5) / AUDIO_RATE)
    assert explanation.frame_posteriors.shape == (length, NUM_CLASSES)
    np.testing.assert_allclose(explanation.frame_posteriors, output.frame_posteriors[item, :length].numpy())
    np.testing.assert_allclose(explanation.mixture, output.mixture[item].numpy())
    (expected,) = roi_segments(output.attention[item : item + 1], inputs["audio_lengths"][item : item + 1], AUDIO_RATE)
    assert len(explanation.regions) == len(expected) >= 1
    for region, unshifted in zip(explanation.regions, expected):
        assert (region.start, region.end, region.mass) == pytest.approx(
            (unshifted.start + OFFSET, unshifted.end + OFFSET, unshifted.mass)
        )
    assert all(OFFSET <= r.start < r.end <= OFFSET + length / AUDIO_RATE for r in explanation.regions)


def test_roi_over_a_stream_without_time_axis_shows_nothing_to_localise():
    _, output = run("roi-audio")
    explanation = output.explain(0, {"audio": 0.0})
    assert explanation.modalities == {"audio": True}
    assert explanation.attention is None and explanation.regions == () and explanation.mixture is None
    with pytest.raises(ValueError, match="one stream"):
        output.explain(0, {"audio": AUDIO_RATE, "text": 0.0})


def test_query_fusion_explains_the_predicted_querys_attention_over_audio():
    inputs, output = run("query-fusion")
    rates = {"audio": AUDIO_RATE, "text": 0.0}
    for item in range(len(inputs["audio_lengths"])):
        length = int(inputs["audio_lengths"][item])
        explanation = output.explain(item, rates, offset=OFFSET)
        label = int(output.probabilities[item].argmax())
        weights = output.cross_attention["audio"][item, label, :length]
        assert explanation.modalities == {"audio": True, "text": True} and explanation.stream == "audio"
        np.testing.assert_allclose(explanation.attention, (weights / weights.sum()).numpy(), rtol=1e-6)
        np.testing.assert_allclose(explanation.frame_times, OFFSET + (np.arange(length) + 0.5) / AUDIO_RATE)
        assert explanation.regions and explanation.regions[0].start >= OFFSET
        assert explanation.frame_posteriors is None and explanation.mixture is None  # method B has neither


def test_query_fusion_without_audio_says_what_it_read_and_localises_nothing():
    model = make_model("query-fusion").eval()
    inputs = {k: v for k, v in make_inputs(model).items() if k.startswith("text")}
    with torch.no_grad():
        output = model(**inputs)
    explanation = output.explain(1, {"text": 0.0})
    assert explanation.modalities == {"audio": False, "text": True}
    assert explanation.attention is None and explanation.regions == () and explanation.stream is None


@pytest.mark.parametrize("case", ["late-fusion", "contrastive-bce", "lstm-early-fusion"])
def test_methods_without_explanations_only_say_what_they_read(case):
    _, output = run(case)
    explanation = output.explain(1, {"audio": AUDIO_RATE, "text": 0.0}, offset=OFFSET)
    assert explanation.modalities == {"audio": True, "text": True}
    assert explanation.stream is None and explanation.regions == ()
    assert all(
        value is None
        for value in (explanation.attention, explanation.frame_times, explanation.frame_posteriors, explanation.mixture)
    )


@pytest.mark.parametrize("case", sorted(CASES))
def test_models_declare_the_modalities_they_cannot_do_without(case):
    model = make_model(case)
    modalities = model.config.modalities
    assert model.missing_modalities(modalities) == ()
    assert model.missing_modalities([]) == modalities  # nothing given: every one is missing
    if len(modalities) > 1:
        tolerant = case.startswith("query-fusion")
        expected = () if tolerant else modalities[1:]
        assert model.missing_modalities(modalities[:1]) == expected
        assert model.tolerates_missing_modalities == tolerant
