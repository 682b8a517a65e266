"""``emotrace predict --engine ray``: batch prediction of many files on a Ray cluster.

A Ray Data pipeline lists the inputs that have no result yet and sends them to a pool of
actors, each holding the model (loaded once) and calling :meth:`Predictor.predict_file`, the
call the local path makes, so each file gets exactly the local prediction (with as many
threads). Each result is written as its own part (:mod:`emotrace.distributed.results`) and
the output assembled from the parts in input order: the same JSON document as the local
path, or Parquet. Under the speaker-adaptive protocol each speaker's moments are computed
first, one speaker per task of an actor pool, and shipped to the predicting actors.

Bad files are reported and skipped as on one machine. An actor that dies is restarted and its
batch retried; a restarted job predicts only the files without a part.
"""

from __future__ import annotations

import json
import math
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import Progress

from emotrace.api import ADAPTIVE_SUFFIX, load_model, resolve_model
from emotrace.distributed.cluster import (
    ActorPool,
    actor_pool,
    enter,
    quiet_data_context,
    ray_cluster,
    require_ray,
    working_directory,
)
from emotrace.distributed.results import Item, ResultParts, file_state, no_speech_notices, write_results
from emotrace.errors import BatchReport, InputError
from emotrace.features.precision import AUTO_PRECISION, resolve_precision
from emotrace.inference.predictor import SpeakerMoments

OUTPUT_FORMATS = ("json", "parquet")


def predict_files_on_ray(
    model: str,
    groups: Mapping[str | None, Sequence[Path]],
    output: Path,
    *,
    output_format: str = "json",
    text: str | None = None,
    texts: Mapping[Path, str] | None = None,
    asr: bool = False,
    precision: str = AUTO_PRECISION,
    report: BatchReport | None = None,
    address: str | None = None,
    actors: int | None = None,
    threads: int = 1,
    batch_size: int = 4,
    progress: bool = True,
    console: Console | None = None,
    no_speech: list[tuple[str, str]] | None = None,
) -> int:
    """Predict every file of ``groups`` into ``output``; returns how many results it holds.

    ``groups`` maps a speaker to their files (speaker-adaptive protocol) or None to all files
    (utterance-level). ``text`` is every file's transcript, else ``texts`` gives one per
    resolved path. ``precision`` is the encoder's (see :func:`emotrace.api.load_model`),
    resolved here once, so that every actor computes the output at the same one.
    ``batch_size`` files go to an actor at once. See
    :func:`~emotrace.distributed.extract.extract_corpus_on_ray` for ``address``, ``actors``
    and ``threads``. Results of a killed run in ``OUTPUT.parts/`` are kept and reused.
    ``no_speech``, when given, gets (source, notice) of each file without speech, for the summary.
    """
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output format {output_format!r} is not one of {OUTPUT_FORMATS}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    require_ray()  # before any part is written
    precision = resolve_precision(precision)
    report = report if report is not None else BatchReport()
    texts = texts or {}
    inputs = [(path, speaker) for speaker, paths in groups.items() for path in paths]
    items = [
        Item(index, str(path), text if text is not None else texts.get(path.resolve()), speaker)
        for index, (path, speaker) in enumerate(inputs)
    ]
    parts = ResultParts.for_job(output, prediction_job(model, asr, precision))
    pending = [item for item in items if not parts.finished(item)]
    if pending:
        with ray_cluster(address):
            quiet_data_context()
            pool = actor_pool(actors, threads)
            worker = {
                "directory": working_directory(),
                "threads": threads,
                "model": model,
                "asr": asr,
                "precision": precision,
            }
            with Progress(console=console, disable=not progress) as bar:
                outcomes = _speaker_moments(pending, items, worker, pool, bar)
                pending = _record_failed_speakers(pending, outcomes, parts)
                moments = {speaker: found for speaker, found in outcomes.items() if not isinstance(found, list)}
                _predict(pending, {**worker, "parts": str(parts.directory), "moments": moments}, pool, batch_size, bar)
    count = write_results(output, output_format, parts, items, report)
    if no_speech is not None:
        no_speech += no_speech_notices(parts, items)
    parts.remove()
    return count


def prediction_job(model: str, asr: bool, precision: str = AUTO_PRECISION) -> dict[str, Any]:
    """What makes two runs the same job, whose parts one may reuse from the other: the model,
    by name and by the size and modification time of its files (and of a packaged model's
    speaker-adaptive twin), whether ASR transcribes, and the encoder's precision (resolved:
    "auto" is the precision it stands for here)."""
    folder = resolve_model(model)
    files = [
        [str(path), path.stat().st_size, path.stat().st_mtime_ns]
        for directory in (folder, folder.parent / f"{folder.name}{ADAPTIVE_SUFFIX}")
        if directory.is_dir()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    ]
    return {"model": model, "model_files": files, "asr": asr, "precision": resolve_precision(precision)}


