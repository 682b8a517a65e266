"""``emotrace cv``, ``train``, ``evaluate`` and ``compare``: experiments from YAML configs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from emotrace.errors import EmotraceError

console = Console()

ConfigArgument = Annotated[Path, typer.Argument(help="Experiment YAML (see configs/).", exists=True, dir_okay=False)]
OverridesArgument = Annotated[
    list[str] | None, typer.Argument(help="Overrides such as model.lstm_hidden=64 optim.lr=3e-4.")
]
RunDirOption = Annotated[
    Path | None, typer.Option("--run-dir", "-o", help="Run directory (default: runs/<experiment name>).")
]
ProgressOption = Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bars.")]


def _load(config_path: Path, overrides: list[str] | None):
    from emotrace.training.config import load_config

    try:
        return load_config(config_path, overrides or [])
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


def _fail(error: Exception) -> None:
    console.print(f"[red]error:[/] {error}")
    raise typer.Exit(1)


def cv(
    config_path: ConfigArgument,
    overrides: OverridesArgument = None,
    run_dir: RunDirOption = None,
    progress: ProgressOption = True,
) -> None:
    """Cross-validate: train and test every fold, resuming finished ones; write the report."""
    from emotrace.training.cv import run_cv

    config = _load(config_path, overrides)
    run_dir = run_dir or Path("runs") / config.name
    try:
        run_cv(config, run_dir, progress=progress, console=console)
    except (EmotraceError, ValueError) as error:
        _fail(error)
    _show_summary(run_dir)


def train(
    config_path: ConfigArgument,
    overrides: OverridesArgument = None,
    run_dir: RunDirOption = None,
    fold: Annotated[str | None, typer.Option(help="Train and test only this fold.")] = None,
    progress: ProgressOption = True,
) -> None:
    """Train one model: on one fold with --fold, else on all speakers (RUN_DIR/model)."""
    from emotrace.training.cv import run_cv, train_final

    config = _load(config_path, overrides)
    run_dir = run_dir or Path("runs") / config.name
    try:
        if fold is not None:
            config.folds = [fold]
            run_cv(config, run_dir, progress=progress, console=console)
            _show_summary(run_dir)
        else:
            model_dir = train_final(config, run_dir, progress=progress, console=console)
            console.print(f"model saved to {model_dir}")
    except (EmotraceError, ValueError) as error:
        _fail(error)


def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.", exists=True, file_okay=False)],
    without: Annotated[
        list[str] | None, typer.Option("--without", help="Test the fold models again with this modality absent.")
    ] = None,
) -> None:
    """Recompute a run's metrics, confusion matrix and report from its fold predictions;
    with --without, test its fold models again with a modality missing."""
    from emotrace.training.ablation import evaluate_without
    from emotrace.training.report import write_report

    try:
        if without:
            result = evaluate_without(run_dir, without)
            console.print(
                f"without {', '.join(result['missing'])}: UA {result['ua_mean']:.1f} ± {result['ua_std']:.1f}, "
                f"WA {result['wa_mean']:.1f} ± {result['wa_std']:.1f} ({result['folds']} folds)"
            )
            return
        write_report(run_dir)
    except (EmotraceError, ValueError) as error:
        _fail(error)
    _show_summary(run_dir)


def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run directories.", exists=True, file_okay=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON rows instead of a table.")] = False,
    select: Annotated[
        bool,
        typer.Option("--select", help="Name the run with the best validation UA: the way to choose between settings."),
    ] = False,
) -> None:
    """A table of several runs: method, protocol, UA / WA / macro-F1 / weighted-F1 (mean ± std) and
    validation UA. Choose settings by validation UA (--select); test figures are for reporting."""
    from emotrace.training.report import compare_runs, select_by_validation

    try:
        rows = compare_runs(run_dirs)
        chosen = select_by_validation(rows) if select else None
    except ValueError as error:
        _fail(error)
    if as_json:
        print(json.dumps({"rows": rows, "selected": chosen["run"]} if select else rows, indent=2))
        return
    table = Table("experiment", "method", "protocol", "folds", "val UA", "UA", "WA", "macro-F1", "weighted-F1")
    for row in rows:
        figures = [f"{row[f'{n}_mean']:.1f} ± {row[f'{n}_std']:.1f}" for n in ("ua", "wa", "macro_f1", "weighted_f1")]
        validation = "–" if row["val_ua_mean"] is None else f"{row['val_ua_mean']:.1f}"
        name = f"{row['experiment']} [bold](selected)[/]" if row is chosen else row["experiment"]
        table.add_row(
            name, row["method"], row["protocol"], f"{row['folds']} ({row['folds_protocol']})", validation, *figures
        )
    console.print(table)
    if chosen:
        console.print(
            f"validation picks {chosen['run']} (val UA {chosen['val_ua_mean']:.1f}); its test UA is the one to report"
        )


def _show_summary(run_dir: Path) -> None:
    path = run_dir / "metrics.json"
    if not path.exists():
        return
    summary = json.loads(path.read_text())
    console.print(
        f"[bold]{summary['experiment']}[/] ({summary['protocol']}, {summary['folds']} folds): "
        f"UA {summary['ua_mean']:.1f} ± {summary['ua_std']:.1f}, WA {summary['wa_mean']:.1f} ± {summary['wa_std']:.1f}"
        f"\nreport: {run_dir / 'report.md'}"
    )
