"""Extract the features of a whole corpus into feature stores: parallel, resumable, cached.

Audio is decoded in a thread pool (the decoders are C libraries called without the GIL)
a couple of batches ahead of the model, the main time saved on a small CPU. Each input is
decoded once for all audio extractors and ASR. Video extractors decode each utterance's
video (or its segment) themselves, keyed by the video file's content. Entries already in a
store under the same input key are skipped, so a rerun reads and hashes the files but
computes nothing, and every batch is written as soon as it is done, so a killed run loses
at most one batch.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from emotrace.corpora.records import Utterance
from emotrace.errors import BatchReport, InputError
from emotrace.features.asr import WhisperASR
from emotrace.features.base import Extractor, Features
from emotrace.features.isolation import extract_isolated, skipped_input
from emotrace.features.keys import text_key
from emotrace.features.store import META_FILE, Entry, FeatureStore, read_store_meta
from emotrace.features.storing import (
    audio_key_or_error,
    load_or_error,
    store_audio_features,
    store_text_features,
    store_transcripts,
    video_key_or_error,
)
from emotrace.features.transcripts import TranscriptStore
from emotrace.features.video.reader import VideoClip

Item = TypeVar("Item")


@dataclass
class StoreCount:
    """What one run did for one store."""

    store: str
    extractor: str
    computed: int = 0
    cached: int = 0
    skipped: int = 0

    def line(self) -> str:
        return f"{self.store}: {self.computed} computed, {self.cached} cached, {self.skipped} skipped"


@dataclass
class ExtractionSummary:
    """Counts per store (transcripts included), the skipped inputs and the wall time."""

    stores: list[StoreCount]
    report: BatchReport
    seconds: float = 0.0

    def text(self) -> str:
        lines = [count.line() for count in self.stores]
        return "\n".join([*lines, self.report.summary(), f"{self.seconds:.1f} s"])


@dataclass
class _Job:
    """One extractor with its store and counts."""

    extractor: Extractor
    store: FeatureStore
    count: StoreCount
    copies: list[tuple[str, str]] = field(default_factory=list)  # (id, id of the same input), to copy
    copied: int = 0


@dataclass
class _AsrJob:
    """ASR with its transcript store and counts."""

    asr: WhisperASR
    store: TranscriptStore
    count: StoreCount


@dataclass
class _AudioItem:
    """An utterance whose audio some audio job (or ASR) still needs."""

    utterance: Utterance
    key: str
    jobs: list[_Job]
    transcribe: bool
    waveform: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))


def resolve_extractor(spec: str | Extractor) -> Extractor:
    """An extractor from a registry spec (``"whisper-base:layers=3,4"``) or as given."""
    if isinstance(spec, Extractor):
        return spec
    # imported on use: the registry pulls in the model libraries
    from emotrace.features.registry import get_extractor

    return get_extractor(spec)


def extract_corpus(
    utterances: Sequence[Utterance],
    extractors: Sequence[str | Extractor],
    store_dir: str | Path,
    *,
    batch_size: int = 8,
    workers: int = 2,
    asr: WhisperASR | None = None,
    report: BatchReport | None = None,
    progress: bool = True,
    threads: int | None = None,
    console: Console | None = None,
    make_run: Callable[..., ExtractionRun] | None = None,
) -> ExtractionSummary:
    """Fill one store per extractor under ``store_dir`` with the features of ``utterances``.

    ``workers`` threads decode audio ahead of the model; ``batch_size`` inputs go through
    an extractor at once and are written as one shard. With ``asr``, utterances without a
    transcript are transcribed (stored under ``store_dir`` too) and text extractors read
    those transcripts. ``threads`` sets torch's intra-op threads (default: torch's own,
    one per physical core). Bad inputs are recorded in ``report`` (or raised when strict).
    ``make_run`` builds the :class:`ExtractionRun` that does the computing (default: this
    process; :mod:`emotrace.distributed.extract` passes one that runs on a Ray cluster).
    """
    if batch_size < 1 or workers < 1:
        raise ValueError(f"batch_size and workers must be at least 1, got {batch_size} and {workers}")
    if threads:
        import torch

        torch.set_num_threads(threads)
    started = time.perf_counter()
    report = report if report is not None else BatchReport()
    jobs = []
    for spec in extractors:
        extractor = resolve_extractor(spec)
        store = FeatureStore.open(store_dir, extractor.name, extractor.config(), extractor.version)
        jobs.append(_Job(extractor, store, StoreCount(store.directory.name, extractor.name)))
    asr_job = None
    if asr is not None:
        transcripts = TranscriptStore.open(store_dir, asr.config())
        asr_job = _AsrJob(asr, transcripts, StoreCount(transcripts.directory.name, "asr"))
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, disable=not progress) as bar, ThreadPoolExecutor(workers) as pool:
        run = (make_run or ExtractionRun)(jobs, asr_job, report, bar, pool, batch_size)
        run.audio_phase(utterances)
        run.text_phase(utterances)
        run.video_phase(utterances)
        for job in jobs:
            if job.count.computed or job.copied:  # merge this run's shards into one file
                task = bar.add_task(f"compacting {job.store.directory.name}", total=1)
                job.store.compact()
                bar.advance(task)
            job.store.close()
    report.done += len(utterances) - len(run.failed)
    counts = [job.count for job in jobs] + ([asr_job.count] if asr_job else [])
    return ExtractionSummary(counts, report, time.perf_counter() - started)


def open_stores(root: str | Path) -> list[FeatureStore | TranscriptStore]:
    """Every store folder directly under ``root`` (a ``--store`` folder), by folder name."""
    stores: list[FeatureStore | TranscriptStore] = []
    for directory in sorted(Path(root).iterdir()):
        if not (directory / META_FILE).is_file():
            continue
        kind = read_store_meta(directory).kind
        stores.append(FeatureStore.at(directory) if kind == "features" else TranscriptStore.at(directory))
    return stores


class ExtractionRun:
    """The state of one extraction: jobs, counts, the utterances that failed.

    It decides what is cached, counts and reports; three steps do the computing, in this
    process here: :meth:`_keys` (hashing), :meth:`_compute_audio` and :meth:`_compute_text`
    (extracting and storing). A subclass may run those steps elsewhere and keep the rest.
    """

    def __init__(
        self,
        jobs: list[_Job],
        asr_job: _AsrJob | None,
        report: BatchReport,
        bar: Progress,
        pool: ThreadPoolExecutor,
        batch_size: int,
    ):
        self.audio_jobs = [job for job in jobs if job.extractor.modality == "audio"]
        self.text_jobs = [job for job in jobs if job.extractor.modality == "text"]
        self.video_jobs = [job for job in jobs if job.extractor.modality == "video"]
        self.asr_job = asr_job
        self.report = report
        self.bar = bar
        self.pool = pool
        self.batch_size = batch_size
        self.keys: dict[str, str] = {}  # utterance id -> audio key
        self.failed: set[str] = set()

    def skip(self, error: InputError, utterance: Utterance, counts: Iterable[StoreCount]) -> None:
        """Count a failed input against ``counts``; report each utterance once, by its id and
        file (an extractor's own error knows only its position in the batch)."""
        for count in counts:
            count.skipped += 1
        if utterance.id not in self.failed:
            self.failed.add(utterance.id)
            self.report.skip(skipped_input(error, utterance))

    def _asr_for(self, utterance: Utterance) -> _AsrJob | None:
        """The ASR job if ``utterance`` needs one (ASR requested, no transcript given)."""
        return None if utterance.transcript else self.asr_job

    def _audio_counts(self, utterance: Utterance) -> list[StoreCount]:
        asr_job = self._asr_for(utterance)
        return [job.count for job in self.audio_jobs] + ([asr_job.count] if asr_job else [])

    # ----------------------------------------------------------------- audio

    def audio_phase(self, utterances: Sequence[Utterance]) -> None:
        """Hash, then decode (ahead, in the pool) and extract what the stores lack."""
        wanted = [utterance for utterance in utterances if self.audio_jobs or self._asr_for(utterance)]
        task = self.bar.add_task("hashing audio", total=len(wanted))
        for utterance, outcome in zip(wanted, self._keys(wanted, task)):
            if isinstance(outcome, InputError):
                self.skip(outcome, utterance, self._audio_counts(utterance))
            else:
                self.keys[utterance.id] = outcome

        pending = [item for utterance in wanted if (item := self._audio_item(utterance)) is not None]
        for job in self.audio_jobs:
            self._flush_copies(job)
        self._compute_audio(pending, self.bar.add_task("audio features", total=len(pending)))

    def _keys(self, utterances: list[Utterance], task: TaskID) -> Iterator[str | InputError]:
        """The content key of each utterance's audio, or why it cannot be read, in order."""
        for outcome in self.pool.map(audio_key_or_error, utterances):
            yield outcome
            self.bar.advance(task)

    def load(self, utterance: Utterance) -> np.ndarray | InputError:
        """An utterance's waveform, or why it cannot be decoded (called in the pool's threads)."""
        return load_or_error(utterance)

    def _compute_audio(self, pending: list[_AudioItem], task: TaskID) -> None:
        """Decode (ahead, in the pool), extract and store what ``pending`` needs; count it."""
        for batch in _batches(_decoded(pending, self.pool, 2 * self.batch_size, self.load), self.batch_size):
            loaded = []
            for item, outcome in batch:
                if isinstance(outcome, InputError):
                    self.skip(outcome, item.utterance, self._audio_counts(item.utterance))
                else:
                    item.waveform = outcome
                    loaded.append(item)
            for job in self.audio_jobs:
                self._extract_audio(job, [item for item in loaded if job in item.jobs])
            self._transcribe([item for item in loaded if item.transcribe])
            self.bar.advance(task, len(batch))

    def _audio_item(self, utterance: Utterance) -> _AudioItem | None:
        """What ``utterance`` still needs from its audio (None: nothing); counts cache hits."""
        key = self.keys.get(utterance.id)
        if key is None:
            return None
        todo = []
        for job in self.audio_jobs:
            if not self._cached(job, utterance.id, key):
                todo.append(job)
        transcribe = False
        asr_job = self._asr_for(utterance)
        if asr_job is not None:
            transcribe = not asr_job.store.has(utterance.id, key)
            asr_job.count.cached += not transcribe
        return _AudioItem(utterance, key, todo, transcribe) if todo or transcribe else None

    def _extract_audio(self, job: _Job, items: list[_AudioItem]) -> None:
        batch = [(item.utterance.id, item.key, item.waveform) for item in items]
        self._count(job, [item.utterance for item in items], store_audio_features(job.extractor, job.store, batch))

    def _transcribe(self, items: list[_AudioItem]) -> None:
        if self.asr_job is None or not items:
            return
        store_transcripts(self.asr_job.asr, self.asr_job.store, [(i.utterance.id, i.key, i.waveform) for i in items])
        self.asr_job.count.computed += len(items)

    # ----------------------------------------------------------------- text

    def text_phase(self, utterances: Sequence[Utterance]) -> None:
        """Extract text features from each utterance's transcript, or else its ASR transcript."""
        if not self.text_jobs:
            return
        texts = {}
        for utterance in utterances:
            text = self._text(utterance)
            if text is not None:
                texts[utterance.id] = (utterance, text)
        task = self.bar.add_task("text features", total=len(texts) * len(self.text_jobs))
        for job in self.text_jobs:
            todo = []
            for utterance, text in texts.values():
                if not self._cached(job, utterance.id, text_key(text)):
                    todo.append((utterance, text))
            self._flush_copies(job)
            self.bar.advance(task, len(texts) - len(todo))
            self._compute_text(job, todo, task)

    def _compute_text(self, job: _Job, todo: list[tuple[Utterance, str]], task: TaskID) -> None:
        """Extract and store the features of ``todo``'s texts; count them."""
        for batch in _batches(todo, self.batch_size):
            errors = store_text_features(job.extractor, job.store, [(utterance.id, text) for utterance, text in batch])
            self._count(job, [utterance for utterance, _ in batch], errors)
            self.bar.advance(task, len(batch))

    def _text(self, utterance: Utterance) -> str | None:
        counts = [job.count for job in self.text_jobs]
        if utterance.transcript:
            return utterance.transcript
        if self.asr_job is None:
            missing = InputError(utterance.id, "no transcript (pass --asr to transcribe the audio)")
            self.skip(missing, utterance, counts)
        elif utterance.id in self.failed:  # its audio failed, and was reported, already
            for count in counts:
                count.skipped += 1
        else:
            return self.asr_job.store.get(utterance.id).text
        return None

    # ----------------------------------------------------------------- video

    def video_phase(self, utterances: Sequence[Utterance]) -> None:
        """Extract video features from each utterance's video, or its segment."""
        if not self.video_jobs:
            return
        counts = [job.count for job in self.video_jobs]
        keyed = []
        for utterance, outcome in zip(utterances, self.pool.map(video_key_or_error, utterances)):
            if isinstance(outcome, InputError):
                self.skip(outcome, utterance, counts)
            else:
                keyed.append((utterance, outcome))
        task = self.bar.add_task("video features", total=len(keyed) * len(self.video_jobs))
        for job in self.video_jobs:
            todo = [(utterance, key) for utterance, key in keyed if not self._cached(job, utterance.id, key)]
            self._flush_copies(job)
            self.bar.advance(task, len(keyed) - len(todo))
            for batch in _batches(todo, self.batch_size):
                clips = [VideoClip(u.video, u.video_start, u.video_end) for u, _ in batch]  # type: ignore[arg-type]
                features = self._video_features(job, clips, [utterance for utterance, _ in batch])
                job.store.put_many(
                    [
                        Entry(utterance.id, key, result, {"seconds": result.data.shape[1] / result.frame_rate})
                        for (utterance, key), result in zip(batch, features)
                        if result is not None
                    ]
                )
                self.bar.advance(task, len(batch))

    # ----------------------------------------------------------------- shared

    def _cached(self, job: _Job, utt_id: str, key: str) -> bool:
        """Whether ``utt_id`` needs no computing: stored, or stored under another id (then it
        is copied, in batches)."""
        if job.store.has(utt_id, key):
            job.count.cached += 1
            return True
        twin = job.store.id_with_key(key)
        if twin is None:
            return False
        job.copies.append((utt_id, twin))
        job.count.cached += 1
        if len(job.copies) >= self.batch_size:
            self._flush_copies(job)
        return True

    def _flush_copies(self, job: _Job) -> None:
        job.store.copy_entries(job.copies)
        job.copied += len(job.copies)
        job.copies = []

    def _count(self, job: _Job, utterances: Sequence[Utterance], errors: Sequence[InputError | None]) -> None:
        """Count what a stored batch computed, and report what failed in it."""
        for utterance, error in zip(utterances, errors):
            if error is None:
                job.count.computed += 1
            else:
                self.skip(error, utterance, [job.count])

    def _video_features(self, job: _Job, clips: list[Any], sources: list[Utterance]) -> list[Features | None]:
        """Features of a batch of clips (a failing clip isolated and reported), None where skipped."""
        results: list[Features | None] = []
        for outcome, source in zip(extract_isolated(job.extractor, clips), sources):
            if isinstance(outcome, InputError):
                self.skip(outcome, source, [job.count])
                results.append(None)
            else:
                job.count.computed += 1
                results.append(outcome)
        return results


def _decoded(
    items: list[_AudioItem],
    pool: ThreadPoolExecutor,
    depth: int,
    load: Callable[[Utterance], np.ndarray | InputError],
) -> Iterator[tuple[_AudioItem, np.ndarray | InputError]]:
    """``(item, waveform or error)`` in order, decoding (``load``) up to ``depth`` items ahead."""
    in_flight: deque[tuple[_AudioItem, Future[np.ndarray | InputError]]] = deque()
    for item in items:
        in_flight.append((item, pool.submit(load, item.utterance)))
        if len(in_flight) > depth:
            done, future = in_flight.popleft()
            yield done, future.result()
    for done, future in in_flight:
        yield done, future.result()


def _batches(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    batch: list[Item] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
