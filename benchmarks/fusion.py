"""Does fusion help, and does it hurt when one modality says nothing? (guide section 5)

``control``: RAVDESS audio + its two fixed sentences (the words carry no emotion) through
methods B and C, against the same kind of model on audio alone; fusion must not fall below.
``paired``: each RAVDESS clip paired with a MELD utterance of the same emotion (corpus
``ravdess-meld``: 7 classes, calm dropped; audio folds by actor, text by dialogue group):
audio only, text only, methods B and C, the concatenation baseline and method C without its
regulariser; then method B tested with the text removed (the drop is reported).
``meld``: MELD text alone, official split, weighted-F1 and UA.

    EMOTRACE_DATA=../shared/data python benchmarks/fusion.py control|paired|meld [--jobs 2]

Each part writes ``benchmarks/results/<part>.json`` (``ravdess_control``, ``ravdess_meld_paired``,
``meld_text``) after every system; runs resume under ``runs/benchmarks/<part>/``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from emotrace.training.config import load_config
from emotrace.training.cv import evaluate_without, run_cv
from emotrace.training.metrics import summarise_folds

sys.path.insert(0, str(Path(__file__).parent))
from common import REPO, comparison, row_from_runs, seed_average, write_results

AUDIO_RUNS = REPO / "runs" / "benchmarks" / "ravdess_audio"

PARTS = {
    "control": (
        "ravdess_control",
        "RAVDESS speech, 8 classes, 6 EmoBox folds, utterance-level; text = the clip's fixed "
        "sentence (2 sentences in the corpus, no emotional content), MiniLM token states. "
        "Audio-alone references are the ravdess_audio benchmark's runs of the same recipe.",
        {
            "method B: audio + fixed text": "configs/ravdess/query_fusion_text.yaml",
            "method C: audio + fixed text": "configs/ravdess/contrastive_text.yaml",
        },
    ),
    "paired": (
        "ravdess_meld_paired",
        "RAVDESS clips paired with same-emotion MELD utterances (corpus ravdess-meld, seed 0): "
        "7 classes (calm dropped), 6 folds by RAVDESS actor with MELD dialogues split into 6 "
        "disjoint groups (text of a test fold never seen in its training); utterance-level.",
        {
            "audio only (method A)": "configs/ravdess_meld/audio_only.yaml",
            "text only (BiLSTM on MiniLM)": "configs/ravdess_meld/text_only.yaml",
            "method B: emotion queries": "configs/ravdess_meld/query_fusion.yaml",
            "method C: contrastive regulariser": "configs/ravdess_meld/contrastive.yaml",
            "method C without its regulariser": "configs/ravdess_meld/contrastive_no_regulariser.yaml",
            "concatenation baseline (mean-pooled codes)": "configs/ravdess_meld/concatenation.yaml",
        },
    ),
    "meld": (
        "meld_text",
        "MELD text alone, official split (train; dev selects the epoch; test reports), 7 classes, "
        "utterance-level; weighted-F1 is MELD's usual headline, UA is also given.",
        {"BiLSTM on MiniLM token states": "configs/meld/text_lstm.yaml"},
    ),
}

# The targets as (system, reference) pairs: each row gets its UA gap to the reference, fold by fold.
COMPARISONS = {
    "control": [("method B: audio + fixed text", "method B: audio only (reference)"),
                ("method C: audio + fixed text", "method A: audio only (reference for C)")],
    "paired": [("method B: emotion queries", "audio only (method A)"),
               ("method B: emotion queries", "text only (BiLSTM on MiniLM)"),
               ("method C: contrastive regulariser", "audio only (method A)"),
               ("method C: contrastive regulariser", "text only (BiLSTM on MiniLM)"),
               ("method C: contrastive regulariser", "method C without its regulariser"),
               ("concatenation baseline (mean-pooled codes)", "audio only (method A)")],
    "meld": [],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=sorted(PARTS))
    parser.add_argument("--store", default=os.environ.get("EMOTRACE_STORE", "~/.cache/emotrace/features"))
    parser.add_argument("--jobs", type=int, default=2, help="folds trained at once")
    parser.add_argument("--seeds", type=int, default=3, help="trainings per system (seeds 0..N-1)")
    parser.add_argument("--overrides", nargs="*", default=[], help="applied to every system's config")
    args = parser.parse_args()
    store = os.path.expanduser(args.store)
    name, protocol_text, systems = PARTS[args.part]
    protocol_text += f" Each system trained with {args.seeds} seeds; fold figures averaged over them."
    runs = REPO / "runs" / "benchmarks" / args.part
    rows: list[dict] = []
    for system, config_path in systems.items():
        run_dirs = []
        for seed in range(args.seeds):
            config = load_config(REPO / config_path, [f"seed={seed}", f"trainer.jobs={args.jobs}", f"store={store}",
                                                      *args.overrides])
            run_dirs.append(runs / f"{config.name}-seed{seed}")
            run_cv(config, run_dirs[-1], progress=False)
        rows.append(row_from_runs(system, run_dirs, config=config_path))
        if config.model["name"] == "query_fusion" and len(config.inputs) > 1:
            rows.append(without_text(system, run_dirs, rows[-1]))
        write_results(name, protocol_text, rows)
    if args.part == "control":
        for system, run in (("method B: audio only (reference)", "ravdess-query-fusion-audio-utterance-level"),
                            ("method A: audio only (reference for C)", "ravdess-roi-attention-utterance-level")):
            references = [AUDIO_RUNS / f"{run}-seed{seed}" for seed in range(args.seeds)]
            if all((reference / "metrics.json").exists() for reference in references):
                rows.append(row_from_runs(system, references))
    by_system = {row["system"]: row for row in rows}
    for system, reference in COMPARISONS[args.part]:
        if system in by_system and reference in by_system:
            by_system[system].setdefault("comparisons", []).append(comparison(by_system[system], by_system[reference]))
    write_results(name, protocol_text, rows)
    for row in rows:
        extra = f"  weighted-F1 {row['weighted_f1_mean']:.1f}" if "weighted_f1_mean" in row else ""
        print(f"{row['system']:<55} UA {row['ua_mean']:5.1f} ± {row['ua_std']:4.1f}  "
              f"WA {row['wa_mean']:5.1f} ± {row['wa_std']:4.1f}{extra}")


def without_text(system: str, run_dirs: list[Path], fused: dict) -> dict:
    """Method B's runs tested again with the text removed: the row, and its UA drop."""
    results = [evaluate_without(run_dir, ["text"]) for run_dir in run_dirs]
    fused_ua = float(np.mean([json.loads((run_dir / "metrics.json").read_text())["ua_mean"] for run_dir in run_dirs]))
    summary = summarise_folds(seed_average([result["per_fold"] for result in results]), list(fused["recall_mean"]))
    return {"system": f"{system}, text removed at test time", "method": "query_fusion",
            "protocol": fused["protocol"], "folds": summary["folds"], "seeds": len(run_dirs),
            **{f"{n}_{s}": round(summary[f"{n}_{s}"], 2) for n in ("ua", "wa") for s in ("mean", "std")},
            "ua_drop": round(fused_ua - summary["ua_mean"], 2)}


if __name__ == "__main__":
    main()
