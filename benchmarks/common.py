"""What every benchmark shares: the machine line, the results file, rows from CV runs."""

from __future__ import annotations

import datetime
import json
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import wilcoxon

from emotrace.atomic import write_json_atomically
from emotrace.features.asr import available_cores
from emotrace.training.metrics import HEADLINE, speaker_bootstrap, summarise_folds
from emotrace.training.report import validation_summary

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parent.parent


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    return f"{platform.system()} {platform.machine()}, {model}, {available_cores()} cores available"


def command() -> str:
    """How the results were made, without ``--store DIR``: where features are cached changes no
    figure, and a machine's paths mean nothing to a reader. Quoted as a shell would need it, so
    that system names with spaces can be pasted back."""
    arguments = sys.argv[1:]
    if "--store" in arguments:
        at = arguments.index("--store")
        arguments = arguments[:at] + arguments[at + 2 :]
    return "python " + shlex.join([Path(sys.argv[0]).as_posix(), *arguments])


def write_results(
    name: str, protocol: str, rows: list[dict[str, Any]], directory: Path = RESULTS, **extra: Any
) -> Path:
    """``benchmarks/results/NAME.json`` (or ``directory/NAME.json``) in the guide's format, written atomically."""
    path = Path(directory) / f"{name}.json"
    write_json_atomically(
        path,
        {
            "benchmark": name,
            "command": command(),
            "protocol": protocol,
            "machine": machine(),
            "date": datetime.date.today().isoformat(),
            **extra,
            "rows": rows,
        },
    )
    return path


def earlier_results(name: str) -> dict[str, Any]:
    """The committed ``results/NAME.json`` with every row dated (a row it kept from an older run
    keeps that run's date), for a rerun of part of a benchmark to keep the rest; no rows when
    there is no file."""
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return {"rows": []}
    earlier = json.loads(path.read_text())
    earlier["rows"] = [{"date": earlier["date"], **row} for row in earlier["rows"]]
    return earlier


def seed_average(per_fold_by_seed: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per fold, the headline figures and per-class recalls averaged over seeds."""
    folds = [sorted(seed) for seed in per_fold_by_seed]
    if any(names != folds[0] for names in folds):
        raise ValueError(f"the seeds' runs hold different folds: {folds}; finish every run first")
    return {
        fold: {
            **{name: float(np.mean([seed[fold][name] for seed in per_fold_by_seed])) for name in HEADLINE},
            "recall": {
                label: float(np.mean([seed[fold]["recall"][label] for seed in per_fold_by_seed]))
                for label in metrics["recall"]
            },
        }
        for fold, metrics in per_fold_by_seed[0].items()
    }


def repo_path(path: Path) -> str:
    """``path`` relative to the repository when it lies inside, so results files hold no machine paths."""
    path = path.resolve()
    return path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path)


def run_predictions(run_dir: Path) -> list[dict[str, Any]]:
    """The pooled test predictions of a finished run (one record per test utterance)."""
    path = run_dir if run_dir.is_absolute() else REPO / run_dir
    return [json.loads(line) for line in (path / "predictions.jsonl").read_text().splitlines()]


def row_from_runs(system: str, run_dirs: list[Path], **extra: Any) -> dict[str, Any]:
    """A results row from finished ``emotrace cv`` runs of one config that differ only in
    their seeds (training seed, and the pairing of a built corpus): each fold's figures are
    averaged over the runs, then summarised over folds (mean ± std over folds, as for one
    run); ``ua_by_seed`` gives each run's own UA. ``val_ua_mean`` is the validation UA that
    chose the epochs (the figure settings are compared by); ``ua_ci`` is the 95 % bootstrap
    interval over test speakers of the pooled UA (``ua_pooled``)."""
    summaries = [json.loads((run_dir / "metrics.json").read_text()) for run_dir in run_dirs]
    first = summaries[0]
    summary = summarise_folds(seed_average([s["per_fold"] for s in summaries]), first["labels"])
    row = {
        "system": system,
        "method": first["method"],
        "protocol": first["protocol"],
        "folds": summary["folds"],
        "folds_protocol": first["folds_protocol"],
        "seeds": len(summaries),
    }
    for name in HEADLINE:
        row[f"{name}_mean"] = round(summary[f"{name}_mean"], 2)
        row[f"{name}_std"] = round(summary[f"{name}_std"], 2)
    row["ua_by_seed"] = [round(s["ua_mean"], 2) for s in summaries]
    validation = [validation_summary(s["per_fold"]).get("val_ua_mean") for s in summaries]
    row["val_ua_mean"] = None if None in validation else round(float(np.mean(validation)), 2)
    interval = speaker_bootstrap([run_predictions(run_dir) for run_dir in run_dirs])
    row["ua_pooled"], row["ua_ci"] = round(interval["ua"], 2), [round(interval["low"], 2), round(interval["high"], 2)]
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
    two-sided Wilcoxon signed-rank p over folds: whether a gap stands out from fold noise; and
    the gap in pooled UA with its 95 % paired bootstrap interval over test speakers
    (``pooled_difference``, ``difference_ci``): an interval that excludes 0 is a gap that
    does not hang on which speakers were tested."""
    ours, theirs = fold_ua(row), fold_ua(reference)
    if sorted(ours) != sorted(theirs):
        raise ValueError(f"{row['system']} and {reference['system']} were run on different folds")
    differences = [ours[fold] - theirs[fold] for fold in sorted(ours)]
    p_value = float(wilcoxon(differences).pvalue) if any(differences) else 1.0
    bootstrap = speaker_bootstrap(
        [run_predictions(Path(run)) for run in row["runs"]], [run_predictions(Path(run)) for run in reference["runs"]]
    )
    return {
        "against": reference["system"],
        "ua_difference": round(float(np.mean(differences)), 2),
        "per_fold": [round(d, 2) for d in differences],
        "wilcoxon_p": round(p_value, 3),
        "pooled_difference": round(bootstrap["difference"], 2),
        "difference_ci": [round(bootstrap["low"], 2), round(bootstrap["high"], 2)],
    }
