"""``emotrace predict`` (emotions of files, folders and globs), ``emotrace models list``
and ``emotrace export``."""

from __future__ import annotations

import csv
import glob
import io
import json
from collections import defaultdict
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, NoReturn

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from emotrace.api import DEFAULT_MODEL, available_models, load_model, resolve_model
from emotrace.atomic import write_text_atomically
from emotrace.audio import TARGET_SR, load_audio
from emotrace.cli.engine import ActorsOption, AddressOption, Engine, EngineOption, check_engine_options
from emotrace.errors import BatchReport, EmotraceError, InputError
from emotrace.features.normalization import SPEAKER_ADAPTIVE, UTTERANCE_LEVEL, Moments
from emotrace.inference.plots import plot_timeline, plot_utterance
from emotrace.inference.predictor import (
    Prediction,
    Predictor,
    RecordingPrediction,
    predictions_document,
)

models_app = typer.Typer(help="Packaged pretrained models.", no_args_is_help=True)

#: what a folder is searched for (any file named explicitly is tried, whatever its name)
AUDIO_EXTENSIONS = frozenset(
    {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".wma", ".aif", ".aiff"}
    | {".mp4", ".mkv", ".webm", ".mov"}  # video containers: their audio track
)

Result = Prediction | RecordingPrediction


class OutputFormat(str, Enum):
    json = "json"
    csv = "csv"
    table = "table"
    parquet = "parquet"  # --engine ray


def predict(
    paths: Annotated[list[str], typer.Argument(help="Audio files, folders (searched recursively) and globs.")],
    model: Annotated[
        str, typer.Option("--model", "-m", help="Packaged model name, checkpoint folder or training run folder.")
    ] = DEFAULT_MODEL,
    text: Annotated[str | None, typer.Option(help="Transcript of every input, for models that read text.")] = None,
    transcripts: Annotated[
        Path | None,
        typer.Option(help="CSV or JSONL with path,text per file (paths relative to it).", exists=True, dir_okay=False),
    ] = None,
    asr: Annotated[
        bool, typer.Option("--asr", help="Transcribe with Whisper (packaged tiny.en) for models that read text.")
    ] = False,
    adapt_speaker: Annotated[
        bool,
        typer.Option(
            "--adapt-speaker",
            help="Speaker-adaptive protocol: normalise features by each speaker's recordings "
            "(the speaker is the parent folder's name, or given by --speakers).",
        ),
    ] = False,
    speakers: Annotated[
        Path | None,
        typer.Option(help="CSV with path,speaker per file, for --adapt-speaker.", exists=True, dir_okay=False),
    ] = None,
    output_format: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = OutputFormat.table,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the output here, not to stdout.")] = None,
    plot: Annotated[
        Path | None,
        typer.Option(help="Folder for PNGs: one per utterance, a timeline per long recording.", file_okay=False),
    ] = None,
    engine: EngineOption = Engine.local,
    address: AddressOption = None,
    actors: ActorsOption = None,
    threads: Annotated[int, typer.Option(min=1, help="Threads per Ray actor. With --engine ray.")] = 1,
) -> None:
    """Emotion of each utterance: label, probabilities, regions of interest, dynamics, mixture.

    Files longer than 30 s are long recordings, cut into speech segments by voice activity: one prediction per segment, and a timeline.

    Every output says which protocol ran: utterance-level, or speaker-adaptive with --adapt-speaker.

    A bad file is reported and skipped; the exit code is 1 only when nothing could be predicted.

    With --engine ray, files are predicted on a Ray cluster into --output (json or parquet); a killed run, rerun, predicts only what it had not finished.
    """
    console = Console(stderr=True)
    check_engine_options(engine, address, actors)
    _check_output(engine, output_format, output, plot)
    if sum([text is not None, transcripts is not None, asr]) > 1:
        raise typer.BadParameter("give at most one of --text, --transcripts and --asr")
    if speakers is not None and not adapt_speaker:
        raise typer.BadParameter("--speakers needs --adapt-speaker")
    try:
        predictor = load_model(model, asr=asr)
        _check_protocol(predictor, adapt_speaker, model)
        texts = _read_pairs(transcripts, "text") if transcripts else {}
        speaker_of = _read_pairs(speakers, "speaker") if speakers else {}
    except EmotraceError as error:
        _fail(console, error)
    if (text is not None or texts) and not predictor.reads("text"):
        _say(console, "note: this model reads no text; the transcripts are not used")

    report = BatchReport()
    files = expand_inputs(paths, report)
    groups = _speaker_groups(files, speaker_of, report, console) if adapt_speaker else {None: files}
    if engine == Engine.ray:
        _predict_on_ray(model, groups, text, texts, asr, output, output_format, report, console, address, actors, threads)
        return
    try:  # a configuration problem (an extractor that cannot load) ends the run in one line
        results = _predict_all(predictor, groups, text, texts, plot, report, console)
    except EmotraceError as error:
        _fail(console, error)

    if results:
        _write(results, report, output_format, output, predictor.labels)
    _say(console, report.summary())
    if not results:
        raise typer.Exit(1)


