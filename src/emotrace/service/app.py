"""A FastAPI app around one :class:`~emotrace.inference.predictor.Predictor`.

The model is loaded once, when the app is built, so a bad model name stops ``emotrace
serve`` at start-up instead of failing every request. ``POST /predict`` answers with the
document ``emotrace predict --format json`` writes (:func:`predictions_document`), so a
client reads the service and the CLI alike. Every problem a client can cause becomes a 4xx
with a one-line JSON ``{"error": "..."}``.

The service holds its load: at most ``workers`` predictions run and ``max_queue`` wait
(:mod:`.admission`); past that a request gets 503 with Retry-After before its upload is
read. An admitted upload is streamed into a folder of its own (:mod:`.uploads`) that is
removed whatever happens. A request whose client disconnects leaves the queue, or, with
worker processes (:mod:`.workers`), stops its prediction. Uploads longer than
``max_duration`` seconds are refused from their header. Bound to loopback, the service
answers only requests addressed to loopback names and from pages it served itself, so a
web page elsewhere cannot use a browser to queue work on it (DNS rebinding, cross-site
posts). ``GET /metrics`` reports queue, latency and refusals for Prometheus.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager, suppress
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emotrace import __version__
from emotrace.api import DEFAULT_MODEL
from emotrace.atomic import owned_directory, remove_debris
from emotrace.errors import InputError
from emotrace.features.asr import available_cores
from emotrace.labels import EMOTION_COLOURS
from emotrace.protocols import UTTERANCE_LEVEL
from emotrace.service.admission import Admission, Metrics, Refused, shutting_down
from emotrace.service.uploads import TEXT_FIELD, UPLOAD_FIELD, UploadError, receive_upload
from emotrace.service.workers import Job, Models, ProcessRunner, Runner, ThreadRunner, WorkerError

#: bytes; about an hour of 16 kHz 16-bit WAV, many hours of a browser's opus recording
DEFAULT_MAX_UPLOAD_BYTES = 100_000_000
#: seconds of audio one upload may hold: a six-hour file would hold a worker for many minutes
DEFAULT_MAX_DURATION = 1800.0
#: predictions that may wait for a worker; more get 503 (at 32 clients, an admitted request
#: then waits at most a few predictions' time)
DEFAULT_MAX_QUEUE = 3
#: host names that reach this machine only; a service bound to one of them answers only these
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
PAGE = "index.html"
_PREDICT_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [UPLOAD_FIELD],
                    "properties": {
                        UPLOAD_FIELD: {
                            "type": "string",
                            "format": "binary",
                            "description": "Audio (or video) in any format emotrace.audio reads.",
                        },
                        TEXT_FIELD: {"type": "string", "description": "Transcript, for models that read text."},
                    },
                }
            }
        },
    }
}


def create_app(
    model: str | Path | None = DEFAULT_MODEL,
    *,
    video_model: str | Path | None = None,
    fusion_model: str | Path | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    asr: bool = False,
    max_duration: float = DEFAULT_MAX_DURATION,
    max_queue: int = DEFAULT_MAX_QUEUE,
    workers: int = 0,
    allowed_hosts: Collection[str] | None = None,
) -> FastAPI:
    """The service for ``model`` (a packaged model name, checkpoint or run folder).

    With a ``video_model`` and/or a ``fusion_model``, ``model`` is the audio model (None:
    none) and a video upload gets the audio, video and fused predictions and their ROI
    comparison (:func:`emotrace.api.load_predictor`). Request bodies over ``max_upload_bytes``
    are refused with 413 before they reach the disk; uploads over ``max_duration`` seconds
    with 422. ``asr`` transcribes uploads for models that read text when no text is sent.
    ``workers`` 0 predicts in a thread of this process; N >= 1 starts N worker processes
    (each loads the models) when the app starts.
    ``allowed_hosts`` (e.g. :data:`LOOPBACK_NAMES`) limits the Host and Origin a request
    may come with; None accepts any.
    """
    if max_upload_bytes <= 0:
        raise ValueError(f"max_upload_bytes must be positive, got {max_upload_bytes}")
    if max_duration <= 0:
        raise ValueError(f"max_duration must be positive, got {max_duration}")
    if workers < 0:
        raise ValueError(f"workers must not be negative, got {workers}")
    models = Models(model, video_model, fusion_model)
    predictor = models.load(asr)
    if UTTERANCE_LEVEL not in predictor.protocols:
        raise InputError(
            model,
            "is speaker-adaptive only: the service predicts single uploads, which needs an utterance-level model",
        )
    runner: Runner = (
        ThreadRunner(predictor)
        if workers == 0
        else ProcessRunner(models, asr=asr, workers=workers, threads=max(1, available_cores() // workers))
    )
    service = _Service(runner, Admission(runner.workers, max_queue), max_duration)
    page = files(__package__).joinpath(PAGE).read_text(encoding="utf-8")

    # Swagger UI and ReDoc load their scripts from a CDN, which an offline machine cannot reach.
    app = FastAPI(title="emotrace", version=__version__, docs_url=None, redoc_url=None, lifespan=service.lifespan)
    app.state.predictor = predictor
    app.state.service = service
    app.add_middleware(_UploadLimit, max_bytes=max_upload_bytes, metrics=service.metrics)
    if allowed_hosts is not None:
        app.add_middleware(_HostGuard, allowed=allowed_hosts, metrics=service.metrics)
    app.add_exception_handler(InputError, _input_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _internal_error)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """The model served: its name, labels (with the colours plots give them) and protocol."""
        return {
            "status": "ok",
            "model": None if model is None else str(model),
            "labels": list(predictor.labels),
            "colours": {label: EMOTION_COLOURS.get(label, EMOTION_COLOURS["other"]) for label in predictor.labels},
            "protocol": UTTERANCE_LEVEL,
            "reads_text": predictor.reads("text"),
            "reads_video": predictor.reads("video"),
            "video_model": None if video_model is None else str(video_model),
            "fusion_model": None if fusion_model is None else str(fusion_model),
            "asr": asr,
            "max_upload_bytes": max_upload_bytes,
            "max_utterance_seconds": predictor.max_duration,
            "max_duration_seconds": max_duration,
            "workers": runner.workers,
            "max_queue": max_queue,
        }

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        """Queue length, running predictions, latency histogram and refusals (Prometheus text format)."""
        return PlainTextResponse(service.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.post("/predict", openapi_extra=_PREDICT_FORM)
    async def predict(request: Request) -> Response:
        """One upload (multipart form: the audio or video as 'file', optionally its transcript as
        'text'): an utterance, or (longer than the utterance limit) a recording predicted by
        speech segments, with its timeline."""
        return await service.predict(request)

    return app


def uploads_parent() -> Path:
    """Where every server of this user keeps its uploads folder (in the system's temporary folder)."""
    return Path(tempfile.gettempdir()) / f"emotrace-serve-{os.getuid()}"


class _Service:
    """Admission, uploads, cancellation and the runner, for ``POST /predict``."""

    def __init__(self, runner: Runner, admission: Admission, max_duration: float):
        self.runner = runner
        self.admission = admission
        self.metrics = Metrics(admission)
        self.max_duration = max_duration
        self.slots = asyncio.Semaphore(runner.workers)
        self.waiting: set[anyio.CancelScope] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.root: Path | None = None
        self.root_lock = threading.Lock()

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        """Workers start with the server; on shutdown they stop and every upload is removed."""
        self.loop = asyncio.get_running_loop()
        await anyio.to_thread.run_sync(remove_debris, uploads_parent())  # uploads of servers that were killed
        await self.runner.start()
        try:
            yield
        finally:
            self.admission.draining = True
            await self.runner.close()
            if self.root is not None:
                shutil.rmtree(self.root, ignore_errors=True)
                self.root = None
                with suppress(OSError):  # kept while another server uses it
                    uploads_parent().rmdir()

    def drain(self) -> None:
        """From now on refuse new requests and those still waiting (503); running ones go on.
        Safe to call from a signal handler."""
        self.admission.draining = True
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._release_waiting)

    def _release_waiting(self) -> None:
        for scope in list(self.waiting):
            scope.cancel()

    async def predict(self, request: Request) -> Response:
        started = time.monotonic()
        try:
            with self.admission.admit():
                response = await self._admitted(request)
        except Refused as refusal:
            self.metrics.rejected[refusal.reason] += 1
            return _error(503, str(refusal), headers={"Retry-After": str(refusal.retry_after)})
        if response.status_code != _CLIENT_GONE:
            self.metrics.observe(response.status_code, time.monotonic() - started)
        return response

    async def _admitted(self, request: Request) -> Response:
        folder = await anyio.to_thread.run_sync(self._new_folder)  # the disk may be slow: not in the event loop
        try:
            min_confidence = _min_confidence(request)
            upload = await receive_upload(request, folder)
            job = Job(str(upload.path), upload.name, upload.text, self.max_duration, min_confidence)
            return await self._unless_gone(request, job)
        except UploadError as error:
            return _error(400, str(error))
        except InputError as error:
            return _error(422, str(error))
        except HTTPException as error:
            return _error(error.status_code, str(error.detail))
        except WorkerError as error:
            return _error(500, str(error))
        finally:
            with anyio.CancelScope(shield=True):  # removed even when a shutdown cancels the request
                await anyio.to_thread.run_sync(shutil.rmtree, folder, True)

    def _new_folder(self) -> Path:
        """A folder for one upload, in the service's own (made on first use): one per server
        under :func:`uploads_parent`, named by the server's process id, so that a server
        starting after a kill removes what the killed one left."""
        with self.root_lock:
            if self.root is None:
                parent = uploads_parent()
                parent.mkdir(mode=0o700, exist_ok=True)
                self.root = owned_directory(parent)
            return Path(tempfile.mkdtemp(prefix="upload-", dir=self.root))

    async def _unless_gone(self, request: Request, job: Job) -> Response:
        """The job's result, unless the client disconnects first: then the job leaves the
        queue, or is stopped where the runner can stop it."""
        stage = ["queued"]
        gone = False
        outcome: dict[str, Any] | Exception | None = None
        async with anyio.create_task_group() as group:

            async def watch() -> None:
                nonlocal gone
                while (await request.receive())["type"] != "http.disconnect":
                    pass
                gone = True
                group.cancel_scope.cancel()

            group.start_soon(watch)
            try:
                outcome = await self._run(job, stage)
            except Exception as error:
                outcome = error
            group.cancel_scope.cancel()
        if gone:
            self.metrics.cancelled[stage[0]] += 1
            return Response(status_code=_CLIENT_GONE)
        if isinstance(outcome, Exception):
            raise outcome
        return JSONResponse(outcome)

    async def _run(self, job: Job, stage: list[str]) -> dict[str, Any]:
        """Wait for a worker (a shutdown ends the wait with Refused), then run the job."""
        if self.admission.draining:  # the stop came while the upload was still arriving
            raise shutting_down()
        with anyio.CancelScope() as waiting:
            self.waiting.add(waiting)
            try:
                await self.slots.acquire()
            finally:
                self.waiting.discard(waiting)
        if waiting.cancelled_caught:
            raise shutting_down()
        try:
            stage[0] = "running"
            with self.admission.predicting():
                return await self.runner.run(job)
        finally:
            self.slots.release()