# --------------------------------------------------------------------------- speaker moments


def _speaker_moments(
    pending: list[Item], items: list[Item], worker: dict[str, Any], pool: ActorPool, bar: Progress
) -> dict[str, SpeakerMoments | list[InputError]]:
    """Each speaker's moments, or the errors that left none, for the speakers with files to
    predict; from all of that speaker's files, as on one machine."""
    import ray.data

    speakers = list(dict.fromkeys(item.speaker for item in pending if item.speaker is not None))
    if not speakers:
        return {}
    rows = []
    for speaker in speakers:
        group = [item for item in items if item.speaker == speaker]
        rows.append({"group": json.dumps([speaker, [item.path for item in group], [item.text for item in group]])})
    task = bar.add_task("speaker moments", total=len(rows))
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
        _MomentsWorker, batch_size=1, fn_constructor_kwargs=worker, **pool.remote_args(len(rows))
    )
    moments: dict[str, SpeakerMoments | list[InputError]] = {}
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        for speaker, outcome in zip(batch["speaker"], batch["outcome"]):
            found = pickle.loads(outcome)
            moments[str(speaker)] = [InputError(*error) for error in found] if isinstance(found, list) else found
            bar.advance(task)
    return moments


def _record_failed_speakers(
    pending: list[Item], moments: Mapping[str, SpeakerMoments | list[InputError]], parts: ResultParts
) -> list[Item]:
    """Record the files of speakers without moments as skipped (their first file holds why, as
    the local path reports it there); the files still to predict."""
    remaining, reported = [], set()
    for item in pending:
        outcome = moments.get(item.speaker) if item.speaker is not None else None
        if isinstance(outcome, list):
            parts.write(item, file_state(item.path), None, [] if item.speaker in reported else outcome)
            reported.add(item.speaker)
        else:
            remaining.append(item)
    return remaining


class _Worker:
    """An actor holding the model: in the driver's folder, with its threads."""

    def __init__(self, directory: str, threads: int, model: str, asr: bool, precision: str):
        enter(directory, threads)
        self.predictor = load_model(model, asr=asr, precision=precision)


class _MomentsWorker(_Worker):
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        speakers, outcomes = [], []
        for group in batch["group"]:
            speaker, paths, texts = json.loads(group)
            quiet = BatchReport()  # files that fail here fail again, and are reported, when predicted
            try:
                outcome: Any = self.predictor.speaker_moments_for(paths, texts, report=quiet)
            except InputError:
                outcome = [(error.source, error.problem) for error in quiet.skipped]
            speakers.append(speaker)
            outcomes.append(pickle.dumps(outcome))
        return {"speaker": np.asarray(speakers, object), "outcome": np.asarray(outcomes, object)}


# --------------------------------------------------------------------------- predictions


def _predict(items: list[Item], worker: dict[str, Any], pool: ActorPool, batch_size: int, bar: Progress) -> None:
    import ray.data

    task = bar.add_task("predicting", total=len(items))
    if not items:
        return
    rows = [{"item": json.dumps([item.index, item.path, item.text, item.speaker])} for item in items]
    blocks = math.ceil(len(rows) / batch_size)
    dataset = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
        _PredictWorker, batch_size=batch_size, fn_constructor_kwargs=worker, **pool.remote_args(blocks)
    )
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        bar.advance(task, len(batch["index"]))


class _PredictWorker(_Worker):
    """Predicts files and records each result as its part; a file whose part is there (a
    batch retried after an actor died midway) is not predicted again."""

    def __init__(
        self,
        directory: str,
        threads: int,
        model: str,
        asr: bool,
        precision: str,
        parts: str,
        moments: Mapping[str, SpeakerMoments],
    ):
        super().__init__(directory, threads, model, asr, precision)
        self.parts = ResultParts(Path(parts))
        self.moments = moments

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        indices = []
        for row in batch["item"]:
            item = Item(*json.loads(row))
            indices.append(item.index)
            if self.parts.finished(item):
                continue
            state = file_state(item.path)  # before reading: a file changed meanwhile makes a stale part
            report = BatchReport()
            moments = self.moments[item.speaker] if item.speaker is not None else None
            try:
                result = self.predictor.predict_file(item.path, item.text, speaker_moments=moments, report=report)
            except InputError as error:
                report.skip(error)
                result = None
            self.parts.write(item, state, None if result is None else result.to_dict(), report.skipped)
        return {"index": np.asarray(indices, np.int64)}
