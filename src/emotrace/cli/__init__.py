"""The ``emotrace`` command line: one Typer app, one module per command group."""

from __future__ import annotations

import typer

from emotrace.cli import data, demo, features, models, predict, serve, train

app = typer.Typer(
    name="emotrace",
    help="Speech emotion recognition that shows where in an utterance the emotion lives.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(data.app, name="data")
app.command("extract")(features.extract)
app.add_typer(features.app, name="features")
app.command("demo")(demo.demo)
app.command("predict")(predict.predict)
app.add_typer(models.app, name="models")
app.command("export")(models.export)
app.command("cv")(train.cv)
app.command("train")(train.train)
app.command("evaluate")(train.evaluate)
app.command("compare")(train.compare)
app.command("serve")(serve.serve)


def main() -> None:
    app()
