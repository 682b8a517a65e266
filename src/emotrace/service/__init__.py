"""The HTTP service: :func:`create_app` serves one model (JSON endpoints and a web page),
``emotrace serve`` runs it with uvicorn.

FastAPI, uvicorn and python-multipart come with the ``service`` extra, which the core
install leaves out; importing this package without them says which extra to install
rather than failing on the first missing module.
"""

from __future__ import annotations

import importlib.util

#: distribution -> the names it may be imported as (python-multipart renamed its module)
SERVICE_PACKAGES: dict[str, tuple[str, ...]] = {
    "fastapi": ("fastapi",),
    "uvicorn": ("uvicorn",),
    "python-multipart": ("python_multipart", "multipart"),
}


def missing_service_packages() -> list[str]:
    """The packages of the ``service`` extra that are not installed."""
    return [
        package
        for package, modules in SERVICE_PACKAGES.items()
        if not any(importlib.util.find_spec(module) for module in modules)
    ]


_missing = missing_service_packages()
if _missing:
    raise ModuleNotFoundError(
        f"the HTTP service needs the 'service' extra: pip install 'emotrace[service]' "
        f"(not installed: {', '.join(_missing)})",
        name=_missing[0],
    )

from emotrace.service.app import DEFAULT_MAX_UPLOAD_BYTES, create_app  # noqa: E402

__all__ = ["DEFAULT_MAX_UPLOAD_BYTES", "create_app", "missing_service_packages"]
