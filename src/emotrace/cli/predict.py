"""``emotrace predict``: emotions of files, folders and globs, with a progress bar.

The work is :func:`emotrace.inference.batch.predict_batch`; this module reads the options,
draws the progress and writes the output where it was asked to go.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, TaskID

from emotrace.api import ADAPTIVE_SUFFIX, DEFAULT_MODEL, available_models, load_predictor
from emotrace.atomic import write_text_atomically
from emotrace.cli.console import fail, say
from emotrace.cli.engine import ActorsOption, AddressOption, Engine, EngineOption, check_engine_options
from emotrace.cli.options import FusionModelOption, ModelOption, VideoModelOption
from emotrace.errors import BatchReport, EmotraceError, InputError
from emotrace.features.precision import AUTO_PRECISION, PRECISIONS
from emotrace.inference.batch import (
    BatchProgress,
    batch_summary,
    expand_inputs,
    group_by_speaker,
    predict_batch,
    read_pairs,
)
from emotrace.inference.media import MediaPredictor
from emotrace.inference.predictions import check_min_confidence
from emotrace.inference.predictor import Predictor
from emotrace.inference.writers import OutputFormat, predictions_table, render
from emotrace.protocols import SPEAKER_ADAPTIVE, UTTERANCE_LEVEL

# the encoder's precision (emotrace serve runs "auto")
Precision = Enum("Precision", {name: name for name in (AUTO_PRECISION, *PRECISIONS)}, type=str)
PrecisionOption = Annotated[
    Precision,
    typer.Option(
        help="The encoder's arithmetic: auto is bfloat16 on a CPU that computes it natively (faster; "
        "99.4 % of the default model's labels unchanged), float32 elsewhere; float32 computes as training did.",
    ),
]


def predict(
    paths: Annotated[list[str], typer.Argument(help="Audio or video files, folders (searched recursively) and globs.")],
    model: ModelOption = None,
    video_model: VideoModelOption = None,
    fusion_model: FusionModelOption = None,
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
        typer.Option(
            help="Folder for PNGs: one per utterance (per model, and the audio-video comparison, for videos), "
            "a timeline per long recording.",
            file_okay=False,
        ),
    ] = None,
    min_confidence: Annotated[
        float | None,
        typer.Option(
            "--min-confidence",
            help="Label a prediction 'uncertain' when its top probability is below this (0 to 1); "
            "its probabilities are still given.",
        ),
    ] = None,
    speech_check: Annotated[
        bool,
        typer.Option(
            "--speech-check/--no-speech-check",
            help="Give a file up to 30 s without speech (a beep, silence, noise) a 'no speech' result, not an "
            "emotion; --no-speech-check predicts an emotion all the same (e.g. for synthetic test audio). "
            "A longer recording in which no speech segment is found is 'no speech' either way.",
        ),
    ] = True,
    precision: PrecisionOption = Precision.auto,
    engine: EngineOption = Engine.local,
    address: AddressOption = None,
    actors: ActorsOption = None,
    threads: Annotated[int, typer.Option(min=1, help="Threads per Ray actor. With --engine ray.")] = 1,
) -> None:
    """Emotion of each utterance: label, probabilities, regions of interest, dynamics, mixture.

    Files longer than 30 s are long recordings, cut into speech segments by voice activity:
    one prediction per segment, and a timeline.

    Videos: with --video-model (and --model, or --fusion-model) each gets the audio and the face
    video model's predictions, the fused one, and the regions of interest compared; a video
    without a face or without audio is predicted from what it has, and the output says so.

    Every output says which protocol ran: utterance-level, or speaker-adaptive with --adapt-speaker.

    A file up to 30 s in which voice activity detection finds no speech (a beep, silence,
    noise), and that has no transcript or usable face for the model to read instead, gets the
    label "no speech" and no probabilities: a result, not an error (see --no-speech-check). A
    longer recording in which voice activity finds no speech segment is "no speech" too,
    whatever --no-speech-check says.

    A bad file is reported and skipped; the exit code is 1 only when nothing could be predicted.

    With --engine ray the files are predicted on a Ray cluster into --output (json or parquet);
    a killed run, run again, predicts only the files it had not finished.
    """
    console = Console(stderr=True)
    check_engine_options(engine, address, actors)
    _check_output(engine, output_format, output, plot)
    if engine == Engine.ray and min_confidence is not None:
        raise typer.BadParameter("--min-confidence is not available with --engine ray")
    if engine == Engine.ray and not speech_check:
        raise typer.BadParameter("--no-speech-check is not available with --engine ray")
    if engine == Engine.ray and (video_model is not None or fusion_model is not None):
        raise typer.BadParameter("--video-model and --fusion-model are not available with --engine ray")
    if sum([text is not None, transcripts is not None, asr]) > 1:
        raise typer.BadParameter("give at most one of --text, --transcripts and --asr")
    if speakers is not None and not adapt_speaker:
        raise typer.BadParameter("--speakers needs --adapt-speaker")
    try:
        check_min_confidence(min_confidence, "--min-confidence")
    except ValueError as error:
        fail(console, EmotraceError(str(error)))
    try:
        predictor = load_predictor(
            model, video_model, fusion_model, asr=asr, speech_check=speech_check, precision=precision.value
        )
        _check_protocol(predictor, adapt_speaker, model or video_model or fusion_model or DEFAULT_MODEL)
        if engine == Engine.ray and not isinstance(predictor, Predictor):
            raise InputError(str(model), "is a model set, which --engine ray cannot run: use --engine local")
        texts = read_pairs(transcripts, "text") if transcripts else {}
        speaker_of = read_pairs(speakers, "speaker") if speakers else None
    except EmotraceError as error:
        fail(console, error)
    if (text is not None or texts) and not predictor.reads("text"):
        say(console, "note: this model reads no text; the transcripts are not used")

    report = BatchReport()
    if engine == Engine.ray:
        _predict_on_ray(
            model or DEFAULT_MODEL,
            paths,
            text,
            texts,
            asr,
            precision.value,
            adapt_speaker,
            speaker_of,
            output,
            output_format,
            report,
            console,
            address,
            actors,
            threads,
        )
        return
    try:  # a configuration problem (an extractor that cannot load) ends the run in one line
        with Progress(console=console) as bar:
            batch = predict_batch(
                predictor,
                paths,
                text=text,
                transcripts=texts,
                adapt_speaker=adapt_speaker,
                speakers=speaker_of,
                plot=plot,
                report=report,
                progress=_ProgressBar(bar),
                min_confidence=min_confidence,
            )
    except EmotraceError as error:
        fail(console, error)

    if batch.results:
        if output_format == OutputFormat.table and output is None:
            Console().print(predictions_table(batch.results))
        else:
            try:
                written = render(batch.results, report, predictor.labels, output_format)
            except EmotraceError as error:
                fail(console, error)
            if output is None:
                typer.echo(written, nl=False)
            else:
                write_text_atomically(output, written)
    say(console, batch.summary())
    if not batch.results:
        raise typer.Exit(1)


class _ProgressBar(BatchProgress):
    """A batch's progress as a Rich progress bar; notes and skips printed above it."""

    def __init__(self, bar: Progress):
        self.bar = bar
        self.task: TaskID = bar.add_task("finding files", total=None)

    def start(self, total: int) -> None:
        self.bar.update(self.task, description="predicting", total=total)

    def stage(self, description: str) -> None:
        self.bar.update(self.task, description=description)

    def advance(self, files: int = 1) -> None:
        self.bar.advance(self.task, files)

    def note(self, message: str) -> None:
        say(self.bar.console, message)

    def skipped(self, error: InputError) -> None:
        say(self.bar.console, f"skipped {error}", style="yellow")