_CLIENT_GONE = 499  # as nginx logs it: nobody is left to read the response


def _min_confidence(request: Request) -> float | None:
    """The ``min_confidence`` query parameter: abstain below this top probability (0..1)."""
    given = request.query_params.get("min_confidence")
    if given is None or not given.strip():
        return None
    try:
        value = float(given)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise UploadError(f"query parameter 'min_confidence' must be a number from 0 to 1, got {given!r}")
    return value


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.3g} MB"


class _UploadLimit:
    """Refuses request bodies over ``max_bytes``: by their declared Content-Length before a
    byte is read, and by counting when the client streams without one, so no upload can
    fill the disk. (Starlette spools uploads to disk before the endpoint runs.)"""

    def __init__(self, app: ASGIApp, max_bytes: int, metrics: Metrics):
        self.app = app
        self.max_bytes = max_bytes
        self.metrics = metrics

    def problem(self, size: int | None) -> str:
        """``size``: the declared length, or None for a stream that has just passed the limit."""
        how_large = "" if size is None else f"{_megabytes(size)}, "
        return f"upload is {how_large}over the {_megabytes(self.max_bytes)} limit (emotrace serve --max-upload-mb)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            self.metrics.rejected["too_large"] += 1
            response = _error(413, self.problem(int(declared)))
            await response(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                # FastAPI re-raises an HTTPException from body parsing as it is
                raise HTTPException(413, self.problem(None))
            return message

        await self.app(scope, counting_receive, send)


class _HostGuard:
    """Answers only requests whose Host, and Origin when a browser sends one, name an
    allowed host: a page on another site cannot make a visitor's browser post to a service
    on their own machine, nor rebind its DNS name to 127.0.0.1 to read from it."""

    def __init__(self, app: ASGIApp, allowed: Collection[str], metrics: Metrics):
        self.app = app
        self.allowed = {name.lower().strip("[]") for name in allowed}
        self.metrics = metrics

    def problem(self, scope: Scope) -> str | None:
        headers = dict(scope["headers"])
        host = headers.get(b"host", b"").decode("latin-1")
        if _hostname(f"//{host}") not in self.allowed:
            return f"requests to this service must be addressed to {self._names()}, not {host or 'no host'}"
        origin = headers.get(b"origin")
        if origin is not None and _hostname(origin.decode("latin-1")) not in self.allowed:
            return f"pages from {origin.decode('latin-1')} may not use this service (only pages it serves)"
        return None

    def _names(self) -> str:
        return " or ".join(sorted(self.allowed))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        problem = self.problem(scope) if scope["type"] in ("http", "websocket") else None
        if problem is None:
            await self.app(scope, receive, send)
            return
        self.metrics.rejected["forbidden_host"] += 1
        await _error(403, problem)(scope, receive, send)


def _hostname(url: str) -> str | None:
    """The host of ``url`` (``//host:port`` for a bare Host header), lower case, without brackets."""
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _input_error(request: Request, error: InputError) -> JSONResponse:
    return _error(422, str(error))


async def _http_error(request: Request, error: HTTPException) -> JSONResponse:
    return _error(error.status_code, str(error.detail))


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    """FastAPI's list of validation errors as one line, e.g. a multipart form without its file."""
    problems = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"][1:]) or "request"
        kind = "query parameter" if item["loc"][0] == "query" else "form field"
        name = f"{kind} '{field}'" + (" (the audio, sent as multipart/form-data)" if field == UPLOAD_FIELD else "")
        problems.append(f"{name} is missing" if item["type"] == "missing" else f"{name}: {item['msg']}")
    return _error(400, "; ".join(problems))


async def _internal_error(request: Request, error: Exception) -> JSONResponse:
    """A bug, not the client's fault: logged in full by the server, one line to the client."""
    return _error(500, f"internal error ({type(error).__name__}); the server log has the details")
