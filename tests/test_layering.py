"""The architecture, checked: imports run down the layers only, and modules stay short.

Every module under ``src/emotrace`` is parsed (not imported) and each ``import`` and
``from ... import`` in it, at any depth (function-level and ``TYPE_CHECKING`` ones too) and
relative or absolute, is resolved to the emotrace module it names. A module may import its
own layer or a lower one, never a higher one; training and inference, one layer, must not
import each other.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

PACKAGE = "emotrace"
SOURCE = Path(__file__).resolve().parents[1] / "src" / PACKAGE
MAX_LINES = 500

#: lowest first; a module's layer is that of its first name under emotrace ("" is the package itself)
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"", "errors", "labels", "protocols", "spans", "atomic", "samples"}),
    frozenset({"audio", "augmentation", "corpora"}),
    frozenset({"features"}),
    frozenset({"models"}),
    frozenset({"checkpoint"}),
    frozenset({"training", "inference"}),
    frozenset({"api", "distributed"}),  # distributed: extraction and prediction on Ray, beside the api
    frozenset({"cli", "service", "__main__"}),
)
#: parts of one layer that must stay independent of each other
APART = (frozenset({"training", "inference"}),)
#: the one upward import allowed: ``emotrace.load_model`` imports the api lazily (in a function,
#: and for type checkers) so that ``import emotrace.labels`` stays light
ALLOWED = frozenset({(PACKAGE, f"{PACKAGE}.api")})


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the emotrace module it imports
    line: int


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(SOURCE.rglob("*.py"))}


def top_name(module: str) -> str:
    """``emotrace.features.store`` -> ``features``; the package itself -> ``""``."""
    return module.split(".")[1] if "." in module else ""


def layer_of(module: str) -> int:
    for index, members in enumerate(LAYERS):
        if top_name(module) in members:
            return index
    raise AssertionError(f"{module} is in no layer: add {top_name(module)!r} to LAYERS in {Path(__file__).name}")


def resolve(name: str) -> str:
    """The longest known module that ``name`` starts with (``emotrace.x.Y`` -> ``emotrace.x``)."""
    parts = name.split(".")
    while parts and ".".join(parts) not in modules():
        parts.pop()
    return ".".join(parts)


def imports_of(module: str) -> list[Import]:
    path = modules()[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                stem = f"{base}.{node.module}" if node.module else base
            else:
                stem = node.module or ""
            # ``from x import y`` imports module x.y when there is one, else a name of x
            names = [f"{stem}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name == PACKAGE or name.startswith(PACKAGE + "."):
                found.append(Import(module, resolve(name), node.lineno))
    return found


def upward_imports(module: str) -> list[str]:
    """Each import of ``module`` that breaks the layering, as ``module:line imports target (why)``."""
    problems = []
    for item in imports_of(module):
        if (item.module, item.target) in ALLOWED or item.target == module:
            continue
        source, target = layer_of(item.module), layer_of(item.target)
        tops = {top_name(item.module), top_name(item.target)}
        where = f"{item.module}:{item.line} imports {item.target}"
        if target > source:
            problems.append(f"{where}, a higher layer")
        elif target == source and len(tops) == 2 and any(tops <= apart for apart in APART):
            problems.append(f"{where}: {' and '.join(sorted(tops))} must not import each other")
    return problems


@pytest.mark.parametrize("module", list(modules()))
def test_imports_run_down_the_layers(module: str) -> None:
    problems = upward_imports(module)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("module", list(modules()))
def test_modules_stay_short(module: str) -> None:
    lines = len(modules()[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines, over {MAX_LINES}: split it"


def test_every_module_has_a_layer() -> None:
    for module in modules():
        layer_of(module)


def test_the_check_finds_upward_relative_and_function_level_imports(tmp_path, monkeypatch) -> None:
    """The checker itself, on a package made up for it: it must not pass by seeing nothing."""
    source = tmp_path / PACKAGE
    for name, text in {
        "__init__.py": "def load():\n    from emotrace.api import x\n",
        "api.py": "",
        "errors.py": "",
        "features/__init__.py": "",
        "features/store.py": "from ..errors import E\n\ndef late():\n    from ..models import heads\n",
        "models/__init__.py": "",
        "models/heads.py": "import emotrace.checkpoint\n",
        "checkpoint.py": "from emotrace.models import heads\n",
        "training/__init__.py": "",
        "training/cv.py": "from emotrace.inference import predictor\n",
        "inference/__init__.py": "",
        "inference/predictor.py": "from . import store_of_its_own\nfrom emotrace import errors\n",
    }.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text(text)
    monkeypatch.setitem(globals(), "SOURCE", source)
    modules.cache_clear()
    try:
        found = {module: upward_imports(module) for module in modules()}
    finally:
        modules.cache_clear()
    assert found == {
        "emotrace": [],  # the allowed lazy import of the api
        "emotrace.api": [],
        "emotrace.errors": [],
        "emotrace.features": [],
        "emotrace.features.store": ["emotrace.features.store:4 imports emotrace.models.heads, a higher layer"],
        "emotrace.models": [],
        "emotrace.models.heads": ["emotrace.models.heads:1 imports emotrace.checkpoint, a higher layer"],
        "emotrace.checkpoint": [],
        "emotrace.training": [],
        "emotrace.training.cv": [
            "emotrace.training.cv:1 imports emotrace.inference.predictor: inference and training must not "
            "import each other"
        ],
        "emotrace.inference": [],
        "emotrace.inference.predictor": [],
    }
