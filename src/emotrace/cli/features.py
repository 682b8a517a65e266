"""``emotrace extract`` fills feature stores; ``emotrace features info`` shows what they hold."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from emotrace.cli.engine import ActorsOption, AddressOption, Engine, EngineOption, check_engine_options
from emotrace.corpora import load_corpus
from emotrace.errors import BatchReport, EmotraceError
from emotrace.features.asr import WhisperASR
from emotrace.features.augmented import extract_augmented
from emotrace.features.pipeline import ExtractionSummary, extract_corpus, open_stores

app = typer.Typer(help="Inspect feature stores.", no_args_is_help=True)


def split_specs(value: str) -> list[str]:
    """Extractor specs from ``"egemaps,whisper-base:layers=3,4"``.

    Commas separate specs and also list values inside one spec; a piece that starts with
    a digit continues the previous spec (``layers=3,4``), anything else starts a new one.
    """
    specs: list[str] = []
    for piece in (piece.strip() for piece in value.split(",")):
        if specs and re.match(r"-?\d", piece):
            specs[-1] += f",{piece}"
        elif piece:
            specs.append(piece)
    return specs


def extract(
    corpus: Annotated[str, typer.Argument(help="Corpus name (ravdess, iemocap, ...) or 'manifest'.")],
    root: Annotated[Path, typer.Argument(help="Corpus root folder, or the manifest file.", exists=True)],
    features: Annotated[
        str, typer.Option("--features", "-f", help="Extractor specs, comma-separated: egemaps,whisper-tiny.")
    ],
    store: Annotated[Path, typer.Option("--store", help="Folder holding one store per extractor config.")],
    label_set: Annotated[
        str, typer.Option(help="Keep only utterances of this label set (default: every labelled one).")
    ] = "all",
    batch_size: Annotated[int, typer.Option(min=1, help="Inputs per extractor call and per write.")] = 8,
    workers: Annotated[int, typer.Option(min=1, help="Threads decoding audio ahead of the model.")] = 2,
    threads: Annotated[
        int | None, typer.Option(min=1, help="Torch intra-op threads (with --engine ray: per actor, default 1).")
    ] = None,
    asr: Annotated[bool, typer.Option("--asr", help="Transcribe utterances that have no transcript.")] = False,
    asr_model: Annotated[
        str | None, typer.Option(help="Whisper model folder or name (default: packaged tiny.en).")
    ] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Stop at the first bad input.")] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N utterances.")] = None,
    augment_copies: Annotated[
        int,
        typer.Option(
            min=0,
            help="Also store N augmented copies of each clip's audio features (speed, reverb, babble, noise, "
            "gain, codec; what `data.augment_copies: N` trains on).",
        ),
    ] = 0,
    engine: EngineOption = Engine.local,
    address: AddressOption = None,
    actors: ActorsOption = None,
) -> None:
    """Extract features of a corpus into --store; a rerun computes only what is missing."""
    check_engine_options(engine, address, actors)
    console = Console(stderr=True)
    if augment_copies and engine != Engine.local:
        console.print("error: --augment-copies runs with --engine local only", style="red", markup=False)
        raise typer.Exit(2)
    reading = BatchReport(strict=strict)
    report = BatchReport(strict=strict)
    try:
        data = load_corpus(corpus, root, label_set=label_set, report=reading)
        utterances = list(data.utterances)[:limit]
        whisper = WhisperASR(asr_model) if asr else None
        if engine == Engine.ray:
            from emotrace.distributed.extract import extract_corpus_on_ray

            summary = extract_corpus_on_ray(
                utterances,
                split_specs(features),
                store,
                address=address,
                actors=actors,
                threads=threads or 1,
                batch_size=batch_size,
                asr=whisper,
                report=report,
                console=console,
            )
        else:
            summary = extract_corpus(
                utterances,
                split_specs(features),
                store,
                batch_size=batch_size,
                workers=workers,
                threads=threads,
                asr=whisper,
                report=report,
                console=console,
            )
        if augment_copies:
            copies = extract_augmented(
                utterances,
                split_specs(features),
                store,
                augment_copies,
                batch_size=batch_size,
                workers=workers,
                threads=threads,
                report=report,
                console=console,
            )
            summary = ExtractionSummary([*summary.stores, *copies.stores], report, summary.seconds + copies.seconds)
    except EmotraceError as error:
        console.print(f"error: {error}", style="red", markup=False, highlight=False)
        raise typer.Exit(1) from None
    table = Table("store", "extractor", "computed", "cached", "skipped", title=f"{len(utterances)} utterances")
    for count in summary.stores:
        table.add_row(count.store, count.extractor, str(count.computed), str(count.cached), str(count.skipped))
    console.print(table)
    console.print(f"reading {corpus}: {reading.summary()}", markup=False, highlight=False)
    console.print(f"extraction: {report.summary()}", markup=False, highlight=False)
    console.print(f"{summary.seconds:.1f} s; stores in {store}")


@app.command()
def info(
    directory: Annotated[Path, typer.Argument(help="A --store folder.", exists=True, file_okay=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the stores in a --store folder: extractor, config, entries, frames, size."""
    infos = [store.info() for store in open_stores(directory)]
    if as_json:
        typer.echo(json.dumps(infos, indent=2))
        return
    table = Table(
        "store",
        "extractor",
        "config",
        "entries",
        "frames",
        "dims",
        "layers",
        "frame rate",
        "size",
        title=str(directory),
    )
    for item in infos:
        table.add_row(
            item["store"],
            f"{item['extractor']} v{item['version']}",
            json.dumps(item["config"], sort_keys=True),
            str(item["entries"]),
            _cell(item.get("total_frames", f"{item.get('words', 0)} words")),
            _cell(item.get("dims")),
            _cell(item.get("layers")),
            _cell(item.get("frame_rate")),
            _size(item["bytes"]),
        )
    Console().print(table)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(str(element) for element in value) or "-"
    return str(value)


def _size(size_bytes: int) -> str:
    if size_bytes < 1024:
        return f"{size_bytes} B"
    size = size_bytes / 1024
    for unit in ("KB", "MB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"
