"""Options that ``emotrace predict`` and ``emotrace serve`` share: which models run."""

from __future__ import annotations

from typing import Annotated

import typer

from emotrace.api import DEFAULT_MODEL

ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Packaged model name, checkpoint folder, training run folder, or a model set (a folder of "
        f"audio/, video/, fusion/ models) [default: {DEFAULT_MODEL}, unless --video-model or "
        "--fusion-model is given: then the audio model, if any].",
        show_default=False,
    ),
]
VideoModelOption = Annotated[
    str | None,
    typer.Option(
        "--video-model",
        help="A face-video model (name or folder): videos get the audio, the video and the fused "
        "prediction, and where the audio and video attention agree.",
    ),
]
FusionModelOption = Annotated[
    str | None,
    typer.Option(
        "--fusion-model",
        help="A model reading audio and video (method B) that fuses them; without it, --model and "
        "--video-model are fused late (product of their posteriors, renormalised).",
    ),
]
