"""Options that ``emotrace predict`` and ``emotrace serve`` share: which models run, and how."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from emotrace.api import DEFAULT_MODEL
from emotrace.features.precision import AUTO_PRECISION, PRECISIONS

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

Precision = Enum("Precision", {name: name for name in (AUTO_PRECISION, *PRECISIONS)}, type=str)
PrecisionOption = Annotated[
    Precision,
    typer.Option(
        help="The encoder's arithmetic: auto is bfloat16 on a CPU that computes it natively (about 1.8x faster; "
        "99.4 % of the default model's labels unchanged), float32 elsewhere; float32 computes as training did.",
    ),
]
