"""``emotrace serve``: the HTTP service and its web page.

FastAPI and uvicorn are imported only when the command runs, so the core install (without
the ``service`` extra) keeps every other command working.
"""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from emotrace.api import DEFAULT_MODEL
from emotrace.errors import EmotraceError

#: MB; the service's own default, repeated so that --help works without the extra
DEFAULT_MAX_UPLOAD_MB = 100.0


def serve(
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
        typer.Option("--video-model", help="A face-video model: video uploads then get the audio (--model), "
                     "video and fused predictions and their ROI comparison."),
    ] = None,
    fusion_model: Annotated[
        str | None,
        typer.Option("--fusion-model", help="A model reading audio and video (method B) that fuses them "
                     "(else --model and --video-model are fused late)."),
    ] = None,
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
) -> None:
    """Serve a model over HTTP: a web page at /, GET /health, and POST /predict.

    POST /predict takes a multipart form: the audio or video as 'file', optionally its transcript as 'text'.
    """
    console = Console(stderr=True)
    try:
        import uvicorn

        from emotrace.service import create_app
    except ModuleNotFoundError as error:
        _fail(console, f"emotrace serve needs the 'service' extra: pip install 'emotrace[service]' "
                       f"({error.name} is not installed)")
    if model is None and video_model is None and fusion_model is None:
        model = DEFAULT_MODEL
    try:
        app = create_app(
            model, video_model=video_model, fusion_model=fusion_model,
            max_upload_bytes=round(max_upload_mb * 1e6), asr=asr,
        )
    except EmotraceError as error:
        _fail(console, str(error))
    served = ", ".join(name for name in (model, video_model, fusion_model) if name is not None)
    console.print(f"serving {served} at http://{host}:{port}/ (Ctrl+C stops)", markup=False, highlight=False)
    uvicorn.run(app, host=host, port=port)


def _fail(console: Console, message: str) -> NoReturn:
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)