def _check_output(engine: Engine, output_format: OutputFormat, output: Path | None, plot: Path | None) -> None:
    if engine == Engine.ray:
        if output_format not in (OutputFormat.json, OutputFormat.parquet) or output is None:
            raise typer.BadParameter("--engine ray writes --format json or parquet to an --output file")
        if plot is not None:
            raise typer.BadParameter("--plot is not available with --engine ray")
    elif output_format == OutputFormat.parquet:
        raise typer.BadParameter("--format parquet needs --engine ray")


def _predict_on_ray(
    model: str,
    paths: list[str],
    text: str | None,
    texts: dict[Path, str],
    asr: bool,
    precision: str,
    adapt_speaker: bool,
    speaker_of: dict[Path, str] | None,
    output: Path,
    output_format: OutputFormat,
    report: BatchReport,
    console: Console,
    address: str | None,
    actors: int | None,
    threads: int,
) -> None:
    """The files found as the local path finds them, predicted on a Ray cluster into ``output``."""
    from emotrace.distributed.predict import predict_files_on_ray

    files = expand_inputs(paths, report)
    notes = _Notes(console)
    groups = group_by_speaker(files, speaker_of, report, notes) if adapt_speaker else {None: files}
    no_speech: list[tuple[str, str]] = []
    try:
        count = predict_files_on_ray(
            model,
            groups,
            output,
            output_format=output_format.value,
            text=text,
            texts=texts,
            asr=asr,
            precision=precision,
            report=report,
            address=address,
            actors=actors,
            threads=threads,
            console=console,
            no_speech=no_speech,
        )
    except EmotraceError as error:
        fail(console, error)
    say(console, batch_summary(report, no_speech))
    if not count:
        raise typer.Exit(1)


class _Notes(BatchProgress):
    def __init__(self, console: Console):
        self.console = console

    def note(self, message: str) -> None:
        say(self.console, message)


def _check_protocol(predictor: MediaPredictor, adapt_speaker: bool, model: str) -> None:
    if adapt_speaker and SPEAKER_ADAPTIVE not in predictor.protocols:
        names = {info.name for info in available_models()}
        twins = ", ".join(name for name in sorted(names) if name + ADAPTIVE_SUFFIX in names)
        raise InputError(
            model,
            "has no speaker-adaptive variant, so --adapt-speaker cannot be used with it"
            + (f" (packaged models with one: {twins})" if twins else ""),
        )
    if not adapt_speaker and UTTERANCE_LEVEL not in predictor.protocols:
        raise InputError(model, "is speaker-adaptive: use --adapt-speaker with several recordings per speaker")
