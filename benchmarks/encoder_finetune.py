"""Fine-tuning Whisper-base's top encoder layer on the cached states of its frozen lower layers
(method A's ``model.finetune_top_layers``): what it costs, and what the time given shows.

The option's screen would be cross_corpus.py's: three leave-one-corpus-out folds, one seed, the
base's schedule, judged on the validation speakers' UA. This script measures its cost first
(training steps of the base and of the option on the LOCO config's batches, and the head's
predict time per clip) and from it the hours a screen's training steps take here (validation
passes not counted). It then trains one fold of
the option, with the options cross_corpus.py chose, for at most ``--minutes`` (resumable: a
rerun continues from the last epoch) and sets the validation UA it reaches epoch by epoch beside
that of the chosen run's same fold at the same epochs. Not a screen: one fold, maybe unfinished.

    EMOTRACE_DATA=../shared/data python benchmarks/encoder_finetune.py [--store DIR] [--fold nemo] [--minutes 60]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import REPO, earlier_results, repo_path, write_results
from cross_corpus import LOCO, VARIANTS
from emotrace.models import model_config, model_from_config
from emotrace.training.config import load_config

#: the option, as config overrides: the top state (layer 5) recomputed from the cached layer 4
#: at 50 Hz, pooled by 4 inside the model as the input spec pooled before; the copy's learning
#: rate a tenth of the head's (not tuned: no screen ran)
FINETUNE = [
    "inputs.audio.frame_pooling=1",
    "model.finetune_top_layers=1",
    "model.frame_pooling=4",
    "optim.encoder_lr=1.0e-4",
]
POOLING = 4
CROP_FRAMES = 125  # the config's 2.5 s crops at 50 Hz
PROTOCOL = (
    "Method A (configs/multicorpus/roi_attention_loco.yaml with the options cross_corpus.py chose) with "
    "Whisper-base's encoder layer 5 fine-tuned: a trainable copy initialised from the pretrained weights "
    "recomputes the layer-5 states from the cached layer-4 states (50 Hz), pooled by 4 after it. Cost: seconds "
    "per training step of 32 crops of 2.5 s, one torch thread, on the shared 2-core machine; predict: head ms "
    "for one 3.5 s clip (the encoder's lower layers are unchanged). Validation UA (mean over the training "
    "corpora of their validation speakers' UA, percent) per epoch on one leave-one-corpus-out fold, seed 0, "
    "against the chosen run's same fold: not a screen (one fold; epochs as far as the time given reached)."
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default=os.environ.get("EMOTRACE_STORE", "~/.cache/emotrace/features"))
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "benchmarks" / "cross_corpus")
    parser.add_argument("--fold", default="nemo", help="the held-out corpus of the one fold trained")
    parser.add_argument("--minutes", type=float, default=60.0, help="training time given to the fold")
    args = parser.parse_args()
    chosen = earlier_results("cross_corpus")["screens"]["chosen"]  # KeyError: run cross_corpus.py first
    overrides = [override for name in chosen.split(" + ") for override in VARIANTS.get(name, [])]
    config = load_config(REPO / LOCO, overrides)
    reference = args.runs / f"{config.name}-{chosen.replace(' + ', '+').replace(' ', '-')}-seed0"
    run_dir = reference.with_name(reference.name.replace("-seed0", "+finetune-top-layer-seed0"))
    cost = training_cost(config.model)
    train_items = _fold_metrics(reference, args.fold)["train"]
    folds = json.loads((reference / "metrics.json").read_text())["per_fold"].values()
    screen_steps = sum(fold["train"] for fold in folds) / 32 * config.optim.max_epochs
    epoch_minutes = {name: train_items / 32 * seconds / 60 for name, seconds in cost["step_seconds"].items()}
    finished = train(overrides, args, run_dir)
    row = {
        "system": f"method A ({chosen}) + fine-tuned encoder layer 5, fold {args.fold} held out",
        "fold": args.fold,
        "finished": finished,
        "val_ua_by_epoch": _val_ua_by_epoch(run_dir / "folds" / args.fold),
        "base_val_ua_by_epoch": _val_ua_by_epoch(reference / "folds" / args.fold),
        "train_items": train_items,
        "step_seconds": cost["step_seconds"],
        "epoch_minutes": {name: round(minutes, 1) for name, minutes in epoch_minutes.items()},
        "screen_hours": round(screen_steps * cost["step_seconds"]["fine-tuned"] / 3600, 1),
        "head_ms_per_clip": cost["head_ms_per_clip"],
        "overrides": [*overrides, *FINETUNE],
        "runs": [repo_path(run_dir), repo_path(reference)],
    }
    if finished:
        metrics = _fold_metrics(run_dir, args.fold)
        row["held_out_ua"] = round(metrics["ua"], 2)
        row["base_held_out_ua"] = round(_fold_metrics(reference, args.fold)["ua"], 2)
        row["fold_minutes"] = {
            "base": round(_fold_metrics(reference, args.fold)["seconds"] / 60, 1),
            "fine-tuned": round(metrics["seconds"] / 60, 1),
        }
    write_results("encoder_finetune", PROTOCOL, [row], screened=False)
    print(row)


def training_cost(hparams: dict[str, Any], steps: int = 3) -> dict[str, Any]:
    """Seconds per training step of 32 crops (best of ``steps``), base against fine-tuned, and
    head milliseconds for one 3.5 s clip, on random frames of the true shapes."""
    torch.set_num_threads(1)
    sizes = {key: value for key, value in hparams.items() if key != "name"}
    result: dict[str, Any] = {"step_seconds": {}, "head_ms_per_clip": {}}
    for name, options, frames in (
        ("base", {}, CROP_FRAMES // POOLING),
        ("fine-tuned", {"finetune_top_layers": 1, "frame_pooling": POOLING}, CROP_FRAMES),
    ):
        config = model_config(
            "roi_attention", num_classes=8, input_dims={"audio": 512}, num_layers_in={"audio": 4}, **sizes, **options
        )
        model = model_from_config(config)
        optimizer = torch.optim.AdamW(model.parameters())
        batch, labels = torch.randn(32, 4, frames, 512), torch.randint(0, 4, (32,))
        timings = []
        for _ in range(steps):
            started = time.perf_counter()
            model.loss(model(audio=batch), labels).total.backward()
            optimizer.step()
            optimizer.zero_grad()
            timings.append(time.perf_counter() - started)
        result["step_seconds"][name] = round(min(timings), 2)
        clip = torch.randn(1, 4, 175 // (POOLING if name == "base" else 1), 512)
        with torch.inference_mode():
            model.eval()
            started = time.perf_counter()
            for _ in range(steps):
                model(audio=clip)
        result["head_ms_per_clip"][name] = round(1000 * (time.perf_counter() - started) / steps, 1)
    return result


def train(overrides: list[str], args: argparse.Namespace, run_dir: Path) -> bool:
    """Train the option's fold for at most ``args.minutes``; True when the fold finished."""
    settings = [f"store={os.path.expanduser(args.store)}", f"folds=[{args.fold}]", "trainer.jobs=1", "seed=0"]
    command = [sys.executable, "-m", "emotrace", "cv", str(REPO / LOCO), *overrides, *FINETUNE, *settings]
    process = subprocess.Popen([*command, "--run-dir", str(run_dir), "--no-progress"], start_new_session=True)
    try:
        process.wait(timeout=args.minutes * 60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)  # its own session: the fold resumes on a rerun
        process.wait()
    return (run_dir / "folds" / args.fold / "metrics.json").exists()


def _fold_metrics(run_dir: Path, fold: str) -> dict[str, Any]:
    return json.loads((run_dir / "folds" / fold / "metrics.json").read_text())


def _val_ua_by_epoch(fold_dir: Path) -> list[float]:
    """Validation UA after each epoch, over every attempt's log (a resumed fold logs anew)."""
    by_epoch: dict[int, float] = {}
    for log in sorted(fold_dir.glob("log/version_*/metrics.csv")):
        with log.open() as lines:
            for entry in csv.DictReader(lines):
                if entry.get("val_ua"):
                    by_epoch[int(entry["epoch"])] = round(float(entry["val_ua"]), 2)
    return [by_epoch[epoch] for epoch in sorted(by_epoch)]


if __name__ == "__main__":
    main()
