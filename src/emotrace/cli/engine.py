"""``--engine``, ``--address`` and ``--actors``: where ``emotrace extract`` and ``emotrace predict``
compute, shared by both commands."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer


class Engine(str, Enum):
    local = "local"
    ray = "ray"


EngineOption = Annotated[
    Engine,
    typer.Option(
        help="local: this process; ray: a Ray cluster, local or joined with --address (pip install 'emotrace\\[ray]')."
    ),
]
AddressOption = Annotated[
    str | None,
    typer.Option(
        help="Ray cluster to join: 'auto' (started here with `ray start`) or ray://HOST:10001; "
        "default: a local cluster. With --engine ray."
    ),
]
ActorsOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Ray actors, each loading the models once (default: one per --threads CPUs of "
        "the cluster). With --engine ray.",
    ),
]


def check_engine_options(engine: Engine, address: str | None, actors: int | None) -> None:
    """Ray's options only with the Ray engine: silently ignoring them would mislead."""
    if engine != Engine.ray and (address is not None or actors is not None):
        raise typer.BadParameter("--address and --actors need --engine ray")