@models_app.command("list")
def list_models() -> None:
    """Packaged pretrained models: classes, protocol, UA/WA and size."""
    console = Console()
    infos = available_models()
    if infos:
        table = Table("name", "classes", "protocol", "UA", "WA", "size", title="packaged models")
        for info in infos:
            table.add_row(
                info.name, ", ".join(info.labels), info.protocol, _percent(info.ua), _percent(info.wa),
                f"{info.size / 1e6:.1f} MB",
            )
        console.print(table)
    else:
        console.print("no packaged models are installed")
    _say(
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
        _fail(console, error)
    largest = max(exported.max_differences.values(), default=0.0)
    _say(
        console,
        f"{exported.path} written, described in {exported.metadata_path}; "
        f"largest difference from PyTorch on the check inputs: {largest:.2g}",
    )


def expand_inputs(patterns: list[str], report: BatchReport) -> list[Path]:
    """Files named, found in folders (recursively, by audio extension) or matched by globs,
    in order and without repeats; a pattern that yields nothing goes to ``report``."""
    files: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            found = _audio_files(path)
            problem = f"folder holds no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))})"
        elif path.exists():
            found, problem = [path], ""
        elif glob.has_magic(pattern):
            matches = [Path(match) for match in sorted(glob.glob(pattern, recursive=True))]
            found = [f for m in matches for f in (_audio_files(m) if m.is_dir() else [m])]
            problem = "matches no files"
        else:
            found, problem = [], "file not found"
        if not found:
            report.skip(InputError(pattern, problem))
        files += found
    unique: dict[Path, Path] = {}
    for file in files:
        unique.setdefault(file.resolve(), file)
    return list(unique.values())


def _audio_files(folder: Path) -> list[Path]:
    return sorted(
        path
        for path in folder.rglob("*")
        if path.suffix.lower() in AUDIO_EXTENSIONS and path.is_file() and not path.name.startswith(".")
    )


def _check_output(engine: Engine, output_format: OutputFormat, output: Path | None, plot: Path | None) -> None:
    if engine == Engine.ray:
        if output_format not in (OutputFormat.json, OutputFormat.parquet) or output is None:
            raise typer.BadParameter("--engine ray writes --format json or parquet to an --output file")
        if plot is not None:
            raise typer.BadParameter("--plot is not available with --engine ray")
    elif output_format == OutputFormat.parquet:
        raise typer.BadParameter("--format parquet needs --engine ray")


def _predict_on_ray(
    model: str, groups: dict[str | None, list[Path]], text: str | None, texts: dict[Path, str], asr: bool,
    output: Path, output_format: OutputFormat, report: BatchReport, console: Console, address: str | None,
    actors: int | None, threads: int,
) -> None:
    from emotrace.distributed.predict import predict_files_on_ray

    try:
        count = predict_files_on_ray(
            model, groups, output, output_format=output_format.value, text=text, texts=texts, asr=asr,
            report=report, address=address, actors=actors, threads=threads, console=console,
        )
    except EmotraceError as error:
        _fail(console, error)
    _say(console, report.summary())
    if not count:
        raise typer.Exit(1)


def _check_protocol(predictor: Predictor, adapt_speaker: bool, model: str) -> None:
    if adapt_speaker and SPEAKER_ADAPTIVE not in predictor.protocols:
        raise InputError(model, "has no speaker-adaptive variant, so --adapt-speaker cannot be used with it")
    if not adapt_speaker and UTTERANCE_LEVEL not in predictor.protocols:
        raise InputError(model, "is speaker-adaptive: use --adapt-speaker with several recordings per speaker")


def _read_pairs(path: Path, field: str) -> dict[Path, str]:
    """``{resolved audio path: field}`` from a CSV or JSONL file of ``path`` and ``field``
    columns; relative audio paths are relative to the file's folder."""
    if path.suffix.lower() == ".jsonl":
        rows = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    rows.append((number, json.loads(line)))
                except json.JSONDecodeError:
                    raise InputError(f"{path}:{number}", "is not valid JSON") from None
    else:
        with open(path, newline="", encoding="utf-8") as file:
            rows = list(enumerate(csv.DictReader(file), start=2))
    pairs = {}
    for number, row in rows:
        if not isinstance(row, dict) or not row.get("path") or row.get(field) is None:
            raise InputError(f"{path}:{number}", f"needs a 'path' and a '{field}' field")
        pairs[(path.parent / row["path"]).resolve()] = str(row[field])
    return pairs


def _speaker_groups(
    files: list[Path], speaker_of: dict[Path, str], report: BatchReport, console: Console
) -> dict[str | None, list[Path]]:
    groups: dict[str | None, list[Path]] = defaultdict(list)
    for path in files:
        speaker = speaker_of.get(path.resolve()) if speaker_of else path.resolve().parent.name
        if speaker is None:
            report.skip(InputError(path, "has no speaker in the --speakers file"))
        else:
            groups[speaker].append(path)
    lone = sorted(speaker for speaker, group in groups.items() if len(group) == 1)
    if lone:
        _say(console, f"note: speakers with one recording have weak speaker moments: {', '.join(lone)}")
    return dict(groups)


def _predict_all(
    predictor: Predictor,
    groups: dict[str | None, list[Path]],
    text: str | None,
    texts: dict[Path, str],
    plot: Path | None,
    report: BatchReport,
    console: Console,
) -> list[Result]:
    """Each group's files (a group is a speaker under --adapt-speaker), with a progress bar;
    bad files are reported as they come and skipped."""
    results: list[Result] = []
    plot_names: set[str] = set()
    with Progress(console=console) as progress:

        def skip(error: InputError) -> None:
            report.skip(error)
            _say(progress.console, f"skipped {error}", style="yellow")

        task = progress.add_task("predicting", total=sum(len(group) for group in groups.values()))
        for speaker, group in groups.items():
            group_texts = [text if text is not None else texts.get(path.resolve()) for path in group]
            moments = None
            if speaker is not None:
                progress.update(task, description=f"speaker {speaker}: moments")
                moments = _speaker_moments(predictor, group, group_texts, skip)
                if moments is None:
                    progress.advance(task, len(group))
                    continue
                progress.update(task, description=f"speaker {speaker}: predicting")
            for path, path_text in zip(group, group_texts):
                try:
                    result = predictor.predict_file(path, path_text, speaker_moments=moments, report=report)
                except InputError as error:
                    skip(error)
                else:
                    report.done += 1
                    results.append(result)
                    if plot is not None:
                        plot_result(result, path, plot, predictor.labels, plot_names, progress.console)
                progress.advance(task)
    return results


def _speaker_moments(
    predictor: Predictor, group: list[Path], texts: list[str | None], skip: Callable[[InputError], None]
) -> dict[str, Moments] | None:
    """The speaker's moments; None when none of the files could be read (each then skipped
    with its own problem). Files that fail here fail again, and are reported, when predicted."""
    quiet = BatchReport()
    try:
        return predictor.speaker_moments_for(group, texts, report=quiet)
    except InputError:
        for error in quiet.skipped:
            skip(error)
        return None


def plot_result(
    result: Result, path: Path, folder: Path, labels: tuple[str, ...], names: set[str], console: Console
) -> None:
    """A timeline PNG for a recording, an attention-and-dynamics PNG for an utterance."""
    name, number = path.stem, 1
    while name in names:
        number += 1
        name = f"{path.stem}-{number}"
    names.add(name)
    if isinstance(result, RecordingPrediction):
        plot_timeline(
            folder / f"{name}.timeline.png",
            segments=[(p.start, p.end) for p in result.timeline],
            probabilities=np.array([[p.probabilities[label] for label in labels] for p in result.timeline]),
            labels=labels,
            duration=result.duration,
            title=Path(result.source).name,
        )
    elif result.frame_posteriors is not None:
        plot_utterance(
            folder / f"{name}.png",
            waveform=load_audio(path, max_duration=None),
            sample_rate=TARGET_SR,
            attention=result.attention,
            frame_rate=result.frame_rate,
            frame_posteriors=result.frame_posteriors,
            labels=labels,
            predicted=result.label,
            probability=result.probabilities[result.label],
            segments=[(region.start, region.end) for region in result.segments],
            title=Path(result.source).name,
        )
    else:
        _say(console, f"no plot for {path}: the model gives no frame-level dynamics")


def _utterances(results: list[Result]) -> list[Prediction]:
    """Every prediction: utterances, and each speech segment of the recordings."""
    return [p for r in results for p in (r.timeline if isinstance(r, RecordingPrediction) else (r,))]


def _write(
    results: list[Result],
    report: BatchReport,
    output_format: OutputFormat,
    output: Path | None,
    labels: tuple[str, ...],
) -> None:
    if output_format == OutputFormat.json:
        text = json.dumps(predictions_document(results, report), indent=2, ensure_ascii=False) + "\n"
    elif output_format == OutputFormat.csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["source", "start", "end", "protocol", "label", *labels, "regions", "transcript"])
        for p in _utterances(results):
            regions = ";".join(f"{region.start:.2f}-{region.end:.2f}" for region in p.segments)
            writer.writerow([
                p.source, f"{p.start:.3f}", f"{p.end:.3f}", p.protocol, p.label,
                *(f"{p.probabilities[label]:.5f}" for label in labels), regions, p.transcript or "",
            ])
        text = buffer.getvalue()
    else:
        if output is None:
            Console().print(_table(results))
            return
        buffer = io.StringIO()
        Console(file=buffer, width=160, no_color=True).print(_table(results))
        text = buffer.getvalue()
    if output is None:
        typer.echo(text, nl=False)
    else:
        write_text_atomically(output, text)


