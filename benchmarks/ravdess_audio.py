"""RAVDESS audio, 8 classes, the 6 EmoBox folds, under both protocols, every system side by side.

Systems: method A with the paper's pooling (attention only) and the hybrid that also
classifies the mean-pooled states, the LSTM baselines with the same input and regularisation
(last state, mean pooling), method B with audio only, all trained by ``emotrace cv`` from
``configs/ravdess/*.yaml`` and selected on validation actors; the classic baseline (eGeMAPS
functionals + RBF SVM) and a linear probe on mean+std pooled frames of the same Whisper-base
layers, both tuned on validation actors. Protocols: *utterance-level* (nothing known about a
test speaker beyond the clip) and *speaker-adaptive* (features normalised per speaker over
all of that speaker's unlabelled clips, test speakers included).

The paper's claim, attention beats the LSTM baselines, is tested fold by fold (Wilcoxon) and
by a paired bootstrap over test speakers. Whether method A's regions of interest are the
evidence is tested by deletion (:mod:`emotrace.training.faithfulness`): for every fold model,
the top-attention frames (the top 20 %, and the frames the ROI rule shows users) are replaced
by what time masking wrote in training (zeros for these configs), against the same number of
frames at random places; the UA each costs, with 95 % bootstrap intervals over test speakers. For the hybrid,
the share of each decision that comes through its mean-pooled path.

    EMOTRACE_DATA=../shared/data python benchmarks/ravdess_audio.py [--jobs 2] [--store DIR]

Each trained system is trained with ``--seeds`` seeds (3 by default): fold figures are
averaged over seeds, so one lucky or unlucky initialisation cannot decide a comparison.
Runs are resumable (``runs/benchmarks/ravdess_audio/``); results go to
``benchmarks/results/ravdess_audio.json`` after each system, so a partial run keeps its rows.
A run restricted by ``--systems`` or ``--protocols`` keeps the file's rows of the others, each
with the ``date`` it was measured.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from emotrace.corpora import load_corpus
from emotrace.features.pipeline import resolve_extractor
from emotrace.features.store import FeatureStore
from emotrace.protocols import PROTOCOLS
from emotrace.training.config import load_config
from emotrace.training.cv import run_cv
from emotrace.training.faithfulness import run_deletion_test
from emotrace.training.metrics import speaker_bootstrap

sys.path.insert(0, str(Path(__file__).parent))
from common import REPO, comparison, earlier_results, row_from_runs, write_results

PAPER = "method A: ROI attention, the paper's pooling"
HYBRID = "method A hybrid: attention + mean pooling"
TRAINED = {
    PAPER: "configs/ravdess/roi_attention_paper.yaml",
    HYBRID: "configs/ravdess/roi_attention.yaml",
    "LSTM baseline, last state": "configs/ravdess/lstm_last.yaml",
    "LSTM baseline, mean pooling": "configs/ravdess/lstm_mean.yaml",
    "method B: emotion queries, audio only": "configs/ravdess/query_fusion_audio.yaml",
}
FRAME_LAYERS = [2, 3, 4, 5]  # the layers methods A and B read
#: scikit-learn systems: (kind, features, layers)
CLASSIC = {
    "eGeMAPS functionals + SVM": ("svm", "egemaps-functionals", None),
    "linear probe, mean+std pooled Whisper-base layers 2-5": ("probe", "whisper-base", FRAME_LAYERS),
}
# The paper's claim and the hybrid's, each row against its reference under the same protocol.
COMPARISONS = [
    (PAPER, "LSTM baseline, mean pooling"),
    (PAPER, "LSTM baseline, last state"),
    (HYBRID, "LSTM baseline, mean pooling"),
    (HYBRID, PAPER),
]
DELETION_SHARES = (0.2, None)  # the top 20 % of frames; the frames the ROI rule shows
PROTOCOL_TEXT = (
    "RAVDESS speech, 8 classes, 1440 clips, the 6 EmoBox folds (4 test actors each; 2 validation "
    "actors drawn from the 20 training actors); UA/WA/F1 in percent, mean and std over folds; each "
    "trained system is trained with {seeds} seeds and each fold's figures are averaged over them "
    "(ua_by_seed: each seed's own mean UA). "
    "Each row names its protocol: utterance-level, or speaker-adaptive (per-speaker feature "
    "normalisation from all of the speaker's unlabelled clips, test speakers included). Pooled UA "
    "intervals and differences: 95 % bootstrap over test speakers (2000 draws). Deletion test of "
    "method A: top-attention frames replaced by zeros (as time masks in training) vs the same "
    "selection shifted to a random place ({draws} draws); UA drop = UA lost, positive = worse."
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default=os.environ.get("EMOTRACE_STORE", "~/.cache/emotrace/features"))
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "benchmarks" / "ravdess_audio")
    parser.add_argument("--jobs", type=int, default=2, help="folds trained at once")
    parser.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=PROTOCOLS)
    parser.add_argument("--systems", nargs="+", default=None, help="subset of system names (default: all)")
    parser.add_argument("--seeds", type=int, default=3, help="trainings per trained system (seeds 0..N-1)")
    parser.add_argument("--deletion-draws", type=int, default=5, help="random placements of the control deletion")
    args = parser.parse_args()
    os.environ["EMOTRACE_STORE"] = os.path.expanduser(args.store)

    rows: list[dict] = []
    kept = earlier_rows(args.systems, args.protocols)

    def save() -> None:
        write_results("ravdess_audio", PROTOCOL_TEXT.format(seeds=args.seeds, draws=args.deletion_draws), rows + kept)

    for system, config_path in TRAINED.items():  # method A first under both protocols
        for protocol in args.protocols:
            if args.systems and system not in args.systems:
                continue
            run_dirs = []
            for seed in range(args.seeds):
                config = load_config(
                    REPO / config_path,
                    [
                        f"protocol={protocol}",
                        f"seed={seed}",
                        f"trainer.jobs={args.jobs}",
                        f"store={os.environ['EMOTRACE_STORE']}",
                    ],
                )
                run_dirs.append(args.runs / f"{config.name}-{protocol}-seed{seed}")
                run_cv(config, run_dirs[-1], progress=False)
            rows.append(row_from_runs(system, run_dirs, config=config_path))
            if system in (PAPER, HYBRID):
                rows[-1].update(deletion_figures(run_dirs, args.deletion_draws))
            save()
    for system, reference in COMPARISONS:
        for protocol in args.protocols:
            pair = [
                next((r for r in rows if r["system"] == name and r["protocol"] == protocol), None)
                for name in (system, reference)
            ]
            if None not in pair:
                pair[0].setdefault("comparisons", []).append(comparison(*pair))
    save()
    for protocol in args.protocols:
        for row in classic_rows(protocol, os.environ["EMOTRACE_STORE"], args.systems):
            rows.append(row)
            save()
    for row in rows:
        print(
            f"{row['protocol']:>17}  {row['system']:<48} UA {row['ua_mean']:5.1f} ± {row['ua_std']:4.1f}"
            f"  WA {row['wa_mean']:5.1f} ± {row['wa_std']:4.1f}"
        )


def earlier_rows(systems: list[str] | None, protocols: list[str]) -> list[dict]:
    """The rows of the last results file that this run does not measure again, dated (rows of
    systems no longer in this script are dropped, and so are their comparisons with a row this
    run measures again: those would compare with figures that are gone)."""
    earlier = earlier_results("ravdess_audio")

    def remeasured(system: str, protocol: str) -> bool:
        return (systems is None or system in systems) and protocol in protocols

    kept = []
    for row in earlier["rows"]:
        if row["system"] not in (*TRAINED, *CLASSIC) or remeasured(row["system"], row["protocol"]):
            continue
        comparisons = [c for c in row.get("comparisons", []) if not remeasured(c["against"], row["protocol"])]
        kept.append({key: value for key, value in row.items() if key != "comparisons"})
        if comparisons:
            kept[-1]["comparisons"] = comparisons
    return kept


def deletion_figures(run_dirs: list[Path], draws: int) -> dict:
    """The deletion test over every seed's fold models: per selection, the UA lost by deleting
    the top-attention frames, by deleting as many frames at random places, and the difference,
    each with its 95 % bootstrap interval over test speakers (seeds averaged in each draw)."""
    tests = [run_deletion_test(run_dir, shares=DELETION_SHARES, draws=draws) for run_dir in run_dirs]
    intact = [test["intact"] for test in tests]
    figures = []
    for name in tests[0]["tests"]:
        top = [test["tests"][name]["top"] for test in tests]
        control = [draw for test in tests for draw in test["tests"][name]["control"]]
        entry = {
            "selection": "ROI rule (a_t > 1/T)" if name == "roi" else f"top {float(name):.0%} of frames",
            "deleted_share": round(sum(t["tests"][name]["deleted_share"] for t in tests) / len(tests), 3),
        }
        for key, (ours, theirs) in {
            "top_drop": (intact, top),
            "control_drop": (intact, control),
            "extra_drop": (control, top),
        }.items():
            result = speaker_bootstrap(ours, theirs)
            entry[key], entry[f"{key}_ci"] = (
                round(result["difference"], 2),
                [round(result["low"], 2), round(result["high"], 2)],
            )
        figures.append(entry)
    result = {"deletion": figures}
    if "decision" in tests[0]:
        result["decision"] = {
            key: round(sum(t["decision"][key] for t in tests) / len(tests), 3) for key in tests[0]["decision"]
        }
    return result


def classic_rows(protocol: str, store_root: str, systems: list[str] | None) -> list[dict]:
    """The scikit-learn systems, tuned on validation actors (see emotrace.training.classic)."""
    from emotrace.training.classic import run_classic

    corpus = load_corpus("ravdess", Path(os.environ["EMOTRACE_DATA"]) / "ravdess")
    rows = []
    for system, (kind, features, layers) in CLASSIC.items():
        if systems and system not in systems:
            continue
        extractor = resolve_extractor(features)
        started = time.perf_counter()
        with FeatureStore.open(store_root, extractor.name, extractor.config(), extractor.version) as store:
            result = run_classic(kind, store, corpus, protocol, layers=layers)
        summary = result["summary"]
        row = {
            "system": system,
            "method": kind,
            "protocol": protocol,
            "folds": summary["folds"],
            "folds_protocol": corpus.folds.protocol,
        }
        for name in ("ua", "wa", "macro_f1", "weighted_f1"):
            row[f"{name}_mean"] = round(summary[f"{name}_mean"], 2)
            row[f"{name}_std"] = round(summary[f"{name}_std"], 2)
        row["seconds_per_fold"] = round((time.perf_counter() - started) / summary["folds"], 1)
        row["hyperparameters"] = result.get("chosen")
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
