"""One type for every stretch of time: a speech segment, a region of interest, a prediction's span.

Times are seconds of the source file. ``mass`` is the share of some weight the span holds
(a region of interest's share of the attention) and None where nothing is weighed (a
speech segment). ``dataclasses.asdict`` of a span is its JSON: ``{"start", "end", "mass"}``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """``start``..``end`` seconds, holding ``mass`` of a weight (None: unweighted)."""

    start: float
    end: float
    mass: float | None = None

    @property
    def duration(self) -> float:
        return self.end - self.start

    def shifted(self, offset: float) -> Span:
        """The same span ``offset`` seconds later: from a segment's time to its file's."""
        return Span(self.start + offset, self.end + offset, self.mass)
