"""How much work the service takes on, and what it tells a monitor about it.

:class:`Admission` lets at most ``workers + max_queue`` predictions into the service at
once; past that a request is refused (503 with Retry-After) before a byte of its upload is
read, so a crowd of clients meets a quick "come back later" instead of an unbounded wait,
and no queue of uploads piles up on disk. :class:`Metrics` counts what happened and renders
it in the Prometheus text format for ``GET /metrics``.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

#: seconds; upper bounds of the latency histogram's buckets
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_SMOOTHING = 0.2  # weight of the newest prediction in the running mean of their durations
_MAX_RETRY_AFTER = 600


class Refused(Exception):
    """A request the service does not take now: 503, ``retry_after`` seconds."""

    def __init__(self, reason: str, message: str, retry_after: int):
        self.reason, self.retry_after = reason, retry_after
        super().__init__(message)


def shutting_down() -> Refused:
    """The refusal of a request that arrives, or still waits, once the server is stopping."""
    return Refused("shutting_down", "the service is shutting down; try again shortly", 5)


class Admission:
    """The count of predictions in the service (waiting or running) against its capacity."""

    def __init__(self, workers: int, max_queue: int):
        if max_queue < 0:
            raise ValueError(f"max_queue must not be negative, got {max_queue}")
        self.workers, self.max_queue = workers, max_queue
        self.inside = 0
        self.running = 0
        self.draining = False
        self.mean_seconds = 1.0  # a guess until the first prediction is timed

    @property
    def waiting(self) -> int:
        return self.inside - self.running

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the queue ahead, worked off by all workers."""
        estimate = self.mean_seconds * (self.waiting + 1) / self.workers
        return min(_MAX_RETRY_AFTER, max(1, math.ceil(estimate)))

    @contextmanager
    def admit(self) -> Iterator[None]:
        """A place in the service for one request; Refused when there is none."""
        if self.draining:
            raise shutting_down()
        if self.inside >= self.workers + self.max_queue:
            raise Refused(
                "queue_full",
                f"the service is busy ({self.running} predicting, {self.waiting} waiting); try again shortly",
                self.retry_after(),
            )
        self.inside += 1
        try:
            yield
        finally:
            self.inside -= 1

    @contextmanager
    def predicting(self) -> Iterator[None]:
        """Marks one admitted request as running, and times it for Retry-After."""
        self.running += 1
        started = time.monotonic()
        try:
            yield
        finally:
            self.running -= 1
            self.mean_seconds += _SMOOTHING * (time.monotonic() - started - self.mean_seconds)


class Metrics:
    """Counters and a latency histogram of ``POST /predict``, for Prometheus."""

    def __init__(self, admission: Admission):
        self.admission = admission
        self.responses: Counter[int] = Counter()
        self.rejected: Counter[str] = Counter()
        self.cancelled: Counter[str] = Counter()
        self.buckets = [0] * len(LATENCY_BUCKETS)
        self.count = 0
        self.total_seconds = 0.0

    def observe(self, status: int, seconds: float) -> None:
        """A /predict request that was admitted, answered with ``status`` after ``seconds``."""
        self.responses[status] += 1
        self.count += 1
        self.total_seconds += seconds
        for index, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                self.buckets[index] += 1

    def render(self) -> str:
        admission = self.admission
        lines = [
            *_gauge("emotrace_queue_length", "Predictions admitted and waiting for a worker.", admission.waiting),
            *_gauge("emotrace_predictions_running", "Predictions running now.", admission.running),
            *_gauge("emotrace_workers", "Predictions that can run at once.", admission.workers),
            *_gauge(
                "emotrace_queue_capacity", "Predictions that may wait before requests get 503.", admission.max_queue
            ),
            "# HELP emotrace_predict_requests_total Admitted POST /predict requests by response status.",
            "# TYPE emotrace_predict_requests_total counter",
            *(f'emotrace_predict_requests_total{{code="{code}"}} {n}' for code, n in sorted(self.responses.items())),
            "# HELP emotrace_rejected_total Requests refused before their upload was read, by reason.",
            "# TYPE emotrace_rejected_total counter",
            *(f'emotrace_rejected_total{{reason="{reason}"}} {n}' for reason, n in sorted(self.rejected.items())),
            "# HELP emotrace_cancelled_total Predictions dropped because their client had gone, by stage.",
            "# TYPE emotrace_cancelled_total counter",
            *(f'emotrace_cancelled_total{{stage="{stage}"}} {n}' for stage, n in sorted(self.cancelled.items())),
            "# HELP emotrace_predict_seconds Time from admission to response of POST /predict.",
            "# TYPE emotrace_predict_seconds histogram",
            *(
                f'emotrace_predict_seconds_bucket{{le="{bound:g}"}} {n}'
                for bound, n in zip(LATENCY_BUCKETS, self.buckets)
            ),
            f'emotrace_predict_seconds_bucket{{le="+Inf"}} {self.count}',
            f"emotrace_predict_seconds_sum {self.total_seconds:.6f}",
            f"emotrace_predict_seconds_count {self.count}",
        ]
        return "\n".join(lines) + "\n"


def _gauge(name: str, help_text: str, value: float) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value}"]
