"""Many files at once: find them, group them by speaker, predict each, skip and report the bad.

One loop serves ``emotrace predict`` and :func:`emotrace.api.predict_files`: files,
folders and globs become a list of files (:func:`expand_inputs`); under the
speaker-adaptive protocol they are grouped by speaker (:func:`group_by_speaker`) and each
speaker's moments are estimated from all of their recordings before any of them is
predicted. Whoever runs a batch watches it through a :class:`BatchProgress` (the command
line draws a progress bar with it). A file that cannot be predicted goes to the
:class:`~emotrace.errors.BatchReport` and the batch goes on.
"""

from __future__ import annotations

import csv
import glob
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emotrace.errors import BatchReport, InputError, printable
from emotrace.inference.media import READ_AHEAD, MediaPredictor, Piece
from emotrace.inference.predictions import NoSpeech, Result, check_min_confidence
from emotrace.inference.writers import predictions_document

#: what a folder is searched for (any file named explicitly is tried, whatever its name)
MEDIA_EXTENSIONS = frozenset(
    {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".wma", ".aif", ".aiff"}
    # video containers: their audio track, and their face video for models that read it
    | {".mp4", ".mkv", ".webm", ".mov", ".flv", ".avi", ".m4v", ".mpg", ".mpeg", ".wmv"}
)


class BatchProgress:
    """What a batch tells whoever runs it. Every method does nothing here: a caller
    overrides the ones it shows (the command line's progress bar, a log)."""

    def start(self, total: int) -> None:
        """``total`` files are about to be predicted."""

    def stage(self, description: str) -> None:
        """What the batch is doing now, e.g. which speaker's moments it estimates."""

    def advance(self, files: int = 1) -> None:
        """``files`` more files are finished, predicted or skipped."""

    def note(self, message: str) -> None:
        """A one-line remark that is not a failure (a speaker with one recording, no plot)."""

    def skipped(self, error: InputError) -> None:
        """A file (or a recording's segment) was skipped for ``error``."""


