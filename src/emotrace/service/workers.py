"""Where the service's predictions run: in a thread of the server, or in worker processes.

:func:`predict_upload` turns one upload on disk into the predictions document; both
runners call it, with one model's predictor or audio and video models' together
(:class:`Models`). :class:`ThreadRunner` calls it in the server's own process, one upload at
a time: light, but a prediction that has started cannot be stopped. :class:`ProcessRunner`
keeps ``workers`` processes, each with its own model, and sends each upload to an idle one:
a prediction whose client has gone, or that outlives a shutdown's grace, is stopped by
ending its process (a fresh one takes its place), and a decoder that crashes on a hostile
file takes down only its worker, never the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import traceback
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

import anyio
import torch

from emotrace.api import load_predictor
from emotrace.errors import BatchReport, EmotraceError, InputError
from emotrace.inference.media import MediaPredictor
from emotrace.inference.predictions import AudioVisualPrediction, RecordingPrediction, Result
from emotrace.inference.writers import predictions_document

logger = logging.getLogger("emotrace.service")

_READY = "ready"
_PR_SET_PDEATHSIG = 1  # linux/prctl.h: a signal for the child when its parent dies
#: workers yield the CPU to the server, so /health, admission and 503s stay prompt while they compute
WORKER_NICENESS = 5


class WorkerError(EmotraceError):
    """A prediction that failed through no fault of the upload (a bug, or a worker that died)."""


@dataclass(frozen=True)
class Models:
    """What the service serves: ``model`` alone, or with a ``video_model`` and/or a
    ``fusion_model`` predicting videos together (``model`` then the audio model, if any);
    each worker process loads them once."""

    model: str | Path | None
    video_model: str | Path | None = None
    fusion_model: str | Path | None = None

    def load(self, asr: bool) -> MediaPredictor:
        return load_predictor(self.model, self.video_model, self.fusion_model, asr=asr)


@dataclass(frozen=True)
class Job:
    """One upload to predict: the server's copy at ``path``, reported as ``name``."""

    path: str
    name: str
    text: str | None
    max_duration: float
    min_confidence: float | None = None  # abstain ("uncertain") below this top probability


def predict_upload(predictor: MediaPredictor, job: Job) -> dict[str, Any]:
    """The predictions document for an upload; errors and results name the client's file,
    never the temporary copy. Uploads longer than ``job.max_duration`` are refused from the
    header. The rest is :meth:`~emotrace.inference.media.MediaPredictor.predict_file`, as
    everywhere: a file without speech gets a ``no speech`` result instead of an emotion, and
    probabilities that are not finite are an InputError."""
    path, name = Path(job.path), job.name
    text = job.text.strip() if job.text and job.text.strip() else None
    report = BatchReport()
    try:
        info = predictor.probe(path)
        if info.duration > job.max_duration:
            raise InputError(
                path,
                f"is {info.duration:.1f} s long, over this service's {job.max_duration:g} s limit "
                "(emotrace serve --max-duration); emotrace predict reads recordings of any length",
            )
        result = predictor.predict_file(path, text, report=report).with_min_confidence(job.min_confidence)
    except InputError as error:
        raise InputError(error.source.replace(str(path), name), error.problem) from None
    skipped = [InputError(e.source.replace(str(path), name), e.problem) for e in report.skipped]
    return predictions_document([_renamed(result, name)], BatchReport(skipped=skipped))


def _renamed(result: Result, source: str) -> Result:
    """``result`` with every source (its segments' and each stream's of an audio-visual one too)
    set to ``source``."""
    if isinstance(result, RecordingPrediction):
        return replace(result, source=source, timeline=tuple(_renamed(p, source) for p in result.timeline))
    if isinstance(result, AudioVisualPrediction):
        streams = {
            name: None if stream is None else replace(stream, source=source)
            for name, stream in (("audio", result.audio), ("video", result.video), ("fused", result.fused))
        }
        return replace(result, source=source, **streams)
    return replace(result, source=source)


class Runner(Protocol):
    """Runs jobs; ``run`` raises InputError (the upload's fault) or WorkerError (ours)."""

    workers: int

    async def start(self) -> None: ...

    async def run(self, job: Job) -> dict[str, Any]: ...

    async def close(self) -> None: ...


class ThreadRunner:
    """Predictions in a thread of the server, one at a time (the predictor is not
    thread-safe). A job cancelled while it waits never starts; one cancelled once started
    runs to its end unseen, holding the model meanwhile."""

    workers = 1

    def __init__(self, predictor: MediaPredictor):
        self.predictor = predictor
        self.turn = asyncio.Lock()

    async def start(self) -> None:
        pass

    async def run(self, job: Job) -> dict[str, Any]:
        async with self.turn:
            return await anyio.to_thread.run_sync(predict_upload, self.predictor, job)

    async def close(self) -> None:
        pass


