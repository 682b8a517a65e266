"""Method A: attention weights, frame posteriors, the emotion mixture and ROI segments."""

from __future__ import annotations

import pytest
import torch

from emotrace.models import ROIAttention, ROIAttentionConfig, roi_segments
from emotrace.spans import Span

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def make_model(**overrides) -> ROIAttention:
    torch.manual_seed(0)
    config = ROIAttentionConfig(
        num_classes=5, input_dims={"audio": 8}, projection_dim=16, lstm_hidden=8, attention_dim=8, **overrides
    )
    return ROIAttention(config).eval()


LENGTHS = torch.tensor([30, 17, 4, 1])


def run(model: ROIAttention, lengths: torch.Tensor = LENGTHS):
    features = torch.randn(len(lengths), 30, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return model(audio=features, audio_lengths=lengths)


@pytest.mark.parametrize("join_mean_pool", [True, False])
def test_attention_is_a_distribution_over_valid_frames(join_mean_pool):
    output = run(make_model(join_mean_pool=join_mean_pool))
    valid = torch.arange(30)[None, :] < LENGTHS[:, None]
    torch.testing.assert_close(output.attention.sum(1), torch.ones(4))
    assert (output.attention[~valid] == 0).all()
    assert (output.attention[valid] > 0).all()


def test_frame_posteriors_and_mixture_are_distributions():
    output = run(make_model())
    valid = torch.arange(30)[None, :] < LENGTHS[:, None]
    torch.testing.assert_close(output.frame_posteriors.sum(-1)[valid], torch.ones(int(valid.sum())))
    assert (output.frame_posteriors[~valid] == 0).all()
    assert (output.mixture >= 0).all()
    torch.testing.assert_close(output.mixture.sum(-1), torch.ones(4))
    expected = (output.attention[..., None] * output.frame_posteriors).sum(1)
    torch.testing.assert_close(output.mixture, expected)


@pytest.mark.parametrize("join_mean_pool", [True, False])
def test_a_one_frame_utterance_is_its_frame_posterior(join_mean_pool):
    """The frame classifier is the utterance classifier applied to a frame on its own."""
    output = run(make_model(join_mean_pool=join_mean_pool), lengths=torch.ones(3, dtype=torch.long))
    torch.testing.assert_close(output.probabilities, output.frame_posteriors[:, 0])
    torch.testing.assert_close(output.mixture, output.probabilities)


def test_roi_config_reads_exactly_one_stream():
    with pytest.raises(ValueError, match="one stream"):
        ROIAttentionConfig(num_classes=4, input_dims={"audio": 8, "text": 8}, modalities=("audio", "text"))


WEIGHTS = torch.tensor([[0.05, 0.30, 0.30, 0.05, 0.05, 0.25, 9.0, 9.0]])  # last two frames are padding
LENGTH = torch.tensor([6])


def spans(segments: list[Span], frame_rate: float = 50.0) -> list[tuple[int, int]]:
    """The frames ``[start, end)`` of each span."""
    return [(round(s.start * frame_rate), round(s.end * frame_rate)) for s in segments]


def test_above_uniform_keeps_frames_over_their_fair_share():
    (segments,) = roi_segments(WEIGHTS, LENGTH, frame_rate=50.0, merge_gap=0.0)
    assert spans(segments) == [(1, 3), (5, 6)]  # 1/6 of the mass per frame is the bar
    assert segments[0] == Span(0.02, 0.06, pytest.approx(0.6))


def test_mass_rule_takes_the_fewest_frames_covering_the_mass():
    def by_mass(mass: float) -> list[tuple[int, int]]:
        return spans(roi_segments(WEIGHTS, LENGTH, 50.0, rule="mass", mass=mass, merge_gap=0.0)[0])

    assert by_mass(0.5) == [(1, 3)]  # 0.3 + 0.3
    assert by_mass(0.8) == [(1, 3), (5, 6)]  # + 0.25
    assert by_mass(1.0) == [(0, 6)]


def test_spans_merge_across_short_gaps_and_short_spans_drop():
    # two unselected frames separate the spans: merged when the gap allows two frames
    assert spans(roi_segments(WEIGHTS, LENGTH, 50.0, merge_gap=0.02)[0]) == [(1, 3), (5, 6)]
    assert spans(roi_segments(WEIGHTS, LENGTH, 50.0, merge_gap=0.04)[0]) == [(1, 6)]
    assert spans(roi_segments(WEIGHTS, LENGTH, 50.0, merge_gap=0.0, min_duration=0.04)[0]) == [(1, 3)]


def test_segments_agree_with_the_model_attention():
    output = run(make_model())
    all_segments = roi_segments(output.attention, output.lengths, 50.0, merge_gap=0.0)
    for weights, length, segments in zip(output.attention, output.lengths, all_segments):
        inside = torch.zeros(int(length), dtype=torch.bool)
        for segment, (start_frame, end_frame) in zip(segments, spans(segments)):
            inside[start_frame:end_frame] = True
            assert segment.start == start_frame / 50.0 and segment.end == end_frame / 50.0
            inside_mass = weights[start_frame:end_frame].sum()
            assert segment.mass == pytest.approx(float(inside_mass))
        assert torch.equal(inside, weights[: int(length)] > 1.0 / int(length))


def test_roi_segments_rejects_bad_arguments():
    with pytest.raises(ValueError, match="rule"):
        roi_segments(WEIGHTS, LENGTH, 50.0, rule="top")
    with pytest.raises(ValueError, match="frame_rate"):
        roi_segments(WEIGHTS, LENGTH, 0.0)
    with pytest.raises(ValueError, match="mass"):
        roi_segments(WEIGHTS, LENGTH, 50.0, rule="mass", mass=0.0)
