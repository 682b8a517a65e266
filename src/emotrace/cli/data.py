"""``emotrace data``: look at a corpus before training on it, and write it as a manifest."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from emotrace.corpora import CORPORA, CorpusData, load_corpus
from emotrace.corpora.manifest import write_manifest
from emotrace.errors import BatchReport, EmotraceError

app = typer.Typer(help="Inspect corpora and write manifests.", no_args_is_help=True)

#: Rows of the per-speaker table before the rest is summarised (MELD has 300 speakers).
MAX_SPEAKER_ROWS = 40
#: Speakers listed per fold in the table before the rest is counted.
MAX_FOLD_SPEAKERS = 6

CorpusArgument = Annotated[str, typer.Argument(help=f"Corpus: {', '.join(CORPORA)}.")]
RootArgument = Annotated[Path, typer.Argument(help="Corpus root folder, or the manifest file.")]
LabelSetOption = Annotated[
    str | None,
    typer.Option(help="Label set name, or 'all' (default: the corpus's standard set)."),
]


@app.command()
def describe(
    corpus: CorpusArgument,
    root: RootArgument,
    label_set: LabelSetOption = None,
    speaker_dependent: Annotated[
        bool, typer.Option("--speaker-dependent", help="Show speaker-dependent folds instead.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the validation-speaker draw.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Utterances per class, per speaker and per fold (reads file names only)."""
    console = Console(stderr=True)
    report = BatchReport()
    data = _load(console, corpus, root, label_set, report, speaker_dependent=speaker_dependent, seed=seed)
    summary = summarise(data, report)
    if as_json:
        typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))
        return
    _print_tables(Console(), summary)
    if report.skipped:
        console.print(report.summary(), markup=False, highlight=False)


@app.command()
def manifest(
    corpus: CorpusArgument,
    root: RootArgument,
    output: Annotated[Path, typer.Option("--output", "-o", help="Manifest to write: .jsonl or .csv.")],
    label_set: LabelSetOption = None,
    strict: Annotated[bool, typer.Option("--strict", help="Stop at the first bad input.")] = False,
) -> None:
    """Write a corpus as a manifest, probing each audio file for its rate, length and channels."""
    console = Console(stderr=True)
    read_report, write_report = BatchReport(strict=strict), BatchReport(strict=strict)
    data = _load(console, corpus, root, label_set, read_report)
    if read_report.skipped:
        console.print(f"reading {read_report.summary()}", markup=False, highlight=False)
    try:
        # the with block (not rich's track()) ends the progress display even when the write raises
        with Progress(console=console) as progress:
            probing = progress.track(data.utterances, description="probing audio")
            written = write_manifest(probing, output, write_report)
    except EmotraceError as error:
        _fail(console, error)
    console.print(f"writing {write_report.summary()}", markup=False, highlight=False)
    console.print(f"{written} utterances written to {output}", markup=False, highlight=False)


def _load(
    console: Console,
    corpus: str,
    root: Path,
    label_set: str | None,
    report: BatchReport,
    **options: Any,
) -> CorpusData:
    try:
        return load_corpus(corpus, root, label_set=label_set, report=report, **options)
    except EmotraceError as error:
        _fail(console, error)


def _fail(console: Console, error: EmotraceError) -> NoReturn:
    console.print(f"[red]error:[/red] {escape(str(error))}", highlight=False)
    raise typer.Exit(1)


def summarise(data: CorpusData, report: BatchReport) -> dict[str, Any]:
    """The machine-readable description ``describe --json`` prints."""
    classes = Counter(u.label for u in data.utterances)
    speakers = Counter(u.speaker for u in data.utterances)
    folds = []
    for fold in data.folds:
        train, val, test = fold.split(data.utterances)
        folds.append(
            {
                "name": fold.name,
                "test_speakers": sorted({u.speaker for u in test}),
                "val_speakers": sorted({u.speaker for u in val}),
                "train_utterances": len(train),
                "val_utterances": len(val),
                "test_utterances": len(test),
            }
        )
    reader = CORPORA[data.name]
    return {
        "corpus": data.name,
        "description": reader.description,
        "label_set": data.label_set.name,
        "standard_label_sets": [labels.name for labels in reader.label_sets],
        "utterances": len(data.utterances),
        "speakers": len(speakers),
        "classes": {name: classes[name] for name in data.label_set.classes},
        "per_speaker": dict(sorted(speakers.items())),
        "protocol": data.folds.protocol,
        "folds_description": data.folds.description,
        "folds": folds,
        "dropped": sum(data.dropped.values()),
        "dropped_labels": dict(sorted(data.dropped.items())),
        "skipped": report.to_dict()["skipped"],
    }


def _print_tables(console: Console, summary: dict[str, Any]) -> None:
    total = summary["utterances"]
    console.print(
        f"[bold]{summary['corpus']}[/bold]: {total} utterances, {summary['speakers']} speakers, "
        f"label set {summary['label_set']}\n{escape(summary['description'])}",
        highlight=False,
    )
    classes = Table("class", "utterances", "share")
    for name, count in summary["classes"].items():
        classes.add_row(name, str(count), f"{100 * count / total:.1f}%")
    console.print(classes)
    if summary["dropped"]:
        dropped = ", ".join(f"{label} {count}" for label, count in summary["dropped_labels"].items())
        console.print(f"dropped {summary['dropped']} (not in the label set): {dropped}", highlight=False)

    speakers = Table("speaker", "utterances")
    ranked = sorted(summary["per_speaker"].items(), key=lambda item: (-item[1], item[0]))
    for name, count in ranked[:MAX_SPEAKER_ROWS]:
        speakers.add_row(escape(name), str(count))
    if len(ranked) > MAX_SPEAKER_ROWS:
        rest = ranked[MAX_SPEAKER_ROWS:]
        speakers.add_row(f"... {len(rest)} more", str(sum(count for _, count in rest)))
    console.print(speakers)

    console.print(
        f"folds: [bold]{summary['protocol']}[/bold], {summary['folds_description']}",
        highlight=False,
    )
    folds = Table("fold", "test speakers", "validation speakers", "train", "val", "test")
    for fold in summary["folds"]:
        folds.add_row(
            fold["name"],
            _some(fold["test_speakers"]),
            _some(fold["val_speakers"]),
            str(fold["train_utterances"]),
            str(fold["val_utterances"]),
            str(fold["test_utterances"]),
        )
    console.print(folds)


def _some(names: list[str]) -> str:
    shown = escape(", ".join(names[:MAX_FOLD_SPEAKERS]))
    return shown + (f" (+{len(names) - MAX_FOLD_SPEAKERS})" if len(names) > MAX_FOLD_SPEAKERS else "")