@dataclass
class BatchPredictions:
    """What a batch predicted, in input order (grouped by speaker under speaker adaptation),
    and what it skipped."""

    results: list[Result]
    report: BatchReport = field(default_factory=BatchReport)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document ``emotrace predict --format json`` writes."""
        return predictions_document(self.results, self.report)

    def summary(self) -> str:
        """The report's summary (files done and skipped), and a line per file without speech:
        done, but with no emotion to show."""
        silent = [(printable(r.source), r.describe()) for r in self.results if isinstance(r, NoSpeech)]
        return batch_summary(self.report, silent)


def batch_summary(report: BatchReport, no_speech: Iterable[tuple[str, str]]) -> str:
    """``report``'s summary and a line per file without speech, given as (source, notice), as
    :class:`BatchPredictions` and the Ray engine (from results' JSON) both print it."""
    return "\n".join([report.summary(), *(f"  {source}: {notice}" for source, notice in no_speech)])


def predict_batch(
    predictor: MediaPredictor,
    inputs: Sequence[str | Path],
    *,
    text: str | None = None,
    transcripts: Mapping[Path, str] | None = None,
    adapt_speaker: bool = False,
    speakers: Mapping[Path, str] | None = None,
    plot: Path | None = None,
    report: BatchReport | None = None,
    progress: BatchProgress | None = None,
    min_confidence: float | None = None,
) -> BatchPredictions:
    """Predict every file that ``inputs`` (files, folders searched recursively, globs) name.

    ``text`` is the transcript of every file, or ``transcripts`` one per file (keyed by
    resolved path). With ``adapt_speaker`` the speaker-adaptive model runs, each speaker
    normalised by all of their recordings; ``speakers`` (resolved path -> speaker) says
    who speaks, else the parent folder's name does. ``plot`` is a folder for the PNGs of
    each result, drawn from the audio the prediction decoded. ``predictor`` is one model's
    (:class:`~emotrace.inference.predictor.Predictor`) or audio and video models'
    (:class:`~emotrace.inference.audiovisual.AudioVisualPredictor`). ``min_confidence`` (None: the
    predictor's own) labels predictions less sure than it ``"uncertain"``. Bad inputs go to ``report``
    (a fresh non-strict one when None) and are skipped; a predictor without a model for
    the protocol asked is a ProtocolError before any file is read.
    """
    predictor.require_protocol(adaptive=adapt_speaker)
    check_min_confidence(min_confidence)
    report = BatchReport() if report is None else report
    progress = BatchProgress() if progress is None else progress
    files = expand_inputs(inputs, report)
    groups = group_by_speaker(files, speakers, report, progress) if adapt_speaker else {None: files}
    transcripts = transcripts or {}
    plot_names: set[str] = set()

    def skip(error: InputError) -> None:
        report.skip(error)
        progress.skipped(error)

    results: list[Result] = []
    progress.start(sum(len(group) for group in groups.values()))
    for speaker, group in groups.items():
        texts = [text if text is not None else transcripts.get(path.resolve()) for path in group]
        moments = None
        if speaker is not None:
            progress.stage(f"speaker {speaker}: moments")
            moments = _speaker_moments(predictor, group, texts, skip)
            if moments is None:
                progress.advance(len(group))
                continue
            progress.stage(f"speaker {speaker}: predicting")
        files = list(zip(group, texts))
        for first in range(0, len(files), READ_AHEAD):
            chunk = files[first : first + READ_AHEAD]
            for (path, path_text), ahead in zip(chunk, _read_ahead(predictor, chunk)):
                try:
                    result, waveform = predictor.predict_file_with_audio(
                        path, path_text, speaker_moments=moments, report=report, read_ahead=ahead
                    )
                except InputError as error:
                    skip(error)
                except Exception as error:  # one file's failure, whatever it is, must not end the batch
                    skip(unexpected(path, error))
                else:
                    report.done += 1
                    results.append(result if min_confidence is None else result.with_min_confidence(min_confidence))
                    if plot is not None and not _plot(result, path, plot, predictor.labels, plot_names, waveform):
                        progress.note(f"no plot for {path}: {_no_plot_reason(result, waveform)}")
                progress.advance()
    return BatchPredictions(results, report)


def _read_ahead(predictor: MediaPredictor, files: list[tuple[Path, str | None]]) -> list[Piece | None]:
    """:meth:`~emotrace.inference.media.MediaPredictor.read_ahead`, or nothing read ahead when it
    fails in a way no check foresaw: each file is then read, and fails, on its own."""
    try:
        return predictor.read_ahead(files)
    except Exception:
        return [None] * len(files)


def _no_plot_reason(result: Result, waveform: Any) -> str:
    if isinstance(result, NoSpeech):
        return "no speech"
    return "no frame-level dynamics" if waveform is not None else "no audio to draw them over"


def unexpected(source: str | Path, error: BaseException) -> InputError:
    """An error no check foresaw (MemoryError, a decoder's bug) as one file's one-line problem."""
    return InputError(source, f"{type(error).__name__}: {error}" if str(error) else type(error).__name__)


def expand_inputs(patterns: Sequence[str | Path], report: BatchReport) -> list[Path]:
    """Files named, found in folders (recursively, by audio and video extension) or matched by globs,
    in order and without repeats; a pattern that yields nothing goes to ``report``."""
    files: list[Path] = []
    for pattern in map(str, patterns):
        path = Path(pattern)
        if path.is_dir():
            found = _media_files(path)
            problem = f"folder holds no audio or video files ({', '.join(sorted(MEDIA_EXTENSIONS))})"
        elif path.exists():
            found, problem = [path], ""
        elif glob.has_magic(pattern):
            matches = [Path(match) for match in sorted(glob.glob(pattern, recursive=True))]
            found = [f for m in matches for f in (_media_files(m) if m.is_dir() else [m])]
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


def group_by_speaker(
    files: Sequence[Path],
    speakers: Mapping[Path, str] | None,
    report: BatchReport,
    progress: BatchProgress | None = None,
) -> dict[str, list[Path]]:
    """The files of each speaker, in order: ``speakers`` maps resolved paths to speakers
    (a file it lacks goes to ``report``); without it, a file's speaker is its folder's name.
    Speakers with a single recording get a note: their moments are weak."""
    groups: dict[str, list[Path]] = defaultdict(list)
    for path in files:
        speaker = speakers.get(path.resolve()) if speakers else path.resolve().parent.name
        if speaker is None:
            report.skip(InputError(path, "has no speaker in the --speakers file (or speakers mapping)"))
        else:
            groups[speaker].append(path)
    lone = sorted(speaker for speaker, group in groups.items() if len(group) == 1)
    if lone and progress is not None:
        progress.note(f"note: speakers with one recording have weak speaker moments: {', '.join(lone)}")
    return dict(groups)


def read_pairs(path: Path, field: str) -> dict[Path, str]:
    """``{resolved audio path: field}`` from a CSV or JSONL file of ``path`` and ``field``
    columns (transcripts, speakers); relative audio paths are relative to the file's folder."""
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


def _media_files(folder: Path) -> list[Path]:
    return sorted(
        path
        for path in folder.rglob("*")
        if path.suffix.lower() in MEDIA_EXTENSIONS and path.is_file() and not path.name.startswith(".")
    )


def _speaker_moments(
    predictor: MediaPredictor, group: list[Path], texts: list[str | None], skip: Callable[[InputError], None]
) -> Any:
    """The speaker's moments; None when none of the files could be read (each then skipped
    with its own problem). Files that fail here fail again, and are reported, when predicted."""
    quiet = BatchReport()
    try:
        return predictor.speaker_moments_for(group, texts, report=quiet)
    except InputError:
        for error in quiet.skipped:
            skip(error)
        return None
    except Exception as error:  # the speaker's files are skipped, the batch goes on
        for path in group:
            skip(unexpected(path, error))
        return None


def _plot(
    result: Result, path: Path, folder: Path, labels: tuple[str, ...], names: set[str], waveform: Any
) -> list[Path]:
    """The batch's plots; matplotlib is imported only when plots are asked for, so the service
    and the API load none."""
    from emotrace.inference.plots import write_plots

    return write_plots(result, path, folder, labels, names, waveform)
