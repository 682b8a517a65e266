"""Errors users see, and the report that lets a batch go on past a bad item.

Every problem with an input becomes an :class:`InputError` whose message is one line
naming the file (or manifest line) and the problem. Batch code catches only these,
records them in a :class:`BatchReport`, and goes on; ``strict=True`` makes them fatal.
Anything else is a bug and is allowed to propagate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


def printable(text: str) -> str:
    """``text`` safe to print or write as UTF-8: bytes of a file name that are not UTF-8
    (held by Python as surrogate escapes) become ``\\xff``, other lone surrogates ``\\udXXX``."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


class EmotraceError(Exception):
    """Base class of the errors emotrace raises on purpose."""


class InputError(EmotraceError):
    """A bad input: ``str(error)`` is ``"<source>: <problem>"`` on one line, printable
    whatever bytes the file's name holds (see :func:`printable`)."""

    def __init__(self, source: str | Path, problem: str):
        self.source = printable(str(source))
        self.problem = printable(" ".join(str(problem).split()))
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
