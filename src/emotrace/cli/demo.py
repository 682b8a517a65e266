"""``emotrace demo``: the packaged default model on the shipped clips, offline.

What a new user should see first: for each of the three RAVDESS clips in the package, the
label the default model gives, its probabilities, where in the clip the emotion was found
(regions of interest, in seconds), and a plot of it, next to the label the actors were
asked to portray.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Column, Table

from emotrace.corpora.ravdess import read_ravdess
from emotrace.errors import BatchReport
from emotrace.samples import SAMPLES


def demo(
    plot: Annotated[Path, typer.Option(help="Folder for one explanation plot per clip.")] = Path("emotrace-demo"),
) -> None:
    """Predict the shipped sample clips with the default model: label, probabilities, ROIs."""
    from emotrace.api import DEFAULT_MODEL, load_model
    from emotrace.audio import load_audio
    from emotrace.inference.plots import write_plot

    console = Console()
    utterances = read_ravdess(SAMPLES, BatchReport())
    with console.status(f"loading {DEFAULT_MODEL}"):
        predictor = load_model()
    table = Table(
        Column("clip", overflow="fold"),
        "portrayed",
        "predicted",
        "probabilities (top 3)",
        "regions of interest (s)",
        title=f"{DEFAULT_MODEL}, protocol: utterance-level",
    )
    plot.mkdir(parents=True, exist_ok=True)
    names: set[str] = set()
    with console.status("predicting"):
        for utterance in utterances:
            waveform = load_audio(utterance.audio)  # decoded once, for the prediction and its plot
            result = predictor.predict(waveform, source=str(utterance.audio))
            top = sorted(result.probabilities.items(), key=lambda item: -item[1])[:3]
            regions = ", ".join(f"{r.start:.2f}-{r.end:.2f} ({100 * r.mass:.0f}%)" for r in result.segments)
            table.add_row(
                Path(utterance.audio).name,
                utterance.label or "?",
                f"[bold]{result.label}[/]",
                ", ".join(f"{label} {100 * p:.0f}%" for label, p in top),
                regions or "-",
            )
            if write_plot(result, Path(utterance.audio), plot, predictor.labels, names, waveform) is None:
                console.print(f"no plot for {utterance.audio}: the model gives no frame-level dynamics", markup=False)
    console.print(table)
    console.print(f"plots: {plot}/  ·  next: [bold]emotrace predict FILE_OR_FOLDER --plot DIR[/]")


if __name__ == "__main__":
    typer.run(demo)
