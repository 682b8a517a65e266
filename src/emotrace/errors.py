"""Errors users see, and the report that lets a batch go on past a bad item.

Every problem with an input becomes an :class:`InputError` whose message is one line
naming the file (or manifest line) and the problem. Batch code catches only these,
records them in a :class:`BatchReport`, and goes on; ``strict=True`` makes them fatal.
Anything else is a bug and is allowed to propagate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


class EmotraceError(Exception):
    """Base class of the errors emotrace raises on purpose."""


class InputError(EmotraceError):
    """A bad input: ``str(error)`` is ``"<source>: <problem>"`` on one line."""

    def __init__(self, source: str | Path, problem: str):
        self.source = str(source)
        self.problem = " ".join(str(problem).split())
        super().__init__(f"{self.source}: {self.problem}")


@dataclass
class BatchReport:
    """What a batch skipped and why; raises at the first bad item when ``strict``."""

    strict: bool = False
    skipped: list[InputError] = field(default_factory=list)
    done: int = 0

    def skip(self, error: InputError) -> None:
        if self.strict:
            raise error
        self.skipped.append(error)

    def summary(self) -> str:
        lines = [f"{self.done} done, {len(self.skipped)} skipped"]
        lines += [f"  skipped {error}" for error in self.skipped]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "done": self.done,
            "skipped": [{"source": e.source, "problem": e.problem} for e in self.skipped],
        }
