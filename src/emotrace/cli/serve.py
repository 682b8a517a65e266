"""``emotrace serve``: the HTTP service and its web page.

FastAPI and uvicorn are imported only when the command runs, so the core install (without
the ``service`` extra) keeps every other command working. SIGTERM (or Ctrl+C) stops the
server gracefully: waiting requests get 503 at once, running predictions have
``--shutdown-grace`` seconds to finish before they are stopped, and every upload is removed.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from emotrace.api import DEFAULT_MODEL
from emotrace.cli.options import FusionModelOption, ModelOption, VideoModelOption
from emotrace.errors import EmotraceError

#: the service's own defaults, repeated so that --help works without the extra
DEFAULT_MAX_UPLOAD_MB = 100.0
DEFAULT_MAX_DURATION = 1800.0
DEFAULT_MAX_QUEUE = 3
DEFAULT_SHUTDOWN_GRACE = 10.0


def serve(
    model: ModelOption = None,
    video_model: VideoModelOption = None,
    fusion_model: FusionModelOption = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on; 127.0.0.1 keeps the service to this machine.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    max_upload_mb: Annotated[
        float, typer.Option("--max-upload-mb", min=0.001, help="Largest upload accepted (MB); larger ones get 413.")
    ] = DEFAULT_MAX_UPLOAD_MB,
    asr: Annotated[
        bool, typer.Option("--asr", help="Transcribe uploads with Whisper (tiny.en) for models that read text.")
    ] = False,
    max_duration: Annotated[
        float, typer.Option("--max-duration", min=1.0, help="Longest upload accepted, in seconds of audio.")
    ] = DEFAULT_MAX_DURATION,
    max_queue: Annotated[
        int, typer.Option("--max-queue", min=0, help="Uploads that may wait for a worker; more get 503 + Retry-After.")
    ] = DEFAULT_MAX_QUEUE,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=0,
            help="Worker processes, each with its own model "
            "(0: predict in the server's own thread, which cannot stop a started prediction).",
        ),
    ] = 1,
    shutdown_grace: Annotated[
        float,
        typer.Option(
            "--shutdown-grace",
            min=0.0,
            help="Seconds running predictions may take to finish on SIGTERM or Ctrl+C before they are stopped.",
        ),
    ] = DEFAULT_SHUTDOWN_GRACE,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-host",
            help="A further host name requests may be addressed to, "
            "and pages may come from, when bound to loopback (repeatable).",
        ),
    ] = None,
) -> None:
    """Serve a model over HTTP: a web page at /, GET /health, GET /metrics and POST /predict.

    POST /predict takes a multipart form: the audio or video as 'file', optionally its transcript as 'text'.
    Bound to a loopback address (the default), only requests addressed to localhost, 127.0.0.1
    or ::1, and from pages the service served, are answered.
    """
    console = Console(stderr=True)
    try:
        import uvicorn  # noqa: F401 - checked here, run by run_server

        from emotrace.service import create_app
        from emotrace.service.app import LOOPBACK_NAMES
    except ModuleNotFoundError as error:
        _fail(
            console,
            f"emotrace serve needs the 'service' extra: pip install 'emotrace[service]' "
            f"({error.name} is not installed)",
        )
    if model is None and video_model is None and fusion_model is None:
        model = DEFAULT_MODEL
    allowed = {*LOOPBACK_NAMES, *(allow_host or ())} if _is_loopback(host) else None
    try:
        app = create_app(
            model,
            video_model=video_model,
            fusion_model=fusion_model,
            max_upload_bytes=round(max_upload_mb * 1e6),
            asr=asr,
            max_duration=max_duration,
            max_queue=max_queue,
            workers=workers,
            allowed_hosts=allowed,
        )
    except EmotraceError as error:
        _fail(console, str(error))
    served = ", ".join(name for name in (model, video_model, fusion_model) if name is not None)
    console.print(f"serving {served} at http://{host}:{port}/ (Ctrl+C stops)", markup=False, highlight=False)
    run_server(app, host=host, port=port, shutdown_grace=shutdown_grace)


def run_server(app: Any, *, host: str, port: int, shutdown_grace: float) -> None:
    """uvicorn, with the service told the moment a stop signal arrives (uvicorn itself
    would let queued requests wait out the grace before refusing them)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, timeout_graceful_shutdown=shutdown_grace))
    stop = server.handle_exit

    def handle_exit(sig: int, frame: Any) -> None:
        app.state.service.drain()
        stop(sig, frame)

    server.handle_exit = handle_exit  # type: ignore[method-assign]
    server.run()


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _fail(console: Console, message: str) -> NoReturn:
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)
