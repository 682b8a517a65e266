"""Joining or starting a Ray cluster, and sizing actor pools to it.

Ray is imported here, lazily, so that ``emotrace`` without the ``ray`` extra still
imports and runs every single-machine path; a missing Ray is one line naming the extra.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from emotrace.errors import EmotraceError

RAY_EXTRA = "pip install 'emotrace[ray]'"


def require_ray() -> ModuleType:
    """The ``ray`` module, or an EmotraceError naming the extra that installs it."""
    try:
        import ray
        import ray.data  # the pipelines need Ray Data, not only Ray core
    except ImportError:
        raise EmotraceError(f"the Ray engine needs Ray Data, which is not installed: {RAY_EXTRA}") from None
    return ray


@contextmanager
def ray_cluster(address: str | None = None, num_cpus: int | None = None) -> Iterator[ModuleType]:
    """Ray, connected for the duration of the block.

    ``address`` joins a running cluster (``auto``: the one started on this node with ``ray
    start``; ``ray://host:10001``: through Ray Client); None starts a local cluster on this
    machine (``num_cpus`` of its cores, default all) and shuts it down afterwards. If Ray is
    already initialised in this process (a notebook, a test), that session is used as it is.
    """
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    options: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
    if address is None:
        options["num_cpus"] = num_cpus
    try:
        ray.init(address=address, **options)
    except (ConnectionError, ValueError) as error:
        raise EmotraceError(f"cannot reach the Ray cluster at {address}: {error}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def quiet_data_context() -> None:
    """Ray Data without its own progress bars and start-up banners: emotrace shows its own."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False


@dataclass(frozen=True)
class ActorPool:
    """How many model-holding actors run, each with ``threads`` CPUs (its torch and BLAS threads).

    Actors run on CPUs: emotrace's extractors and predictors compute on the CPU.
    """

    size: int
    threads: int

    def remote_args(self, blocks: int) -> dict[str, Any]:
        """``map_batches`` arguments for a fixed pool of these actors, no larger than the
        ``blocks`` of input it will get (an actor without input only costs start-up)."""
        import ray.data

        return {"compute": ray.data.ActorPoolStrategy(size=max(1, min(self.size, blocks))), "num_cpus": self.threads}


def actor_pool(actors: int | None = None, threads: int = 1) -> ActorPool:
    """A pool that keeps the cluster busy: by default one actor per ``threads`` CPUs of the
    cluster (each actor loads every model once, so memory grows with the pool)."""
    import ray

    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    if actors is None:
        actors = max(1, int(ray.cluster_resources().get("CPU", 1) // threads))
    if actors < 1:
        raise ValueError(f"actors must be at least 1, got {actors}")
    return ActorPool(actors, threads)


def working_directory() -> str:
    """The driver's folder: actors change to it (when it exists on their node) so that
    relative paths name the same files, and results name them as the local path does."""
    return os.getcwd()


def enter(directory: str, threads: int) -> None:
    """What every actor does first: the driver's folder, and ``threads`` threads for torch and
    the BLAS and OpenMP pools (a thread count can change the last bits of a float, so an
    actor computes exactly what a local run with as many threads computes)."""
    import torch
    from threadpoolctl import threadpool_limits

    if os.path.isdir(directory):
        os.chdir(directory)
    torch.set_num_threads(threads)
    threadpool_limits(threads)  # stays in force: the process is this actor's alone
