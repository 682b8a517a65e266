"""Does fusion help, and does it hurt when one modality says nothing? (guide section 5)

``control``: RAVDESS audio + its two fixed sentences (the words carry no emotion) through
methods B and C, against the same kind of model on audio alone; fusion must not fall below.
``paired``: each RAVDESS clip paired with a MELD utterance of the same emotion (corpus
``ravdess-meld``: 7 classes, calm dropped; audio folds by actor, text by dialogue group):
audio only (method A, and method B's own audio path), text only, method B (as in the paper,
and with the options for its audio path), late fusion (mean and product of probabilities),
method C (this project's objective, the authors' objective, without its regulariser, and the
authors' network and three-stage schedule), the concatenation baseline; method B tested
again with the text removed. Every system is trained on ``--pairings`` pairings (the text
drawn for each clip, ``corpus.read_seed``) times ``--seeds`` training seeds, and each fold's
figures are averaged over all of them.
``noisy``: the paired systems with a share of the training side's pairs (``--noise``, 20 %
and 40 %) given the text of another emotion (``data.noisy_text``); test pairs stay clean.
Audio alone is unaffected and comes from the ``paired`` runs.
``meld``: MELD text alone, official split, weighted-F1 and UA.

    EMOTRACE_DATA=../shared/data python benchmarks/fusion.py control|paired|noisy|meld [--jobs 2]

Each part writes ``benchmarks/results/<part>.json`` (``ravdess_control``, ``ravdess_meld_paired``,
``ravdess_meld_noisy_text``, ``meld_text``) after every system; runs resume under
``runs/benchmarks/<part>/`` (``paired`` and ``noisy`` share ``runs/benchmarks/paired/``).
Comparisons give the fold-by-fold gap with its Wilcoxon p and the pooled gap with a 95 %
bootstrap interval over test speakers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from emotrace.training.ablation import evaluate_without
from emotrace.training.config import load_config
from emotrace.training.cv import run_cv
from emotrace.training.metrics import summarise_folds

sys.path.insert(0, str(Path(__file__).parent))
from common import REPO, comparison, earlier_results, row_from_runs, seed_average, write_results

AUDIO_RUNS = REPO / "runs" / "benchmarks" / "ravdess_audio"
AUDIO_ONLY = "audio only (method A)"
AUTHORS = "method C as the authors built it"
B_CHOSEN = "method B, BiLSTM audio encoder (chosen on validation)"
B_AUDIO_STAGE = "method B: audio only, BiLSTM encoder (unimodal stage)"
B_PRETRAINED = "method B, audio path pretrained on audio alone"
# The authors' three-stage schedule: each stage starts from the previous stage's fold models.
AUTHORS_STAGES = {
    f"{AUTHORS}, stage 1 (unimodal heads)": "configs/ravdess_meld/contrastive_authors_unimodal.yaml",
    f"{AUTHORS}, stage 2 (concatenation: their baseline)": "configs/ravdess_meld/contrastive_authors_fused.yaml",
    f"{AUTHORS}, stage 3 (fresh classifier + regulariser)": "configs/ravdess_meld/contrastive_authors_regularised.yaml",
}
PAIRED_SYSTEMS = {
    AUDIO_ONLY: "configs/ravdess_meld/audio_only.yaml",
    "text only (BiLSTM on MiniLM)": "configs/ravdess_meld/text_only.yaml",
    "method B: audio only": "configs/ravdess_meld/query_fusion_audio.yaml",
    "method B: emotion queries": "configs/ravdess_meld/query_fusion.yaml",
    B_CHOSEN: "configs/ravdess_meld/query_fusion_bilstm_audio.yaml",
    "late fusion, mean of probabilities": "configs/ravdess_meld/late_fusion_mean.yaml",
    "late fusion, product of probabilities": "configs/ravdess_meld/late_fusion_product.yaml",
    "method C: contrastive regulariser": "configs/ravdess_meld/contrastive.yaml",
    "method C with the authors' objective": "configs/ravdess_meld/contrastive_authors_objective.yaml",
    "method C without its regulariser": "configs/ravdess_meld/contrastive_no_regulariser.yaml",
    "concatenation baseline (mean-pooled codes)": "configs/ravdess_meld/concatenation.yaml",
    B_AUDIO_STAGE: "configs/ravdess_meld/query_fusion_bilstm_audio_only.yaml",
    B_PRETRAINED: "configs/ravdess_meld/query_fusion_pretrained_audio.yaml",
    **AUTHORS_STAGES,
}
# Staged systems: a config -> the config whose run (same pairing, seed and noise) starts its folds.
STAGE_BEFORE = {
    **dict(zip(list(AUTHORS_STAGES.values())[1:], list(AUTHORS_STAGES.values())[:-1])),
    PAIRED_SYSTEMS[B_PRETRAINED]: PAIRED_SYSTEMS[B_AUDIO_STAGE],
}
# Under noisy text: the systems whose text path the noise reaches (audio alone is unaffected).
# (and not method B's pretrained variant, which validation did not choose)
NOISY_SYSTEMS = [
    system
    for system in PAIRED_SYSTEMS
    if system not in (AUDIO_ONLY, "method B: audio only", B_AUDIO_STAGE, B_PRETRAINED)
]
PAIRED_TEXT = (
    "RAVDESS clips paired with same-emotion MELD utterances (corpus ravdess-meld): 7 classes (calm "
    "dropped), 6 folds by RAVDESS actor with MELD dialogues split into 6 disjoint groups (text of a "
    "test fold never seen in its training); utterance-level."
)

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
    "paired": ("ravdess_meld_paired", PAIRED_TEXT, PAIRED_SYSTEMS),
    "noisy": (
        "ravdess_meld_noisy_text",
        PAIRED_TEXT
        + (
            " Noisy-text control: a share of the training side's pairs (training and "
            "validation actors, each side apart; seeded, fixed for a run) carry the text of an "
            "item of another emotion; test pairs keep their own text. Audio alone is the paired runs'."
        ),
        {system: PAIRED_SYSTEMS[system] for system in NOISY_SYSTEMS},
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
    "control": [
        ("method B: audio + fixed text", "method B: audio only (reference)"),
        ("method C: audio + fixed text", "method A: audio only (reference for C)"),
    ],
    "paired": [
        ("method B: emotion queries", AUDIO_ONLY),
        ("method B: emotion queries", "method B: audio only"),
        ("method B: emotion queries", "text only (BiLSTM on MiniLM)"),
        ("method B: audio only", AUDIO_ONLY),
        (B_CHOSEN, AUDIO_ONLY),
        (B_PRETRAINED, AUDIO_ONLY),
        ("late fusion, mean of probabilities", AUDIO_ONLY),
        ("late fusion, product of probabilities", AUDIO_ONLY),
        ("method C: contrastive regulariser", AUDIO_ONLY),
        ("method C: contrastive regulariser", "text only (BiLSTM on MiniLM)"),
        ("method C: contrastive regulariser", "method C without its regulariser"),
        ("method C with the authors' objective", "method C without its regulariser"),
        (f"{AUTHORS}, stage 3 (fresh classifier + regulariser)", f"{AUTHORS}, stage 2 (concatenation: their baseline)"),
        ("concatenation baseline (mean-pooled codes)", AUDIO_ONLY),
    ],
    "noisy": [
        ("method C: contrastive regulariser", "method C without its regulariser"),
        ("method C with the authors' objective", "method C without its regulariser"),
        (f"{AUTHORS}, stage 3 (fresh classifier + regulariser)", f"{AUTHORS}, stage 2 (concatenation: their baseline)"),
        ("method C: contrastive regulariser", AUDIO_ONLY),
        ("method B: emotion queries", AUDIO_ONLY),
        ("late fusion, product of probabilities", AUDIO_ONLY),
    ],
    "meld": [],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=sorted(PARTS))
    parser.add_argument("--store", default=os.environ.get("EMOTRACE_STORE", "~/.cache/emotrace/features"))
    parser.add_argument("--jobs", type=int, default=2, help="folds trained at once")
    parser.add_argument("--seeds", type=int, default=3, help="trainings per system (seeds 0..N-1)")
    parser.add_argument("--pairings", type=int, default=3, help="paired/noisy: pairings 0..N-1 (corpus.read_seed)")
    parser.add_argument("--noise", type=float, nargs="+", default=[0.2, 0.4], help="noisy: shares of noisy text")
    parser.add_argument("--systems", nargs="+", default=None, help="subset of system names (default: all)")
    parser.add_argument("--overrides", nargs="*", default=[], help="applied to every system's config")
    args = parser.parse_args()
    store = os.path.expanduser(args.store)
    name, protocol_text, systems = PARTS[args.part]
    paired = args.part in ("paired", "noisy")
    pairings = range(args.pairings) if paired else [None]
    protocol_text += (
        " Each system trained on the pairings x training seeds its row names (pairings, seeds = "
        "runs in all); fold figures averaged over all of them. A rerun of some systems keeps the "
        "other rows measured on the same number of pairings, with their date."
        if paired
        else f" Each system trained with {args.seeds} seeds; fold figures averaged over them."
    )
    levels = args.noise if args.part == "noisy" else [None]
    labels = [
        row_label(system, noise) for noise in levels for system in systems if not args.systems or system in args.systems
    ]
    rows: list[dict] = earlier_rows(name, labels, args.pairings) if paired and args.systems else []
    for noise in levels:
        for system, config_path in systems.items():
            if args.systems and system not in args.systems:
                continue
            extra = [f"data.noisy_text={noise}"] if noise else []
            run_dirs = train_runs(
                args.part,
                config_path,
                pairings,
                args.seeds,
                [f"trainer.jobs={args.jobs}", f"store={store}", *extra, *args.overrides],
                noise,
            )
            label = row_label(system, noise)
            pairing_count = {"pairings": args.pairings} if paired else {}
            rows.append(row_from_runs(label, run_dirs, config=config_path, noisy_text=noise or 0.0, **pairing_count))
            config = load_config(REPO / config_path)
            if config.model["name"] == "query_fusion" and len(config.inputs) > 1:
                rows.append(without_text(label, run_dirs, rows[-1]))
            write_results(name, protocol_text, rows)
    if args.part == "control":
        for system, run in (
            ("method B: audio only (reference)", "ravdess-query-fusion-audio-utterance-level"),
            ("method A: audio only (reference for C)", "ravdess-roi-attention-utterance-level"),
        ):
            references = [AUDIO_RUNS / f"{run}-seed{seed}" for seed in range(args.seeds)]
            if all((reference / "metrics.json").exists() for reference in references):
                rows.append(row_from_runs(system, references))
    if args.part == "noisy":  # audio alone sees no text: the clean paired runs are its reference
        references = [
            REPO / "runs" / "benchmarks" / "paired" / f"paired-audio-only-pairing{p}-seed{s}"
            for p in pairings
            for s in range(args.seeds)
        ]
        if all((reference / "metrics.json").exists() for reference in references):
            rows.append(row_from_runs(AUDIO_ONLY, references))
    add_comparisons(args.part, rows)
    write_results(name, protocol_text, rows)
    for row in rows:
        extra = f"  weighted-F1 {row['weighted_f1_mean']:.1f}" if "weighted_f1_mean" in row else ""
        print(
            f"{row['system']:<70} UA {row['ua_mean']:5.1f} ± {row['ua_std']:4.1f}  "
            f"WA {row['wa_mean']:5.1f} ± {row['wa_std']:4.1f}{extra}"
        )


def run_name(config_name: str, pairing: int | None, seed: int, noise: float | None) -> str:
    noisy = f"-noise{round(100 * noise)}" if noise else ""
    return f"{config_name}{noisy}-pairing{pairing}-seed{seed}" if pairing is not None else f"{config_name}-seed{seed}"


def train_runs(
    part: str, config_path: str, pairings, seeds: int, overrides: list[str], noise: float | None
) -> list[Path]:
    """Train (or resume) one system on every pairing and seed; a staged system (STAGE_BEFORE)
    first has the stage before it trained, and starts from its run of the same pairing and seed."""
    runs = REPO / "runs" / "benchmarks" / ("paired" if part in ("paired", "noisy") else part)
    previous = STAGE_BEFORE.get(config_path)
    # the stage before, in the same pairing x seed order as the runs below
    starts = iter(train_runs(part, previous, pairings, seeds, overrides, noise)) if previous else None
    run_dirs = []
    for pairing in pairings:
        for seed in range(seeds):
            chosen = [f"seed={seed}", *overrides] + ([f"corpus.read_seed={pairing}"] if pairing is not None else [])
            if starts is not None:
                chosen.append(f"init_from={next(starts)}")
            config = load_config(REPO / config_path, chosen)
            run_dirs.append(runs / run_name(config.name, pairing, seed, noise))
            run_cv(config, run_dirs[-1], progress=False)
    return run_dirs


def row_label(system: str, noise: float | None) -> str:
    """A system's row name, with its share of noisy text when it was trained with some."""
    return f"{system}, {noise:.0%} noisy text" if noise else system


