"""Regions of interest: where attention weights over frames concentrate, as spans of seconds.

Every model output that attends over time (method A's attention, method B's emotion
queries) turns its weights into :class:`~emotrace.spans.Span` s here, so one rule decides
what a region of interest is.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from emotrace.spans import Span


def roi_segments(
    attention: Tensor,
    lengths: Tensor,
    frame_rate: float,
    rule: Literal["above_uniform", "mass"] = "above_uniform",
    mass: float = 0.5,
    merge_gap: float = 0.1,
    min_duration: float = 0.0,
) -> list[list[Span]]:
    """The ROI segments of each item, from attention weights ``(B, T)``: spans in seconds
    from the first frame, each with the share of the attention it holds as ``mass``.

    Frames are selected by ``rule``: ``"above_uniform"`` keeps a_t > 1/T_valid (more than
    a frame's fair share); ``"mass"`` keeps the fewest frames whose weights add up to at
    least ``mass`` of the total. Runs of selected frames separated by at most
    ``merge_gap`` seconds of unselected ones are merged; spans shorter than
    ``min_duration`` seconds are dropped. ``frame_rate`` is frames per second of the
    stream the attention ran over (50 for Whisper encoder frames).
    """
    if frame_rate <= 0:
        raise ValueError(f"frame_rate must be positive, got {frame_rate}")
    if rule not in ("above_uniform", "mass"):
        raise ValueError(f"unknown ROI rule {rule!r}; use 'above_uniform' or 'mass'")
    if not 0.0 < mass <= 1.0:
        raise ValueError(f"mass must lie in (0, 1], got {mass}")
    max_gap_frames = round(merge_gap * frame_rate)
    segments = []
    for weights, length in zip(attention.detach().float().cpu(), lengths.tolist()):
        weights = weights[:length]
        if rule == "above_uniform":
            selected = weights > 1.0 / length
        else:
            order = torch.argsort(weights, descending=True, stable=True)
            needed = min(int((weights[order].cumsum(0) < mass).sum()) + 1, length)
            selected = torch.zeros(length, dtype=torch.bool)
            selected[order[:needed]] = True

        runs: list[list[int]] = []
        for frame in torch.nonzero(selected).flatten().tolist():
            if runs and frame - runs[-1][1] <= max_gap_frames:
                runs[-1][1] = frame + 1
            else:
                runs.append([frame, frame + 1])
        segments.append(
            [
                Span(start / frame_rate, end / frame_rate, float(weights[start:end].sum()))
                for start, end in runs
                if (end - start) / frame_rate >= min_duration
            ]
        )
    return segments
