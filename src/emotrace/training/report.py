"""What a run reports: pooled predictions, metrics over folds, confusion matrix, Markdown.

Everything here is recomputed from the folds' files (``emotrace evaluate RUN_DIR``), so a
report can be rebuilt at any time and always matches the predictions it summarises. Every
report states the protocol (utterance-level or speaker-adaptive), how folds were made
(speaker-independent, speaker-dependent or official split) and which training options
were on, because a number without them is meaningless.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from emotrace.atomic import (
    atomic_path,
    write_json_atomically,
    write_jsonl_atomically,
    write_text_atomically,
)
from emotrace.training.calibration import calibration_markdown, summarise_calibration
from emotrace.training.config import ExperimentConfig, load_config
from emotrace.training.crosscorpus import swallowing, within_corpus_breakdown
from emotrace.training.metrics import HEADLINE, classification_metrics, summarise_folds

CONFUSION_FILE = "confusion.png"
REPORT_FILE = "report.md"


def _read_folds(run_dir: Path) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    metrics, predictions = {}, []
    for fold_dir in sorted((run_dir / "folds").glob("*")):
        path = fold_dir / "metrics.json"
        if path.exists():
            result = json.loads(path.read_text())
            if "ua" in result:
                metrics[fold_dir.name] = result
                predictions += [json.loads(line) for line in (fold_dir / "predictions.jsonl").read_text().splitlines()]
    return metrics, predictions


def training_options(config: ExperimentConfig) -> dict[str, Any]:
    """The options that change results, for the report's "which were on" line."""
    model = config.model
    return {
        "protocol": config.protocol,
        "layers": {m: list(spec.layers) if spec.layers else "all" for m, spec in config.inputs.items()},
        "learnable layer weighting": any(
            spec.layers is None or len(spec.layers) > 1 for spec in config.inputs.values()
        ),
        "frame pooling": {m: spec.frame_pooling for m, spec in config.inputs.items()},
        "class-balanced sampling": config.data.balanced_sampling,
        "class-weighted loss": config.data.class_weights,
        "random crops (s)": config.data.crop_seconds,
        "time masking (share of frames)": config.data.time_mask,
        "label smoothing": model.get("label_smoothing", 0.0),
        "input standardisation (training moments)": model.get("standardise_inputs", False),
        "weight averaging (EMA decay)": config.optim.ema_decay,
        "noisy text (share of training-side items)": config.data.noisy_text,
        **({"corpus-balanced sampling": config.data.corpus_balanced} if config.corpora else {}),
        **({"per-utterance normalisation": True} if any(s.utterance_norm for s in config.inputs.values()) else {}),
    }


def write_report(run_dir: str | Path) -> dict[str, Any]:
    """Rebuild ``metrics.json``, ``predictions.jsonl``, ``confusion.png`` and ``report.md``."""
    run_dir = Path(run_dir)
    config = load_config(run_dir / "config.yaml")
    per_fold, predictions = _read_folds(run_dir)
    if not per_fold:
        raise ValueError(f"{run_dir}: no finished folds to report")
    labels = _labels(run_dir, per_fold)
    info = _fold_info(run_dir, next(iter(per_fold)))
    corpora = info.get("corpora")
    cross = {fold: metrics["cross_corpus"] for fold, metrics in per_fold.items() if "cross_corpus" in metrics}
    if cross:
        pooled = _pooled_cross_corpus(per_fold)
    else:
        index = {label: i for i, label in enumerate(labels)}
        pooled = classification_metrics(
            [index[row["label"]] for row in predictions], [index[row["prediction"]] for row in predictions], labels
        )
        if corpora:
            pooled["per_corpus"] = within_corpus_breakdown(predictions, corpora)
    folds_protocol = info.get("folds_protocol", "unknown")
    summary = {
        "experiment": config.name,
        "corpus": config.corpus_name,
        "method": config.model["name"],
        "protocol": config.protocol,
        "folds_protocol": folds_protocol,
        "labels": list(labels),
        **(
            {"corpora": corpora, "trained_on": {fold: _fold_info(run_dir, fold).get("trained_on") for fold in per_fold}}
            if corpora
            else {}
        ),
        **(
            {
                "cross_corpus": cross,
                "warnings": [
                    f"fold {fold}, {warning}" for fold, entry in cross.items() for warning in swallowing(entry)
                ],
            }
            if cross
            else {}
        ),
        "options": training_options(config),
        **summarise_folds(per_fold, labels),
        **validation_summary(per_fold),
        "pooled": pooled,
        "per_fold": per_fold,
        "seconds_per_fold": float(np.mean([m["seconds"] for m in per_fold.values()])),
        "peak_mb": float(max(m["peak_mb"] for m in per_fold.values())),
        **summarise_calibration(per_fold, predictions, labels),
    }
    write_json_atomically(run_dir / "metrics.json", summary)
    write_jsonl_atomically(run_dir / "predictions.jsonl", predictions)
    plot_confusion(
        np.array(pooled["confusion"]),
        tuple(pooled.get("classes", labels)),
        run_dir / CONFUSION_FILE,
        f"{config.name} ({config.protocol}, pooled over {len(per_fold)} folds)",
    )
    write_text_atomically(run_dir / REPORT_FILE, markdown_report(summary))
    return summary


