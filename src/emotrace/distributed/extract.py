"""``emotrace extract --engine ray``: the extraction of :mod:`emotrace.features.pipeline`,
computed on a Ray cluster.

The driver keeps the bookkeeping of the single-machine run (:class:`ExtractionRun`: what is
cached or copied, the counts, the report), so both engines decide and report alike; only
its three compute steps move onto the cluster, as Ray Data pipelines:

* hashing: the audio files' content keys, in tasks (each a batch of files);
* audio: list -> decode (tasks) -> extract and store (a pool of actors, each loading every
  audio extractor, and Whisper for ASR, once) -> per-item outcomes back to the driver;
* text: list -> extract and store (a pool of actors per text extractor).

Actors write straight into the feature stores, each batch one shard published by an atomic
rename, as the local path does (a store takes several writer processes). So an entry is
either whole or absent, a restarted job computes only what the stores lack, an actor that
dies is restarted and its unfinished batch retried (Ray Data's actor restarts and task
retries), and an entry written twice (a batch retried after its shard was published) is
one entry after the compaction that ends the run. Bad inputs come back as outcomes and are
reported and skipped by the driver, as on one machine.

Every node must see the audio files and the store folder at the same paths (a shared file
system whose locks work, see :mod:`emotrace.features.store`), and have emotrace installed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import TaskID

from emotrace.corpora.records import Utterance
from emotrace.distributed.cluster import (
    ActorPool,
    actor_pool,
    enter,
    quiet_data_context,
    ray_cluster,
    working_directory,
)
from emotrace.errors import BatchReport, InputError
from emotrace.features.asr import WhisperASR
from emotrace.features.base import Extractor
from emotrace.features.keys import text_key
from emotrace.features.pipeline import ExtractionRun, ExtractionSummary, extract_corpus, resolve_extractor
from emotrace.features.store import FeatureStore
from emotrace.features.storing import (
    audio_key_or_error,
    load_or_error,
    store_audio_features,
    store_text_features,
    store_transcripts,
)
from emotrace.features.transcripts import TranscriptStore

#: ``job`` of an outcome that is not an extractor's: the decoding failed, or ASR transcribed
DECODING, TRANSCRIPTION = -1, -2
#: files hashed per task
HASH_BATCH = 64
Outcome = tuple[int, int, str, str]  # (item index, job, error source, error problem; "" when done)


def extract_corpus_on_ray(
    utterances: Sequence[Utterance],
    extractors: Sequence[str | Extractor],
    store_dir: str | Path,
    *,
    address: str | None = None,
    actors: int | None = None,
    threads: int = 1,
    batch_size: int = 8,
    asr: WhisperASR | None = None,
    report: BatchReport | None = None,
    progress: bool = True,
    console: Console | None = None,
) -> ExtractionSummary:
    """:func:`~emotrace.features.pipeline.extract_corpus` with its computing on a Ray cluster.

    ``address`` joins a running cluster (None: a local one on this machine). ``actors``
    model-holding actors run (default: enough to fill the cluster), each with ``threads``
    threads (and CPUs). ``batch_size`` inputs go through an
    extractor at once and are written as one shard. Extractors are best given as registry
    specs: each actor builds its own. With ``--strict`` the first bad input raises once the
    distributed step that met it has finished.
    """
    store_dir = Path(store_dir).resolve()
    with ray_cluster(address):
        quiet_data_context()
        make_run = partial(
            RayExtractionRun, specs=list(extractors), pool=actor_pool(actors, threads), store_dir=store_dir
        )
        return extract_corpus(
            utterances,
            extractors,
            store_dir,
            batch_size=batch_size,
            asr=asr,
            report=report,
            progress=progress,
            console=console,
            make_run=make_run,
        )


class RayExtractionRun(ExtractionRun):
    """An :class:`ExtractionRun` whose hashing, audio and text steps run on the Ray cluster."""

    def __init__(self, jobs: list[Any], *args: Any, specs: list[str | Extractor], pool: ActorPool, store_dir: Path):
        super().__init__(jobs, *args)
        spec_of = {id(job): spec for job, spec in zip(jobs, specs)}
        self.audio_specs = [spec_of[id(job)] for job in self.audio_jobs]
        self.text_specs = {id(job): spec_of[id(job)] for job in self.text_jobs}
        self.actors = pool
        self.store_dir = store_dir

    def _keys(self, utterances: list[Utterance], task: TaskID) -> Iterator[str | InputError]:
        import ray.data

        if not utterances:
            return
        rows = [_row(index, utterance) for index, utterance in enumerate(utterances)]
        dataset = ray.data.from_items(rows, override_num_blocks=math.ceil(len(rows) / HASH_BATCH))
        keys: list[str | InputError | None] = [None] * len(rows)
        for batch in dataset.map_batches(_hash, batch_size=HASH_BATCH).iter_batches(
            batch_size=None, batch_format="numpy"
        ):
            columns = _columns(batch, "key", "source", "problem")
            for index, key, source, problem in zip(batch["index"].tolist(), *columns):
                keys[index] = InputError(source, problem) if problem else key
            self.bar.advance(task, len(batch["index"]))
        yield from keys  # type: ignore[misc]  (every index came back)

    def _compute_audio(self, pending: list[Any], task: TaskID) -> None:
        import ray.data

        if not pending:
            return
        positions = {id(job): position for position, job in enumerate(self.audio_jobs)}
        rows = []
        for index, item in enumerate(pending):
            needs = [positions[id(job)] for job in item.jobs] + ([TRANSCRIPTION] if item.transcribe else [])
            rows.append({**_row(index, item.utterance), "key": item.key, "needs": _encode(needs)})
        asr = self.asr_job.asr if self.asr_job is not None else None
        worker = {
            "directory": working_directory(),
            "threads": self.actors.threads,
            "store_dir": str(self.store_dir),
            "specs": self.audio_specs,
            "asr": asr,
        }
        blocks = math.ceil(len(rows) / self.batch_size)
        dataset = (
            ray.data.from_items(rows, override_num_blocks=blocks)
            .map_batches(_decode, batch_size=self.batch_size)
            .map_batches(
                _AudioWorker,
                batch_size=self.batch_size,
                fn_constructor_kwargs=worker,
                **self.actors.remote_args(blocks),
            )
        )
        for index, job, source, problem in self._outcomes(dataset, task):
            utterance = pending[index].utterance
            if job == DECODING:
                self.skip(InputError(source, problem), utterance, self._audio_counts(utterance))
            elif job == TRANSCRIPTION:
                self.asr_job.count.computed += 1
            else:
                self._count(self.audio_jobs[job], [utterance], [InputError(source, problem) if problem else None])
        if self.asr_job is not None:
            self.asr_job.store.refresh()  # the actors wrote the transcripts the text step reads

    def _compute_text(self, job: Any, todo: list[tuple[Utterance, str]], task: TaskID) -> None:
        import ray.data

        if not todo:
            return
        rows = [{"index": index, "id": utterance.id, "text": text} for index, (utterance, text) in enumerate(todo)]
        worker = {
            "directory": working_directory(),
            "threads": self.actors.threads,
            "store_dir": str(self.store_dir),
            "spec": self.text_specs[id(job)],
        }
        blocks = math.ceil(len(rows) / self.batch_size)
        dataset = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
            _TextWorker, batch_size=self.batch_size, fn_constructor_kwargs=worker, **self.actors.remote_args(blocks)
        )
        for index, _, source, problem in self._outcomes(dataset, task):
            self._count(job, [todo[index][0]], [InputError(source, problem) if problem else None])

    def _outcomes(self, dataset: Any, task: TaskID) -> list[Outcome]:
        """Every outcome of ``dataset``, advancing the bar as items finish; in input order (an
        item's outcomes in job order) so that the report lists skipped inputs as they come."""
        outcomes: list[Outcome] = []
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            indices = batch["index"].tolist()
            outcomes += zip(indices, batch["job"].tolist(), batch["source"].tolist(), batch["problem"].tolist())
            self.bar.advance(task, len(set(indices)))
        return sorted(outcomes, key=lambda outcome: outcome[0])


# --------------------------------------------------------------------------- rows


def _row(index: int, utterance: Utterance) -> dict[str, Any]:
    """What a worker needs of an utterance, as Arrow-friendly columns (NaN: no segment bound);
    the path absolute, as workers need not share the driver's folder (reports name the
    utterance as the driver knows it)."""
    return {
        "index": index,
        "id": utterance.id,
        "audio": os.path.abspath(utterance.audio) if utterance.audio else "",
        "start": math.nan if utterance.start is None else utterance.start,
        "end": math.nan if utterance.end is None else utterance.end,
    }


def _utterance(batch: dict[str, np.ndarray], row: int) -> Utterance:
    start, end = float(batch["start"][row]), float(batch["end"][row])
    return Utterance(
        id=str(batch["id"][row]),
        audio=str(batch["audio"][row]) or None,
        label=None,
        speaker="",
        start=None if math.isnan(start) else start,
        end=None if math.isnan(end) else end,
    )


def _columns(batch: dict[str, np.ndarray], *names: str) -> list[list[str]]:
    return [[str(value) for value in batch[name]] for name in names]


def _encode(jobs: list[int]) -> str:
    return ";".join(str(job) for job in jobs)


def _decode_jobs(needs: str) -> list[int]:
    return [int(job) for job in needs.split(";") if job]


class _Outcomes:
    """The columns a worker returns: one row per item and job."""

    def __init__(self) -> None:
        self.rows: list[Outcome] = []

    def add(self, index: int, job: int, error: InputError | None = None) -> None:
        self.rows.append((index, job, error.source if error else "", error.problem if error else ""))

    def columns(self) -> dict[str, np.ndarray]:
        index, job, source, problem = zip(*self.rows) if self.rows else ((), (), (), ())
        return {
            "index": np.asarray(index, np.int64),
            "job": np.asarray(job, np.int64),
            "source": np.asarray(source, object),
            "problem": np.asarray(problem, object),
        }


# --------------------------------------------------------------------------- stages


def _hash(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Content keys of a batch of files (or, in ``problem``, why one cannot be read)."""
    keys, sources, problems = [], [], []
    for row in range(len(batch["index"])):
        outcome = audio_key_or_error(_utterance(batch, row))
        failed = isinstance(outcome, InputError)
        keys.append("" if failed else outcome)
        sources.append(outcome.source if failed else "")
        problems.append(outcome.problem if failed else "")
    return {
        "index": batch["index"],
        "key": np.asarray(keys, object),
        "source": np.asarray(sources, object),
        "problem": np.asarray(problems, object),
    }


def _decode(batch: dict[str, np.ndarray]) -> dict[str, Any]:
    """The batch with each utterance's waveform, or why it cannot be decoded."""
    waveforms, sources, problems = [], [], []
    for row in range(len(batch["index"])):
        outcome = load_or_error(_utterance(batch, row))
        failed = isinstance(outcome, InputError)
        waveforms.append(np.zeros(0, np.float32) if failed else outcome)
        sources.append(outcome.source if failed else "")
        problems.append(outcome.problem if failed else "")
    return {
        **batch,
        "waveform": waveforms,
        "source": np.asarray(sources, object),
        "problem": np.asarray(problems, object),
    }


class _Worker:
    """An actor's start: the driver's folder, its threads; then ``__call__`` per batch."""

    def __init__(self, directory: str, threads: int):
        enter(directory, threads)


class _AudioWorker(_Worker):
    """Holds every audio extractor (and Whisper) of the run; extracts and stores batches.

    It skips what the store already holds from this very input: a batch an earlier actor
    stored before dying, retried here, is not computed twice.
    """

    def __init__(
        self, directory: str, threads: int, store_dir: str, specs: list[str | Extractor], asr: WhisperASR | None
    ):
        super().__init__(directory, threads)
        self.jobs = []
        for spec in specs:
            extractor = resolve_extractor(spec)
            self.jobs.append(
                (extractor, FeatureStore.open(store_dir, extractor.name, extractor.config(), extractor.version))
            )
        self.asr, self.transcripts = asr, None
        if asr is not None:
            asr.cpu_threads = threads
            self.transcripts = TranscriptStore.open(store_dir, asr.config())

    def __call__(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        outcomes = _Outcomes()
        indices = batch["index"].tolist()
        ids, keys, needs, sources, problems = _columns(batch, "id", "key", "needs", "source", "problem")
        wanted: dict[int, list[int]] = {}  # row -> jobs
        for row, index in enumerate(indices):
            if problems[row]:
                outcomes.add(index, DECODING, InputError(sources[row], problems[row]))
            else:
                wanted[row] = _decode_jobs(needs[row])
        for job, (extractor, store) in enumerate(self.jobs):
            rows = [row for row, jobs in wanted.items() if job in jobs]
            fresh = [row for row in rows if not store.has(ids[row], keys[row])]
            inputs = [(ids[row], keys[row], batch["waveform"][row]) for row in fresh]
            errors = store_audio_features(extractor, store, inputs)
            failed = dict(zip(fresh, errors))
            for row in rows:
                outcomes.add(indices[row], job, failed.get(row))
        rows = [row for row, jobs in wanted.items() if TRANSCRIPTION in jobs]
        if self.transcripts is not None:
            fresh = [row for row in rows if not self.transcripts.has(ids[row], keys[row])]
            inputs = [(ids[row], keys[row], batch["waveform"][row]) for row in fresh]
            store_transcripts(self.asr, self.transcripts, inputs)
        for row in rows:
            outcomes.add(indices[row], TRANSCRIPTION)
        return outcomes.columns()


class _TextWorker(_Worker):
    """Holds one text extractor; extracts and stores batches of texts it has not stored yet."""

    def __init__(self, directory: str, threads: int, store_dir: str, spec: str | Extractor):
        super().__init__(directory, threads)
        self.extractor = resolve_extractor(spec)
        self.store = FeatureStore.open(store_dir, self.extractor.name, self.extractor.config(), self.extractor.version)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outcomes = _Outcomes()
        items = list(zip(batch["index"].tolist(), *_columns(batch, "id", "text")))
        fresh = [(index, utt_id, text) for index, utt_id, text in items if not self.store.has(utt_id, text_key(text))]
        errors = store_text_features(self.extractor, self.store, [(utt_id, text) for _, utt_id, text in fresh])
        failed = dict(zip((index for index, _, _ in fresh), errors))
        for index, _, _ in items:
            outcomes.add(index, 0, failed.get(index))
        return outcomes.columns()
