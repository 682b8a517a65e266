"""``emotrace serve`` under load: 1, 8, 32 and 120 concurrent clients on loopback.

The server runs as ``emotrace serve`` would be run (its own process, worker processes,
default queue), on 127.0.0.1 only. Each client thread sends a fixed number of uploads of a
shipped RAVDESS clip, one after another, each on a new connection; a client told 503 waits
the Retry-After it was given (at most ``--max-wait`` s) before its next request, as a polite
client would, and the 503 counts as one of its requests. Meanwhile a prober in a process of
its own (so the clients' threads do not hold it up) asks GET /health every 100 ms. Every loop
is bounded in count and time, and the server is stopped at the end.

Reported per level: throughput (answered uploads per second), latency percentiles of the
accepted (200) and of all responses, the status codes, /health's p99, and the peak memory
(high-water RSS) of the server and its workers together, so far. Targets: no 5xx; past
capacity 503s rather than unbounded waits; accepted p99 at 32 clients <= 5x the 1-client
p99; /health p99 < 100 ms.

    python benchmarks/service_load.py [--workers 1] [--max-queue 3]
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import write_results

HOST = "127.0.0.1"  # loopback only: this benchmark never sends traffic anywhere else
LEVELS = ((1, 12), (8, 3), (32, 2), (120, 1))  # (clients, requests per client)
REQUEST_TIMEOUT = 300.0
HEALTH_EVERY = 0.1


def post(port: int, body: bytes, content_type: str) -> tuple[int, float, float]:
    """(status, seconds, Retry-After seconds or 0) of one upload; status 0 for a failed connection."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)
    try:
        connection.request("POST", "/predict", body, {"Content-Type": content_type})
        response = connection.getresponse()
        response.read()
        retry = float(response.getheader("Retry-After") or 0)
        return response.status, time.perf_counter() - started, retry
    except OSError:
        return 0, time.perf_counter() - started, 0.0
    finally:
        connection.close()


def get(port: int, path: str) -> tuple[int, float, bytes]:
    started = time.perf_counter()
    connection = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, time.perf_counter() - started, response.read()
    except OSError:
        return 0, time.perf_counter() - started, b""
    finally:
        connection.close()


def multipart(path: Path) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n\r\n'.encode()
        + path.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def level(port: int, clients: int, requests: int, clip: Path, max_wait: float) -> dict:
    body, content_type = multipart(clip)
    results: list[tuple[int, float]] = []
    lock = threading.Lock()

    def client() -> None:
        for _ in range(requests):
            status, seconds, retry = post(port, body, content_type)
            with lock:
                results.append((status, seconds))
            if status == 503:
                time.sleep(min(retry, max_wait))

    context = multiprocessing.get_context("fork")  # no threads are running yet: forking is safe
    stop = context.Event()
    receiving, sending = context.Pipe(duplex=False)
    watcher = context.Process(target=probe_health, args=(port, stop, sending))
    watcher.start()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=REQUEST_TIMEOUT * requests + max_wait * requests)
    wall = time.perf_counter() - started
    stop.set()
    health = receiving.recv()
    watcher.join(timeout=30)

    statuses = Counter(status for status, _ in results)
    accepted = [seconds for status, seconds in results if status == 200]
    every = [seconds for _, seconds in results]
    return {
        "clients": clients,
        "requests": len(results),
        "seconds": round(wall, 1),
        "throughput": round(len(accepted) / wall, 3),
        "status": {str(code): count for code, count in sorted(statuses.items())},
        **percentiles("accepted", accepted),
        **percentiles("all", every),
        "health_p99_ms": round(1000 * float(np.percentile(health, 99)), 1) if health else None,
        "health_probes": len(health),
    }


def probe_health(port: int, stop: multiprocessing.synchronize.Event, results) -> None:
    """GET /health every 100 ms until ``stop``; sends back the latencies of the answered ones."""
    latencies = []
    while not stop.wait(HEALTH_EVERY):
        status, seconds, _ = get(port, "/health")
        if status == 200:
            latencies.append(seconds)
    results.send(latencies)


def percentiles(name: str, seconds: list[float]) -> dict:
    if not seconds:
        return {f"{name}_p{q}_ms": None for q in (50, 95, 99)}
    return {f"{name}_p{q}_ms": round(1000 * float(np.percentile(seconds, q)), 1) for q in (50, 95, 99)}


def peak_mb(pid: int) -> float:
    """High-water RSS of the server and its live children (the workers), in MB."""
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        pids += [int(child) for child in (task / "children").read_text().split()]
    total = 0
    for each in pids:
        try:
            status = Path(f"/proc/{each}/status").read_text()
        except FileNotFoundError:
            continue
        total += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)
    return round(total / 1024, 1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--max-queue", type=int, default=3)
    parser.add_argument("--max-wait", type=float, default=10.0, help="longest Retry-After a client honours (s)")
    args = parser.parse_args()

    from emotrace.samples import sample_clips

    clip = sample_clips()[0]
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emotrace",
            "serve",
            "--host",
            HOST,
            "--port",
            str(port),
            "--workers",
            str(args.workers),
            "--max-queue",
            str(args.max_queue),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ.copy(),
    )
    rows = []
    try:
        deadline = time.monotonic() + 600
        while get(port, "/health")[0] != 200:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the server did not start")
            time.sleep(0.5)
        post(port, *multipart(clip))  # warm-up: lazy extractors built, caches filled
        for clients, requests in LEVELS:
            row = level(port, clients, requests, clip, args.max_wait)
            row["peak_mb"] = peak_mb(server.pid)
            row = {
                "system": f"emotrace serve (workers {args.workers}, queue {args.max_queue}), {clients} clients",
                **row,
            }
            rows.append(row)
            print(row, flush=True)
        metrics = get(port, "/metrics")[2].decode()
    finally:
        server.terminate()
        server.wait(timeout=60)

    single, busy = rows[0]["accepted_p99_ms"], rows[2]["accepted_p99_ms"]
    targets = {
        # 503 is the refusal asked for past capacity; any other 5xx, or a dropped connection (0), is a failure
        "no_5xx": not any((code[0] == "5" and code != "503") or code == "0" for row in rows for code in row["status"]),
        "503_past_capacity": "503" in rows[-1]["status"],
        "p99_32_clients_over_1_client": round(busy / single, 2) if single and busy else None,
        "p99_32_clients_within_5x": bool(single and busy and busy <= 5 * single),
        "health_p99_under_100ms": all(row["health_p99_ms"] is not None and row["health_p99_ms"] < 100 for row in rows),
    }
    rejected = [line for line in metrics.splitlines() if line.startswith("emotrace_rejected_total")]
    path = write_results(
        "service_load",
        "closed-loop HTTP load on 127.0.0.1: each client sends a fixed number of uploads of a 3.7 s RAVDESS clip "
        "(shipped sample), honouring Retry-After up to 10 s after a 503; latency from request to full response",
        rows,
        targets=targets,
        server_rejected=rejected,
    )
    print(targets)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
