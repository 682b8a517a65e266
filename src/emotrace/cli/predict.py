"""``emotrace predict``: emotions of files, folders and globs, with a progress bar.

The work is :func:`emotrace.inference.batch.predict_batch`; this module reads the options,
draws the progress and writes the output where it was asked to go.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, TaskID

from emotrace.api import DEFAULT_MODEL, load_predictor
from emotrace.atomic import write_text_atomically
from emotrace.cli.console import fail, say
from emotrace.errors import BatchReport, EmotraceError, InputError
from emotrace.inference.batch import BatchProgress, predict_batch, read_pairs
from emotrace.inference.media import MediaPredictor
from emotrace.inference.writers import OutputFormat, predictions_table, render
from emotrace.protocols import SPEAKER_ADAPTIVE, UTTERANCE_LEVEL


def predict(
    paths: Annotated[
        list[str], typer.Argument(help="Audio or video files, folders (searched recursively) and globs.")
    ],
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m",
            help="Packaged model name, checkpoint folder, training run folder, or a model set (a folder of "
            f"audio/, video/, fusion/ models) [default: {DEFAULT_MODEL}, unless --video-model or "
            "--fusion-model is given: then the audio model, if any].",
            show_default=False,
        ),
    ] = None,
    video_model: Annotated[
        str | None,
        typer.Option(
            "--video-model",
            help="A face-video model (name or folder): videos get the audio, the video and the fused "
            "prediction, and where the audio and video attention agree.",
        ),
    ] = None,
    fusion_model: Annotated[
        str | None,
        typer.Option(
            "--fusion-model",
            help="A model reading audio and video (method B) that fuses them; without it, --model and "
            "--video-model are fused late (product of their posteriors, renormalised).",
        ),
    ] = None,
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
) -> None:
    """Emotion of each utterance: label, probabilities, regions of interest, dynamics, mixture.

    Files longer than 30 s are long recordings, cut into speech segments by voice activity:
    one prediction per segment, and a timeline.

    Videos: with --video-model (and --model, or --fusion-model) each gets the audio and the face
    video model's predictions, the fused one, and the regions of interest compared; a video
    without a face or without audio is predicted from what it has, and the output says so.

    Every output says which protocol ran: utterance-level, or speaker-adaptive with --adapt-speaker.

    A bad file is reported and skipped; the exit code is 1 only when nothing could be predicted.
    """
    console = Console(stderr=True)
    if sum([text is not None, transcripts is not None, asr]) > 1:
        raise typer.BadParameter("give at most one of --text, --transcripts and --asr")
    if speakers is not None and not adapt_speaker:
        raise typer.BadParameter("--speakers needs --adapt-speaker")
    try:
        predictor = load_predictor(model, video_model, fusion_model, asr=asr)
        _check_protocol(predictor, adapt_speaker, model or video_model or fusion_model or DEFAULT_MODEL)
        texts = read_pairs(transcripts, "text") if transcripts else {}
        speaker_of = read_pairs(speakers, "speaker") if speakers else None
    except EmotraceError as error:
        fail(console, error)
    if (text is not None or texts) and not predictor.reads("text"):
        say(console, "note: this model reads no text; the transcripts are not used")

    report = BatchReport()
    try:  # a configuration problem (an extractor that cannot load) ends the run in one line
        with Progress(console=console) as bar:
            batch = predict_batch(
                predictor, paths, text=text, transcripts=texts, adapt_speaker=adapt_speaker, speakers=speaker_of,
                plot=plot, report=report, progress=_ProgressBar(bar),
            )
    except EmotraceError as error:
        fail(console, error)

    if batch.results:
        if output_format == OutputFormat.table and output is None:
            Console().print(predictions_table(batch.results))
        else:
            written = render(batch.results, report, predictor.labels, output_format)
            if output is None:
                typer.echo(written, nl=False)
            else:
                write_text_atomically(output, written)
    say(console, report.summary())
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


def _check_protocol(predictor: MediaPredictor, adapt_speaker: bool, model: str) -> None:
    if adapt_speaker and SPEAKER_ADAPTIVE not in predictor.protocols:
        raise InputError(model, "has no speaker-adaptive variant, so --adapt-speaker cannot be used with it")
    if not adapt_speaker and UTTERANCE_LEVEL not in predictor.protocols:
        raise InputError(model, "is speaker-adaptive: use --adapt-speaker with several recordings per speaker")
