"""Choose a setting on validation speakers: train each variant, compare validation UA only.

Every choice of recipe (EMA of the weights, learning rates, schedules, pooling, model
options, alpha) must be made on validation speakers drawn from the training side, never on
test folds. A screen trains each variant of a config with ``emotrace cv`` (every fold, or
``--folds``), reads the validation UA that chose each fold's epoch, averages it over folds and
seeds, and names the variant validation picks. Test figures are not read: they are reported
once, by the benchmark, for the chosen setting.

    EMOTRACE_DATA=../shared/data python benchmarks/selection.py SCREEN [--seeds 1] [--jobs 2] [--folds fold1 fold2]
    python benchmarks/selection.py --list

Results go to ``benchmarks/results/selection/SCREEN.json``; runs resume under
``runs/selection/<config name>/<overrides>-seed<N>/``, so screens that share a variant share its runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from emotrace.training.config import load_config
from emotrace.training.cv import run_cv

sys.path.insert(0, str(Path(__file__).parent))
from common import REPO, RESULTS, write_results

RAVDESS_A = "configs/ravdess/roi_attention.yaml"
RAVDESS_A_PAPER = "configs/ravdess/roi_attention_paper.yaml"
PAIRED = ["corpus.read_seed=0"]  # one pairing for every variant of a paired screen
B_CHOSEN = "configs/ravdess_meld/query_fusion_bilstm_audio.yaml"
# the settings method B's screens ran at before b-lr and epochs changed its config, spelled out
SCHEDULE_30 = ["optim.max_epochs=30", "optim.patience=8"]
B_EARLIER = ["optim.lr=1e-3", *SCHEDULE_30]
# b-masking's chosen variant, the reference of the B screens after it (sharing its runs)
B_MASKED = (B_CHOSEN, [*PAIRED, "model.modality_mask_prob=0.7", *B_EARLIER])
# A variant: (config, overrides), or (config, overrides, stage before): a staged variant's folds
# start from the same seed's run of the stage before it, trained first.
Variant = tuple[str, list[str]] | tuple[str, list[str], tuple[str, list[str]]]
# screen -> (what it decides, {variant: Variant})
SCREENS: dict[str, tuple[str, dict[str, Variant]]] = {
    "ema": (
        "moving average of the weights for method A (adopted earlier on test UA)",
        {
            "hybrid, EMA 0.99": (RAVDESS_A, []),
            "hybrid, no EMA": (RAVDESS_A, ["optim.ema_decay=null"]),
            "paper's pooling, EMA 0.99": (RAVDESS_A_PAPER, []),
            "paper's pooling, no EMA": (RAVDESS_A_PAPER, ["optim.ema_decay=null"]),
        },
    ),
    "a-pooling": (
        "method A: the paper's attention pooling or the hybrid with mean pooling",
        {
            "paper's pooling": (RAVDESS_A_PAPER, []),
            "hybrid": (RAVDESS_A, []),
        },
    ),
    "b-lr": (
        "method B's learning rate (adopted earlier on test UA), on the recipe validation chose for it",
        {
            f"lr {lr}": (  # lr 1e-3 is b-text's chosen variant, spelled alike so they share its runs
                B_CHOSEN,
                [*PAIRED, "model.modality_mask_prob=0.7", f"optim.lr={lr}", *SCHEDULE_30],
            )
            for lr in ("5e-4", "1e-3", "2e-3")
        },
    ),
    "epochs": (
        "the paired schedule (30 epochs, patience 8, adopted earlier on test UA), on method B as validation chose it "
        "(learning rate 2e-3, b-lr)",
        {
            f"{epochs} epochs, patience {patience}": (  # 30 epochs: b-lr's chosen variant, sharing its runs
                B_CHOSEN,
                [
                    *PAIRED,
                    "model.modality_mask_prob=0.7",
                    "optim.lr=2e-3",
                    f"optim.max_epochs={epochs}",
                    f"optim.patience={patience}",
                ],
            )
            for epochs, patience in ((30, 8), (60, 12))
        },
    ),
    "a-epochs": (
        "the paired schedule for audio alone (method A, the paired benchmark's reference)",
        {
            f"{epochs} epochs, patience {patience}": (
                "configs/ravdess_meld/audio_only.yaml",
                [*PAIRED, f"optim.max_epochs={epochs}", f"optim.patience={patience}"],
            )
            for epochs, patience in ((30, 8), (60, 12))
        },
    ),
    "b-audio": (
        "method B's audio path on RAVDESS audio: encoder and layer norm placement",
        {
            "transformer, post-norm (paper)": ("configs/ravdess/query_fusion_audio.yaml", []),
            "transformer, pre-norm": ("configs/ravdess/query_fusion_audio.yaml", ["model.norm_first=true"]),
            "BiLSTM encoder": ("configs/ravdess/query_fusion_audio.yaml", ["model.encoder_types={audio: bilstm}"]),
            "BiLSTM encoder, pre-norm decoder": (
                "configs/ravdess/query_fusion_audio.yaml",
                ["model.encoder_types={audio: bilstm}", "model.norm_first=true"],
            ),
            "3 queries per class, pooled head": (
                "configs/ravdess/query_fusion_audio.yaml",
                ["model.queries_per_class=3", "model.readout=pooled"],
            ),
        },
    ),
    "b-options": (
        "method B on the paired corpus: the options for its audio path",
        {
            "paper": ("configs/ravdess_meld/query_fusion.yaml", PAIRED),
            "BiLSTM audio": (
                "configs/ravdess_meld/query_fusion.yaml",
                [*PAIRED, "model.encoder_types={audio: bilstm}"],
            ),
            "unimodal losses 0.5": (
                "configs/ravdess_meld/query_fusion.yaml",
                [*PAIRED, "model.unimodal_loss_weight=0.5"],
            ),
            "all options": (
                "configs/ravdess_meld/query_fusion.yaml",
                [
                    *PAIRED,
                    "model.encoder_types={audio: bilstm}",
                    "model.norm_first=true",
                    "model.unimodal_loss_weight=0.5",
                ],
            ),
        },
    ),
    "b-masking": (
        "how often method B (BiLSTM audio) hides a modality in training",
        {
            f"hide one modality with probability {prob}": (
                B_CHOSEN,
                [*PAIRED, f"model.modality_mask_prob={prob}", *B_EARLIER],
            )
            for prob in (0.3, 0.5, 0.7)
        },
    ),
    "b-text": (
        "method B's text encoder (BiLSTM audio, hiding a modality with probability 0.7 as b-masking chose)",
        {
            "transformer text encoder": B_MASKED,
            "BiLSTM text encoder": (
                B_CHOSEN,
                [
                    *PAIRED,
                    "model.modality_mask_prob=0.7",
                    "model.encoder_types={audio: bilstm, text: bilstm}",
                    *B_EARLIER,
                ],
            ),
        },
    ),
    "b-pretrained": (
        "method B's audio path: trained with text from the start, or pretrained on audio alone first",
        {
            "from scratch": B_MASKED,
            "audio path pretrained on audio alone": (
                "configs/ravdess_meld/query_fusion_pretrained_audio.yaml",
                PAIRED,
                ("configs/ravdess_meld/query_fusion_bilstm_audio_only.yaml", PAIRED),
            ),
        },
    ),
    "c-alpha": (
        "alpha of method C's regulariser with the authors' objective",
        {
            f"alpha {alpha}": (
                "configs/ravdess_meld/contrastive_authors_objective.yaml",
                [*PAIRED, f"model.alpha={alpha}"],
            )
            for alpha in (0.1, 0.3, 0.5, 0.7, 0.9)
        },
    ),
    "c-objective": (
        "method C's objective: this project's or the authors'",
        {
            "additive, label-aware negatives": ("configs/ravdess_meld/contrastive.yaml", PAIRED),
            "authors' weighting and negatives": ("configs/ravdess_meld/contrastive_authors_objective.yaml", PAIRED),
            "no regulariser": ("configs/ravdess_meld/contrastive_no_regulariser.yaml", PAIRED),
        },
    ),
}


def validation_figures(run_dirs: list[Path]) -> dict:
    """Validation UA of runs that differ in seed: per fold the mean over seeds, then mean and
    std over folds; each seed's own mean; mean epochs trained. No test figure is read."""
    per_seed = []
    for run_dir in run_dirs:
        folds = {}
        for path in sorted((run_dir / "folds").glob("*/metrics.json")):
            metrics = json.loads(path.read_text())
            if metrics.get("val_ua") is None:
                raise ValueError(f"{path}: no validation UA (a fold without validation speakers)")
            folds[path.parent.name] = (metrics["val_ua"], metrics["epochs"])
        per_seed.append(folds)
    names = sorted(per_seed[0])
    if any(sorted(folds) != names for folds in per_seed):
        raise ValueError(f"the seeds' runs hold different folds: {[sorted(f) for f in per_seed]}")
    by_fold = np.array([[folds[name][0] for name in names] for folds in per_seed]).mean(0)
    return {
        "val_ua_mean": round(float(by_fold.mean()), 2),
        "val_ua_std": round(float(by_fold.std()), 2),
        "val_ua_by_seed": [round(float(np.mean([f[n][0] for n in names])), 2) for f in per_seed],
        "epochs_mean": round(float(np.mean([f[n][1] for f in per_seed for n in names])), 1),
        "folds": names,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("screen", nargs="?", choices=sorted(SCREENS))
    parser.add_argument("--list", action="store_true", help="list the screens and their variants")
    parser.add_argument("--store", default=os.environ.get("EMOTRACE_STORE", "~/.cache/emotrace/features"))
    parser.add_argument("--jobs", type=int, default=2, help="folds trained at once")
    parser.add_argument("--seeds", type=int, default=1, help="trainings per variant (seeds 0..N-1)")
    parser.add_argument("--folds", nargs="+", default=None, help="a subset of folds (default: every fold)")
    parser.add_argument("--variants", nargs="+", default=None, help="a subset of the screen's variants")
    args = parser.parse_args()
    if args.list or not args.screen:
        for name, (decides, variants) in SCREENS.items():
            print(f"{name}: {decides}\n    " + "\n    ".join(variants))
        return
    decides, variants = SCREENS[args.screen]
    store = os.path.expanduser(args.store)
    folds = [f"folds=[{', '.join(args.folds)}]"] if args.folds else []
    rows = []
    for variant, (config_path, overrides, *before) in variants.items():
        if args.variants and variant not in args.variants:
            continue
        run_dirs = []
        for seed in range(args.seeds):
            settings = [*folds, f"seed={seed}", f"trainer.jobs={args.jobs}", f"store={store}"]
            start = (f"init_from={train(*before[0], settings)}",) if before else ()
            run_dirs.append(train(config_path, overrides, settings, start))
        rows.append(
            {
                "system": variant,
                "config": config_path,
                "overrides": overrides,
                "seeds": args.seeds,
                **validation_figures(run_dirs),
            }
        )
        write_selection(args.screen, decides, rows)
    for row in rows:
        mark = "  <- validation picks" if row.get("chosen") else ""
        print(
            f"{row['system']:<45} val UA {row['val_ua_mean']:5.1f} ± {row['val_ua_std']:4.1f}"
            f"  ({row['epochs_mean']} epochs){mark}"
        )


def train(config_path: str, overrides: list[str], settings: list[str], start: tuple[str, ...] = ()) -> Path:
    """Train (or resume) a variant's run for one seed: ``runs/selection/<config name>/<slug>-seed<N>``."""
    config = load_config(REPO / config_path, [*overrides, *settings, *start])
    run_dir = REPO / "runs" / "selection" / config.name / f"{slug(overrides)}-seed{config.seed}"
    run_cv(config, run_dir, progress=False)
    return run_dir


def slug(overrides: list[str]) -> str:
    """A run folder name for a config's overrides: screens that share a variant share its runs."""
    text = "_".join(overrides) or "as-configured"
    return "".join(c if c.isalnum() or c in "._=" else "-" for c in text)


def write_selection(screen: str, decides: str, rows: list[dict]) -> None:
    best = max(rows, key=lambda row: row["val_ua_mean"])
    for row in rows:
        row["chosen"] = row is best
    protocol = (
        f"Selection on validation speakers only ({decides}): validation UA of the epoch each fold "
        "chose, mean and std over folds (each fold averaged over seeds); test folds not read."
    )
    RESULTS.joinpath("selection").mkdir(exist_ok=True)
    write_results(f"selection/{screen}", protocol, rows, chosen=best["system"])


if __name__ == "__main__":
    main()
