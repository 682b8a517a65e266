"""A FastAPI app around one :class:`~emotrace.inference.predictor.Predictor`.

The model is loaded once, when the app is built, so a bad model name stops ``emotrace
serve`` at start-up instead of failing every request. ``POST /predict`` answers with the
document ``emotrace predict --format json`` writes (:func:`predictions_document`), so a
client reads the service and the CLI alike. Inference is CPU-bound and the predictor is
not thread-safe (it builds extractors lazily and shares its models), so requests run in
the threadpool, one prediction at a time, and the event loop stays free to answer
``/health`` and the page meanwhile. Every problem a client can cause becomes a 4xx with a
one-line JSON ``{"error": "..."}``.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
from dataclasses import replace
from importlib.resources import files
from pathlib import Path
from typing import Any, BinaryIO

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emotrace import __version__
from emotrace.api import DEFAULT_MODEL, load_predictor
from emotrace.errors import BatchReport, InputError
from emotrace.inference.predictions import Prediction, RecordingPrediction
from emotrace.inference.predictor import Predictor
from emotrace.inference.writers import predictions_document
from emotrace.labels import EMOTION_COLOURS
from emotrace.protocols import UTTERANCE_LEVEL

#: bytes; about an hour of 16 kHz 16-bit WAV, many hours of a browser's opus recording
DEFAULT_MAX_UPLOAD_BYTES = 100_000_000
PAGE = "index.html"
UPLOAD_FIELD = "file"
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}$")  # kept on the temporary copy: a hint for FFmpeg


def create_app(
    model: str | Path | None = DEFAULT_MODEL,
    *,
    video_model: str | Path | None = None,
    fusion_model: str | Path | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    asr: bool = False,
) -> FastAPI:
    """The service for ``model`` (a packaged model name, checkpoint or run folder).

    With a ``video_model`` and/or a ``fusion_model``, ``model`` is the audio model (None:
    none) and a video upload gets the audio, video and fused predictions and their ROI
    comparison (:func:`emotrace.api.load_predictor`). Request bodies over
    ``max_upload_bytes`` are refused with 413 before they reach the disk. ``asr``
    transcribes uploads for models that read text when no text is sent.
    """
    if max_upload_bytes <= 0:
        raise ValueError(f"max_upload_bytes must be positive, got {max_upload_bytes}")
    predictor = load_predictor(model, video_model, fusion_model, asr=asr)
    if UTTERANCE_LEVEL not in predictor.protocols:
        raise InputError(
            model,
            "is speaker-adaptive only: the service predicts single uploads, which needs an "
            "utterance-level model",
        )
    service = _Service(predictor)
    page = files(__package__).joinpath(PAGE).read_text(encoding="utf-8")

    # Swagger UI and ReDoc load their scripts from a CDN, which an offline machine cannot reach.
    app = FastAPI(title="emotrace", version=__version__, docs_url=None, redoc_url=None)
    app.state.predictor = predictor
    app.add_middleware(_UploadLimit, max_bytes=max_upload_bytes)
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
        }

    @app.post("/predict")
    async def predict(
        file: UploadFile = File(..., description="Audio (or video) in any format emotrace.audio reads."),
        text: str | None = Form(None, description="Transcript, for models that read text."),
    ) -> JSONResponse:
        """One upload: an utterance, or (longer than the utterance limit) a recording
        predicted by speech segments, with its timeline."""
        document = await run_in_threadpool(service.predict_upload, file.file, file.filename, text)
        return JSONResponse(document)

    return app


class _Service:
    """Uploads to predictions, one at a time."""

    def __init__(self, predictor: Predictor):
        self.predictor = predictor
        self.lock = threading.Lock()

    def predict_upload(self, upload: BinaryIO, filename: str | None, text: str | None) -> dict[str, Any]:
        """The predictions document for an upload; errors and results name the client's
        file, never the temporary copy."""
        name = " ".join(Path(filename or "").name.split()) or "upload"  # error messages stay one line
        text = text.strip() if text and text.strip() else None
        with tempfile.TemporaryDirectory(prefix="emotrace-upload-") as folder:
            suffix = _SUFFIX.search(name)
            path = Path(folder) / f"upload{suffix.group() if suffix else ''}"
            with open(path, "wb") as copy:
                shutil.copyfileobj(upload, copy)
            try:
                report = BatchReport()
                with self.lock:
                    result = self.predictor.predict_file(path, text, report=report)
            except InputError as error:
                raise InputError(error.source.replace(str(path), name), error.problem) from None
        skipped = [InputError(e.source.replace(str(path), name), e.problem) for e in report.skipped]
        return predictions_document([_renamed(result, name)], BatchReport(skipped=skipped))


def _renamed(result: Prediction | RecordingPrediction, source: str) -> Prediction | RecordingPrediction:
    """``result`` with every source (its segments' too) set to ``source``."""
    if isinstance(result, RecordingPrediction):
        return replace(result, source=source, timeline=tuple(replace(p, source=source) for p in result.timeline))
    return replace(result, source=source)


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.3g} MB"


class _UploadLimit:
    """Refuses request bodies over ``max_bytes``: by their declared Content-Length before a
    byte is read, and by counting when the client streams without one, so no upload can
    fill the disk. (Starlette spools uploads to disk before the endpoint runs.)"""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

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


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _input_error(request: Request, error: InputError) -> JSONResponse:
    return _error(422, str(error))


async def _http_error(request: Request, error: HTTPException) -> JSONResponse:
    return _error(error.status_code, str(error.detail))


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    """FastAPI's list of validation errors as one line, e.g. a multipart form without its file."""
    problems = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"][1:]) or "request"
        name = f"form field '{field}'" + (" (the audio, sent as multipart/form-data)" if field == UPLOAD_FIELD else "")
        problems.append(f"{name} is missing" if item["type"] == "missing" else f"{name}: {item['msg']}")
    return _error(400, "; ".join(problems))


async def _internal_error(request: Request, error: Exception) -> JSONResponse:
    """A bug, not the client's fault: logged in full by the server, one line to the client."""
    return _error(500, f"internal error ({type(error).__name__}); the server log has the details")