class _Worker:
    """One worker process and the pipe to it."""

    def __init__(self, context: Any, models: Models, asr: bool, threads: int):
        self.connection, child = context.Pipe()
        self.process = context.Process(
            target=_worker_main, args=(child, models, asr, threads, os.getpid()), name="emotrace-worker", daemon=True
        )
        self.process.start()
        child.close()

    def ready(self) -> None:
        """Blocks until the model is loaded; raises WorkerError if the worker cannot start."""
        try:
            kind, detail = self.connection.recv()
        except EOFError:
            raise WorkerError(f"a worker process {self._ended()} while loading the model") from None
        if kind != _READY:
            raise WorkerError(f"a worker process could not load the model: {detail}")

    def call(self, job: Job) -> dict[str, Any]:
        """Blocks until the worker answers; raises what it raised."""
        self.connection.send(job)
        try:
            kind, detail = self.connection.recv()
        except (EOFError, OSError):
            raise WorkerError(f"the worker process {self._ended()} while predicting {job.name}") from None
        if kind == "ok":
            return detail
        if kind == "input":
            raise InputError(*detail)
        raise WorkerError(detail)

    def stop(self) -> None:
        self.process.kill()
        self.process.join(timeout=10)
        self.connection.close()

    def _ended(self) -> str:
        """How the process ended, e.g. 'was killed by signal 11' (a decoder that crashed)."""
        self.process.join(timeout=5)
        code = self.process.exitcode
        return f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"


class ProcessRunner:
    """``workers`` processes, each loading ``models`` once; a job goes to an idle one."""

    def __init__(self, models: Models, *, asr: bool, workers: int, threads: int):
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.models, self.asr, self.workers, self.threads = models, asr, workers, threads
        self.context = multiprocessing.get_context("spawn")  # torch's threads do not survive fork
        self.idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self.all: set[_Worker] = set()
        self.closed = False

    async def start(self) -> None:
        await asyncio.gather(*(self._spawn() for _ in range(self.workers)))

    async def _spawn(self) -> None:
        if self.closed:
            return
        worker = _Worker(self.context, self.models, self.asr, self.threads)
        self.all.add(worker)
        try:
            await anyio.to_thread.run_sync(worker.ready, abandon_on_cancel=True)
        except BaseException:
            self._discard(worker)
            raise
        if self.closed:
            self._discard(worker)
        else:
            self.idle.put_nowait(worker)

    async def run(self, job: Job) -> dict[str, Any]:
        worker = await self.idle.get()
        answered = False
        try:
            result = await anyio.to_thread.run_sync(worker.call, job, abandon_on_cancel=True)
            answered = True
            return result
        except (InputError, WorkerError):
            answered = True
            raise
        finally:
            if answered and worker.process.is_alive():
                self.idle.put_nowait(worker)
            else:  # cancelled mid-prediction, or died: end it and start a fresh one
                self._discard(worker)
                if not self.closed:
                    asyncio.get_running_loop().create_task(self._respawn())

    async def _respawn(self) -> None:
        try:
            await self._spawn()
        except WorkerError as error:
            logger.error("could not replace a worker process: %s", error)

    def _discard(self, worker: _Worker) -> None:
        self.all.discard(worker)
        worker.stop()

    async def close(self) -> None:
        self.closed = True
        for worker in list(self.all):
            self._discard(worker)


def _worker_main(connection: Connection, models: Models, asr: bool, threads: int, server: int) -> None:
    """A worker process: load the model, then answer jobs until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C reaches the whole group: the server decides
    _die_with_parent()
    if os.getppid() != server:  # the server ended while this process was starting
        return
    os.nice(WORKER_NICENESS)
    torch.set_num_threads(threads)
    try:
        predictor = models.load(asr)
        connection.send((_READY, None))
    except (BrokenPipeError, EOFError):
        return
    except Exception as error:
        connection.send(("error", f"{type(error).__name__}: {error}"))
        return
    while True:
        try:
            job = connection.recv()
        except (EOFError, OSError):
            return
        try:
            connection.send(("ok", predict_upload(predictor, job)))
        except InputError as error:
            connection.send(("input", (error.source, error.problem)))
        except Exception as error:
            traceback.print_exc(file=sys.stderr)
            connection.send(("internal", f"internal error ({type(error).__name__}); the server log has the details"))


def _die_with_parent() -> None:
    """Linux ends this worker with its server even if the server is killed outright."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: the server stops its workers itself
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
