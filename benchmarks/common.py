"""What every benchmark shares: the machine line, the results file, rows from CV runs."""

from __future__ import annotations

import datetime
import json
import platform
import sys
from pathlib import Path
from typing import Any

from emotrace.atomic import write_json_atomically
from emotrace.features.asr import available_cores
from emotrace.training.metrics import HEADLINE

RESULTS = Path(__file__).parent / "results"


def machine() -> str:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor() or "unknown CPU",
    )
    return f"{platform.system()} {platform.machine()}, {model}, {available_cores()} cores available"


def command() -> str:
    return "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])


def write_results(name: str, protocol: str, rows: list[dict[str, Any]], **extra: Any) -> Path:
    """``benchmarks/results/NAME.json`` in the guide's format, written atomically."""
    path = RESULTS / f"{name}.json"
    write_json_atomically(path, {
        "benchmark": name,
        "command": command(),
        "protocol": protocol,
        "machine": machine(),
        "date": datetime.date.today().isoformat(),
        **extra,
        "rows": rows,
    })
    return path


def row_from_run(system: str, run_dir: Path, **extra: Any) -> dict[str, Any]:
    """A results row from a finished ``emotrace cv`` run directory."""
    summary = json.loads((run_dir / "metrics.json").read_text())
    row = {"system": system, "method": summary["method"], "protocol": summary["protocol"],
           "folds": summary["folds"], "folds_protocol": summary["folds_protocol"]}
    for name in HEADLINE:
        row[f"{name}_mean"] = round(summary[f"{name}_mean"], 2)
        row[f"{name}_std"] = round(summary[f"{name}_std"], 2)
    row["recall_mean"] = {label: round(value, 1) for label, value in summary["recall_mean"].items()}
    row["seconds_per_fold"] = round(summary["seconds_per_fold"], 1)
    row["peak_mb"] = round(summary["peak_mb"])
    row["options"] = summary["options"]
    row["run"] = str(run_dir)
    return {**row, **extra}
