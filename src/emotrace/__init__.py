"""emotrace: multimodal speech emotion recognition that shows where the emotion lives."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["__version__", "load_model"]

if TYPE_CHECKING:
    from emotrace.api import load_model


def __getattr__(name: str) -> Any:
    # load_model brings torch and the models; importing it lazily keeps `import emotrace.labels` light
    if name == "load_model":
        from emotrace.api import load_model

        return load_model
    raise AttributeError(f"module 'emotrace' has no attribute {name!r}")
