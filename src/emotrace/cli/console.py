"""One-line messages of the prediction commands (``predict``, ``models``, ``export``) on a Rich console."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from emotrace.errors import EmotraceError


def say(console: Console, text: str, style: str | None = None) -> None:
    """``text`` as it is: no markup, and no line breaks added (each message stays one line)."""
    console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)


def fail(console: Console, error: EmotraceError) -> NoReturn:
    """``error: <the error>`` in one line, and exit code 1."""
    console.print(f"[red]error:[/red] {escape(str(error))}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)
