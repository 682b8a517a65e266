"""``emotrace models list`` (the packaged models) and ``emotrace export`` (a model for deployment)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from emotrace.api import DEFAULT_MODEL, available_models, resolve_model
from emotrace.cli.console import fail, say
from emotrace.errors import EmotraceError

app = typer.Typer(help="Packaged pretrained models.", no_args_is_help=True)


@app.command("list")
def list_models() -> None:
    """Packaged pretrained models: classes, protocol, UA/WA and size."""
    console = Console()
    infos = available_models()
    if infos:
        table = Table("name", "classes", "protocol", "UA", "WA", "size", title="packaged models")
        for info in infos:
            table.add_row(
                info.name,
                ", ".join(info.labels),
                info.protocol,
                _percent(info.ua),
                _percent(info.wa),
                f"{info.size / 1e6:.1f} MB",
            )
        console.print(table)
    else:
        console.print("no packaged models are installed")
    say(
        console,
        f"default: {DEFAULT_MODEL}. Any training run or checkpoint folder works too: "
        "emotrace predict --model RUN_DIR FILE",
    )


def export(
    model: Annotated[str, typer.Argument(help="Training run folder, checkpoint folder or packaged model name.")],
    onnx: Annotated[bool, typer.Option("--onnx", help="Export to ONNX.")] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: model.onnx beside the checkpoint).")
    ] = None,
) -> None:
    """Export a model for deployment (ONNX, checked against PyTorch on a test input)."""
    from emotrace.inference.export import export_onnx

    if not onnx:
        raise typer.BadParameter("choose an export format: --onnx")
    console = Console(stderr=True)
    try:
        checkpoint_dir = resolve_model(model)
        exported = export_onnx(checkpoint_dir, output or checkpoint_dir / "model.onnx")
    except EmotraceError as error:
        fail(console, error)
    largest = max(exported.max_differences.values(), default=0.0)
    say(
        console,
        f"{exported.path} written, described in {exported.metadata_path}; "
        f"largest difference from PyTorch on the check inputs: {largest:.2g}",
    )


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