def validation_summary(per_fold: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean and std over folds of the validation UA that chose each fold's epoch: the figure
    by which settings are compared (test folds are read once, to report); empty when a fold
    had no validation speakers."""
    values = [fold.get("val_ua") for fold in per_fold.values()]
    if not values or any(value is None for value in values):
        return {}
    return {"val_ua_mean": float(np.mean(values)), "val_ua_std": float(np.std(values))}


def _labels(run_dir: Path, per_fold: dict[str, dict[str, Any]]) -> tuple[str, ...]:
    checkpoint_config = run_dir / "folds" / next(iter(per_fold)) / "model" / "config.json"
    return tuple(json.loads(checkpoint_config.read_text())["labels"])


def _fold_info(run_dir: Path, fold: str) -> dict[str, Any]:
    checkpoint_config = run_dir / "folds" / fold / "model" / "config.json"
    return json.loads(checkpoint_config.read_text())["info"]


def _pooled_cross_corpus(per_fold: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The folds' cross-corpus (four-class protocol) test items pooled: their confusion
    matrices summed, when every fold scored the same classes."""
    classes = {tuple(metrics["classes"]) for metrics in per_fold.values()}
    if len(classes) != 1:
        raise ValueError(f"the folds scored different classes {sorted(classes)}: nothing to pool")
    (labels,) = classes
    confusion = np.sum([metrics["confusion"] for metrics in per_fold.values()], axis=0)
    y_true = np.repeat(np.arange(len(labels)), confusion.sum(1))
    y_pred = np.concatenate([np.repeat(np.arange(len(labels)), row) for row in confusion])
    return {**classification_metrics(y_true, y_pred, labels), "classes": list(labels)}


def plot_confusion(confusion: np.ndarray, labels: tuple[str, ...], path: Path, title: str) -> None:
    """Row-normalised confusion matrix (recall per true class), counts in each cell."""
    rows = confusion.sum(1, keepdims=True)
    share = np.divide(confusion, rows, out=np.zeros(confusion.shape, float), where=rows > 0)
    size = 1.0 + 0.75 * len(labels)
    figure, axes = plt.subplots(figsize=(size + 1.5, size))
    image = axes.imshow(share, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    for (row, column), count in np.ndenumerate(confusion):
        colour = "white" if share[row, column] > 0.5 else "black"
        axes.text(
            column, row, f"{100 * share[row, column]:.0f}%\n{count}", ha="center", va="center", fontsize=8, color=colour
        )
    axes.set_title(title, fontsize=10)
    figure.colorbar(image, ax=axes, fraction=0.046, label="share of true class")
    figure.tight_layout()
    with atomic_path(path) as temp:
        figure.savefig(temp, dpi=120, format="png")
    plt.close(figure)


def markdown_report(summary: dict[str, Any]) -> str:
    headline = " · ".join(
        f"{name.upper().replace('_', '-')} {summary[f'{name}_mean']:.1f} ± {summary[f'{name}_std']:.1f}"
        for name in HEADLINE
    )
    lines = [
        f"# {summary['experiment']}",
        "",
        (
            f"**{summary['method']}** on **{summary['corpus']}**, protocol **{summary['protocol']}**, "
            f"folds {summary['folds_protocol']} ({summary['folds']} folds)."
        ),
        "",
        f"{headline} (mean ± std over folds, percent).",
        "",
        "| fold | UA | WA | macro-F1 | val UA | epochs | seconds | peak MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, fold in summary["per_fold"].items():
        val = f"{fold['val_ua']:.1f}" if fold.get("val_ua") is not None else "–"
        lines.append(
            f"| {name} | {fold['ua']:.1f} | {fold['wa']:.1f} | {fold['macro_f1']:.1f} | {val} | "
            f"{fold['epochs']} | {fold['seconds']:.0f} | {fold['peak_mb']:.0f} |"
        )
    lines += [
        "",
        "Per-class recall (mean over folds): "
        + ", ".join(f"{label} {value:.1f}" for label, value in summary["recall_mean"].items()),
        "",
    ]
    lines += _cross_corpus_lines(summary) + _per_corpus_lines(summary)
    lines += ["Options: " + "; ".join(f"{key}: {value}" for key, value in summary["options"].items()), ""]
    lines += calibration_markdown(summary)
    lines += [f"![confusion matrix]({CONFUSION_FILE})", ""]
    return "\n".join(lines)


def _cross_corpus_lines(summary: dict[str, Any]) -> list[str]:
    """Per fold and unseen test corpus: both label protocols and the largest predicted share."""
    if "cross_corpus" not in summary:
        return []
    lines = [
        "Cross-corpus (each fold's model tested on corpora it never trained on; predictions restricted to "
        "the protocol's classes): **4-class** is EmoBox's protocol (neutral, happy, sad, angry), **shared** "
        "every class the test corpus shares with the training corpora.",
        "",
        "| fold | trained on | test corpus | 4-class acc | 4-class UA | shared classes | shared acc | shared UA "
        "| most predicted (all classes) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for fold, entries in summary["cross_corpus"].items():
        trained = ", ".join(summary.get("trained_on", {}).get(fold) or [])
        for corpus, entry in entries.items():
            four, shared = entry["cross4"], entry["shared"]
            top, share = max(entry["predicted_shares_all"].items(), key=lambda item: item[1])
            lines.append(
                f"| {fold} | {trained} | {corpus} | {_figure(four, 'wa')} | {_figure(four, 'ua')} | "
                f"{len(shared['classes'])} | {_figure(shared, 'wa')} | {_figure(shared, 'ua')} | "
                f"{top} {share:.0f}% |"
            )
    lines.append("")
    lines += [f"**Warning**: {warning}." for warning in summary.get("warnings", [])]
    return [*lines, ""] if summary.get("warnings") else lines


def _per_corpus_lines(summary: dict[str, Any]) -> list[str]:
    per_corpus = summary["pooled"].get("per_corpus")
    if not per_corpus:
        return []
    lines = [
        "Per corpus (pooled over folds, each in its own classes):",
        "",
        "| corpus | classes | UA | WA | macro-F1 |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {corpus} | {len(m['classes'])} | {m['ua']:.1f} | {m['wa']:.1f} | {m['macro_f1']:.1f} |"
        for corpus, m in per_corpus.items()
    ]
    return [*lines, ""]


def _figure(metrics: dict[str, Any], name: str) -> str:
    return f"{metrics[name]:.1f}" if name in metrics else "–"


def compare_runs(run_dirs: list[str | Path]) -> list[dict[str, Any]]:
    """One row per run: experiment, method, protocol, headline figures (mean and std), and
    the validation UA (``val_ua_mean``, None when a fold had no validation speakers)."""
    rows = []
    for run_dir in run_dirs:
        path = Path(run_dir) / "metrics.json"
        if not path.exists():
            raise ValueError(f"{run_dir}: no metrics.json (is it a finished run? try `emotrace evaluate`)")
        summary = json.loads(path.read_text())
        row = {key: summary[key] for key in ("experiment", "method", "corpus", "protocol", "folds_protocol", "folds")}
        for name in HEADLINE:
            row[f"{name}_mean"], row[f"{name}_std"] = summary[f"{name}_mean"], summary[f"{name}_std"]
        row["val_ua_mean"] = validation_summary(summary["per_fold"]).get("val_ua_mean")
        row["run"] = str(run_dir)
        rows.append(row)
    return rows


def select_by_validation(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The row of :func:`compare_runs` with the highest validation UA: how a setting is chosen.

    The runs must share corpus, protocol and folds, or their validation sets differ and the
    comparison means nothing; runs without validation speakers cannot be chosen between.
    """
    if not rows:
        raise ValueError("no runs to choose between")
    keys = ("corpus", "protocol", "folds_protocol", "folds")
    differing = [key for key in keys if len({str(row[key]) for row in rows}) > 1]
    if differing:
        raise ValueError(f"runs differ in {', '.join(differing)}: validation cannot choose between them")
    missing = [row["run"] for row in rows if row["val_ua_mean"] is None]
    if missing:
        raise ValueError(f"no validation UA in {', '.join(missing)} (folds without validation speakers)")
    return max(rows, key=lambda row: row["val_ua_mean"])
