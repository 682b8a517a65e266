"""The precision an encoder computes in at prediction time.

bfloat16 matrix products speed up the Whisper encoder, most of a prediction's cost, on a CPU
that has them in hardware (AVX512-BF16, AMX): ``emotrace predict`` ran 1.6x faster on the
RAVDESS clips and 1.25x on an hour-long recording (``benchmarks/predict_speed.py``). Where
they are emulated they are slower than float32. Features keep float32 storage either way.
"""

from __future__ import annotations

import torch

from emotrace.features.inputs import ExtractorConfigError

#: what stored features hold and training reads
TRAINING_PRECISION = "float32"
#: what ``precision`` may be: the encoder's weights and outputs stay float32 either way
PRECISIONS = (TRAINING_PRECISION, "bfloat16")
#: what a predictor asks for by default: bfloat16 where the CPU computes it natively
AUTO_PRECISION = "auto"


def native_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX): elsewhere it is
    emulated, and slower than float32."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private in torch: absent means no
    return any(getattr(torch.cpu, check, lambda: False)() for check in checks)


def resolve_precision(precision: str) -> str:
    """``precision`` (one of :data:`PRECISIONS`, or ``"auto"``) as the encoder will run it:
    ``"auto"`` is bfloat16 on a CPU with native bfloat16, float32 elsewhere."""
    if precision == AUTO_PRECISION:
        return "bfloat16" if native_bfloat16() else TRAINING_PRECISION
    if precision not in PRECISIONS:
        raise ExtractorConfigError(
            f"precision must be one of {', '.join((AUTO_PRECISION, *PRECISIONS))}, got {precision!r}"
        )
    return precision
