"""What every benchmark shares: the machine line, the results file, rows from CV runs."""

from __future__ import annotations

import datetime
import json
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import wilcoxon

from emotrace.atomic import write_json_atomically
from emotrace.features.asr import available_cores
from emotrace.training.metrics import HEADLINE, summarise_folds

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parent.parent


def machine() -> str:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor() or "unknown CPU",
    )
    return f"{platform.system()} {platform.machine()}, {model}, {available_cores()} cores available"


def command() -> str:
    return "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])


def write_results(name: str, protocol: str, rows: list[dict[str, Any]], directory: Path = RESULTS,
                  **extra: Any) -> Path:
    """``benchmarks/results/NAME.json`` (or ``directory/NAME.json``) in the guide's format, written atomically."""
    path = Path(directory) / f"{name}.json"
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


def seed_average(per_fold_by_seed: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per fold, the headline figures and per-class recalls averaged over seeds."""
    folds = [sorted(seed) for seed in per_fold_by_seed]
    if any(names != folds[0] for names in folds):
        raise ValueError(f"the seeds' runs hold different folds: {folds}; finish every run first")
    return {
        fold: {
            **{name: float(np.mean([seed[fold][name] for seed in per_fold_by_seed])) for name in HEADLINE},
            "recall": {label: float(np.mean([seed[fold]["recall"][label] for seed in per_fold_by_seed]))
                       for label in metrics["recall"]},
        }
        for fold, metrics in per_fold_by_seed[0].items()
    }


def repo_path(path: Path) -> str:
    """``path`` relative to the repository when it lies inside, so results files hold no machine paths."""
    path = path.resolve()
    return path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path)


def row_from_runs(system: str, run_dirs: list[Path], **extra: Any) -> dict[str, Any]:
    """A results row from finished ``emotrace cv`` runs of one config that differ only in
    their seed: each fold's figures are averaged over the seeds, then summarised over folds
    (mean ± std over folds, as for one run); ``ua_by_seed`` gives each seed's own UA."""
    summaries = [json.loads((run_dir / "metrics.json").read_text()) for run_dir in run_dirs]
    first = summaries[0]
    summary = summarise_folds(seed_average([s["per_fold"] for s in summaries]), first["labels"])
    row = {"system": system, "method": first["method"], "protocol": first["protocol"],
           "folds": summary["folds"], "folds_protocol": first["folds_protocol"], "seeds": len(summaries)}
    for name in HEADLINE:
        row[f"{name}_mean"] = round(summary[f"{name}_mean"], 2)
        row[f"{name}_std"] = round(summary[f"{name}_std"], 2)
    row["ua_by_seed"] = [round(s["ua_mean"], 2) for s in summaries]
    row["recall_mean"] = {label: round(value, 1) for label, value in summary["recall_mean"].items()}
    row["seconds_per_fold"] = round(float(np.mean([s["seconds_per_fold"] for s in summaries])), 1)
    row["peak_mb"] = round(max(s["peak_mb"] for s in summaries))
    row["options"] = first["options"]
    row["runs"] = [repo_path(run_dir) for run_dir in run_dirs]
    return {**row, **extra}


def fold_ua(row: dict[str, Any]) -> dict[str, float]:
    """A row's UA per fold, averaged over its seeds' runs."""
    summaries = [json.loads((REPO / run_dir / "metrics.json").read_text()) for run_dir in row["runs"]]
    return {fold: metrics["ua"] for fold, metrics in seed_average([s["per_fold"] for s in summaries]).items()}


def comparison(row: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """How far ``row`` lies above ``reference`` in UA, fold by fold on the same folds, with the
    two-sided Wilcoxon signed-rank p over folds: whether a gap stands out from fold noise."""
    ours, theirs = fold_ua(row), fold_ua(reference)
    if sorted(ours) != sorted(theirs):
        raise ValueError(f"{row['system']} and {reference['system']} were run on different folds")
    differences = [ours[fold] - theirs[fold] for fold in sorted(ours)]
    p_value = float(wilcoxon(differences).pvalue) if any(differences) else 1.0
    return {"against": reference["system"], "ua_difference": round(float(np.mean(differences)), 2),
            "per_fold": [round(d, 2) for d in differences], "wilcoxon_p": round(p_value, 3)}