def earlier_rows(name: str, remeasured: list[str], pairings: int) -> list[dict]:
    """The rows of the last ``name`` results that this run does not measure again, dated: only
    those trained on as many pairings (older rows rest on another design), without their
    comparisons (recomputed over all rows, from the runs)."""
    derived = [f"{label}, text removed at test time" for label in remeasured]
    return [
        {key: value for key, value in row.items() if key != "comparisons"}
        for row in earlier_results(name)["rows"]
        if row.get("pairings") == pairings and row["system"] not in (*remeasured, *derived)
    ]


def add_comparisons(part: str, rows: list[dict]) -> None:
    """Each target's gap, at every share of noisy text among the rows (kept earlier rows included)."""
    by_system = {row["system"]: row for row in rows}
    levels = sorted({row["noisy_text"] for row in rows if row.get("noisy_text")}) or [None]
    for system, reference in COMPARISONS[part]:
        for noise in levels:
            ours = row_label(system, noise)
            theirs = row_label(reference, None if reference == AUDIO_ONLY else noise)
            if ours in by_system and theirs in by_system and has_runs(by_system[ours]) and has_runs(by_system[theirs]):
                by_system[ours].setdefault("comparisons", []).append(comparison(by_system[ours], by_system[theirs]))


def has_runs(row: dict) -> bool:
    """Whether a row's runs are on this machine: comparisons are computed from their folds."""
    return "runs" in row and all((REPO / run / "metrics.json").exists() for run in row["runs"])


def without_text(system: str, run_dirs: list[Path], fused: dict) -> dict:
    """Method B's runs tested again with the text removed: the row, and its UA drop."""
    results = [evaluate_without(run_dir, ["text"]) for run_dir in run_dirs]
    fused_ua = float(np.mean([json.loads((run_dir / "metrics.json").read_text())["ua_mean"] for run_dir in run_dirs]))
    summary = summarise_folds(seed_average([result["per_fold"] for result in results]), list(fused["recall_mean"]))
    return {
        "system": f"{system}, text removed at test time",
        "method": "query_fusion",
        "protocol": fused["protocol"],
        "folds": summary["folds"],
        "seeds": len(run_dirs),
        **({"pairings": fused["pairings"]} if "pairings" in fused else {}),
        **{f"{n}_{s}": round(summary[f"{n}_{s}"], 2) for n in ("ua", "wa") for s in ("mean", "std")},
        "ua_drop": round(fused_ua - summary["ua_mean"], 2),
    }


if __name__ == "__main__":
    main()