def _table(results: list[Result]) -> Table:
    predictions = _utterances(results)
    protocols = ", ".join(sorted({p.protocol for p in predictions}))
    table = Table(title=f"{protocols} protocol")
    table.add_column("file", overflow="fold")
    for column in ("time (s)", "label", "runner-up", "regions of interest (s)"):
        table.add_column(column)
    with_text = any(p.transcript for p in predictions)
    if with_text:
        table.add_column("transcript")
    for p in predictions:
        ranked = sorted(p.probabilities, key=p.probabilities.__getitem__, reverse=True)
        regions = ", ".join(f"{region.start:.2f}-{region.end:.2f}" for region in p.segments)
        row = [
            escape(p.source), f"{p.start:.2f}-{p.end:.2f}", f"{p.label} {p.probabilities[p.label]:.0%}",
            f"{ranked[1]} {p.probabilities[ranked[1]]:.0%}", regions,
        ]
        table.add_row(*row, *([escape(p.transcript or "")] if with_text else []))
    captions = []
    for r in results:
        if isinstance(r, RecordingPrediction):
            top = sorted(r.shares, key=r.shares.__getitem__, reverse=True)[:3]
            shares = ", ".join(f"{label} {r.shares[label]:.0%}" for label in top)
            captions.append(f"{escape(r.source)}: {len(r.timeline)} speech segments, {shares}")
    table.caption = "\n".join(captions) or None
    return table


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _say(console: Console, text: str, style: str | None = None) -> None:
    """``text`` as it is: no markup, and no line breaks added (each message stays one line)."""
    console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)


def _fail(console: Console, error: EmotraceError) -> NoReturn:
    console.print(f"[red]error:[/red] {escape(str(error))}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)
