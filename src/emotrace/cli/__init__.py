"""The ``emotrace`` command line: one Typer app, one module per command group."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="emotrace",
    help="Speech emotion recognition that shows where in an utterance the emotion lives.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


def main() -> None:
    app()
