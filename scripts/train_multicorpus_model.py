"""Train the multi-corpus model (RAVDESS + ASED + nEMO) and write its model card.

Method A (ROI attention) on Whisper-base frames by ``configs/multicorpus/roi_attention.yaml``
with the robustness options that benchmarks/cross_corpus.py kept on validation speakers. The
card gives its figures on corpora it never heard (leave-one-corpus-out, from
``benchmarks/results/cross_corpus.json``: run that benchmark first), its per-corpus figures
under each corpus's own speaker-independent folds (cross-validation runs here, ``--seeds`` of them:
one seed's figure moves by about 1 UA between runs),
its classes, languages and the data licences. The final model trains on every corpus but a
seeded share of each one's speakers, who choose the epoch.

Under each protocol of ``--protocols``: ``multicorpus-whisper-base`` (utterance-level, the
packaged default model, ``emotrace.api.DEFAULT_MODEL``) and its speaker-adaptive twin
``multicorpus-whisper-base-adaptive`` (what ``predict --adapt-speaker`` runs with the default),
each packaged once the benchmark has a leave-one-corpus-out row of its protocol and options.

    EMOTRACE_DATA=../shared/data python scripts/train_multicorpus_model.py [--store DIR] [--jobs 2]

They go to ``src/emotrace/pretrained/<name>/``. Runs resume (``runs/multicorpus_model/``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from emotrace.api import ADAPTIVE_SUFFIX, PRETRAINED
from emotrace.atomic import write_text_atomically
from emotrace.checkpoint import load_checkpoint
from emotrace.protocols import SPEAKER_ADAPTIVE, UTTERANCE_LEVEL
from emotrace.training.config import load_config
from emotrace.training.cv import run_cv, train_final
from emotrace.training.report import write_report

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "configs" / "multicorpus" / "roi_attention.yaml"
RESULTS = REPO / "benchmarks" / "results" / "cross_corpus.json"
LOCO_CONFIG = "roi_attention_loco.yaml"
NAME = "multicorpus-whisper-base"
#: packaged name per protocol: the speaker-adaptive model is the default's twin
NAMES = {UTTERANCE_LEVEL: NAME, SPEAKER_ADAPTIVE: NAME + ADAPTIVE_SUFFIX}
CORPORA = {
    "ravdess": (
        "RAVDESS speech",
        "English (North American)",
        "24 actors, 1440 clips",
        "CC BY-NC-SA 4.0 (Livingstone & Russo, 2018, PLoS ONE 13(5): e0196391)",
    ),
    "ased": (
        "ASED v1",
        "Amharic",
        "65 speakers, 2474 clips",
        "no licence stated in its public release (Ethio2021/ASED_V1; Retta et al., 2023, ACM TALLIP 22(1)): "
        "research use only, rights otherwise unclear",
    ),
    "nemo": ("nEMO", "Polish", "9 actors, 4481 clips", "CC BY-NC-SA 4.0 (Christop, 2024, LREC-COLING)"),
}
DATA_LICENCE = (
    "trained on RAVDESS (CC BY-NC-SA 4.0), nEMO (CC BY-NC-SA 4.0) and ASED (no licence stated): "
    "the weights are for non-commercial research use only, and ASED's missing licence leaves even "
    "that to the user's judgement"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default=os.environ.get("EMOTRACE_STORE", "~/.cache/emotrace/features"))
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "multicorpus_model")
    parser.add_argument("--out", type=Path, default=PRETRAINED, help="folder the models are packaged into")
    parser.add_argument("--jobs", type=int, default=1, help="cross-validation folds trained at once")
    parser.add_argument("--protocols", nargs="+", default=list(NAMES), choices=list(NAMES))
    parser.add_argument("--seeds", type=int, default=3, help="cross-validation runs (seeds 0..N-1) behind the card")
    parser.add_argument(
        "--options",
        nargs="*",
        default=None,
        help="config overrides of the robustness options (default: those of cross_corpus.json's "
        "leave-one-corpus-out row); a model is packaged only once its protocol's row exists and agrees",
    )
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error("--seeds: at least one cross-validation run is needed")
    results = json.loads(RESULTS.read_text())
    for protocol in args.protocols:
        train_and_package(protocol, results, args)


def train_and_package(protocol: str, results: dict[str, Any], args: argparse.Namespace) -> None:
    """Cross-validate and train the final model of ``protocol``; package it when the benchmark's
    leave-one-corpus-out row of that protocol was measured with the same options."""
    protocol_override = f"protocol={protocol}"
    multi = next(
        (row for row in results["rows"] if row.get("config", "").endswith(LOCO_CONFIG) and row["protocol"] == protocol),
        None,
    )
    measured = None if multi is None else [o for o in multi["overrides"] if o != protocol_override]
    options = args.options if args.options is not None else measured
    if options is None:
        raise SystemExit(f"{RESULTS} has no {protocol} leave-one-corpus-out row yet: finish benchmarks/cross_corpus.py")
    settings = [*options, protocol_override, f"store={os.path.expanduser(args.store)}", f"trainer.jobs={args.jobs}"]
    run_dirs = []
    for seed in range(args.seeds):
        config = load_config(CONFIG, [*settings, f"seed={seed}"])
        run_dir = args.runs / (config.name if protocol == UTTERANCE_LEVEL else f"{config.name}-{protocol}")
        run_dirs.append(run_dir.with_name(f"{run_dir.name}-seed{seed}") if seed else run_dir)  # seed 0: older runs
        run_cv(config, run_dirs[-1], progress=False)
    summaries = [write_report(run_dir) for run_dir in run_dirs]
    # the final model is seed 0's: its run's validation speakers and seed
    model_dir = train_final(load_config(CONFIG, [*settings, "seed=0"]), run_dirs[0], progress=False)
    name = NAMES[protocol]
    if measured is None or sorted(measured) != sorted(options):
        raise SystemExit(
            f"trained {model_dir}; not packaged: {RESULTS} has no {protocol} leave-one-corpus-out row with these "
            "options yet. Run this again once benchmarks/cross_corpus.py has finished (nothing is trained again)."
        )
    package(model_dir, args.out / name, name, within_corpus_figures(summaries), results, multi)
    print(
        f"{name}: leave-one-corpus-out accuracy {multi['wa_mean']:.1f}, UA {multi['ua_mean']:.1f} -> {args.out / name}"
    )


def package(
    model_dir: Path,
    target: Path,
    name: str,
    within: dict[str, dict[str, Any]],
    results: dict[str, Any],
    multi: dict[str, Any],
) -> None:
    """Copy the final model into the package with its figures and card."""
    checkpoint = load_checkpoint(model_dir)
    checkpoint.info = {
        **checkpoint.info,
        "name": name,
        "metrics": {
            # the headline `emotrace models list` shows: accuracy on corpora never heard
            "ua_mean": multi["ua_mean"],
            "wa_mean": multi["wa_mean"],
            "headline": "leave-one-corpus-out over RAVDESS, ASED and nEMO, 4 classes, mean over held-out corpora",
            "cross_corpus": {
                "protocol": "leave-one-corpus-out, 4 classes (EmoBox cross-corpus)",
                "wa_mean": multi["wa_mean"],
                "ua_mean": multi["ua_mean"],
                "per_corpus": {c: {"wa": f["wa"], "ua": f["ua"]} for c, f in multi["per_corpus"].items()},
            },
            "within_corpus": within,
        },
        "training_data": "; ".join(f"{title} ({language}, {size})" for title, language, size, _ in CORPORA.values()),
        "data_licence": DATA_LICENCE,
        "encoder": "Whisper base encoder (faster-whisper-base weights, MIT), frozen",
        "options": multi["overrides"],
        "trained": datetime.date.today().isoformat(),
        "command": "python scripts/train_multicorpus_model.py",
    }
    shutil.rmtree(target, ignore_errors=True)
    checkpoint.save(target)
    write_text_atomically(target / "README.md", model_card(name, checkpoint, within, results, multi))


def moment_samples_section(multi: dict[str, Any], held_out: list[str]) -> str:
    """The speaker-adaptive row's figures with each held-out speaker's moments taken from a
    sample of their clips (what a user has), when the benchmark measured them."""
    samples = multi.get("moment_samples")
    if not samples:
        return ""
    lines = []
    lacking = []
    for name, figures in {"all of the speaker's clips (the protocol)": multi, **samples}.items():
        cells = " | ".join(f"{figures['per_corpus'][c]['wa']:.1f}" for c in held_out)
        lines.append(f"| {name} | {cells} | {figures['wa_mean']:.1f} |")
        if figures.get("speakers_without_the_emotion"):
            lacking.append(f"{name}: {', '.join(figures['speakers_without_the_emotion'])}")
    note = (
        f" Speakers without clips of the named emotion took their moments from all their clips ({'; '.join(lacking)})."
        if lacking
        else ""
    )
    return f"""
## How many clips per speaker
The figures above take each held-out speaker's moments from all of their clips, which in these
corpora span every emotion about equally. A user has fewer, often in one mood. The same runs
again, each held-out speaker's moments from a sample of their clips (drawn per run), four-class
accuracy in percent, seeds averaged.{note}

| moments from | {" | ".join(f"{c} held out" for c in held_out)} | mean |
|---|{"---|" * len(held_out)}---|
{chr(10).join(lines)}
"""


def within_corpus_figures(summaries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each corpus's figures over the seeds' cross-validation runs (``write_report`` summaries):
    UA and WA per fold averaged over seeds, then mean and std over the folds that test the
    corpus; pooled UA, WA and macro-F1 averaged over seeds; each seed's UA, so the card shows
    how far one run moves."""
    first = summaries[0]
    figures = {}
    for corpus, pooled in first["pooled"]["per_corpus"].items():
        folds = [fold for fold, metrics in first["per_fold"].items() if corpus in metrics.get("per_corpus", {})]
        by_fold = {
            name: [np.mean([s["per_fold"][fold]["per_corpus"][corpus][name] for s in summaries]) for fold in folds]
            for name in ("ua", "wa")
        }
        figures[corpus] = {
            **{
                f"{name}_{stat}": round(float(function(values)), 2)
                for name, values in by_fold.items()
                for stat, function in (("mean", np.mean), ("std", np.std))
            },
            **{
                name: round(float(np.mean([s["pooled"]["per_corpus"][corpus][name] for s in summaries])), 2)
                for name in ("ua", "wa", "macro_f1")
            },
            "ua_by_seed": [round(float(s["pooled"]["per_corpus"][corpus]["ua"]), 2) for s in summaries],
            "folds": len(folds),
            "seeds": len(summaries),
            "classes": pooled["classes"],
        }
    return figures


def model_card(
    name: str, checkpoint, within: dict[str, dict[str, Any]], results: dict[str, Any], multi: dict[str, Any]
) -> str:
    spec = checkpoint.inputs["audio"]
    corpora = checkpoint.info["corpora"]
    held_out = results["held_out_corpora"]
    loco_rows = []
    for row in results["rows"]:
        cells = [
            f"{row['per_corpus'][c]['wa']:.1f} / {row['per_corpus'][c]['ua']:.1f}" if c in row["per_corpus"] else "–"
            for c in held_out
        ]
        mean = f"{row['wa_mean']:.1f} / {row['ua_mean']:.1f}"
        shipped = " (this model's recipe)" if row is multi else ""
        loco_rows.append(
            f"| {row['system']}{shipped} | {row['protocol']} | {' | '.join(cells)} | {mean} | {row.get('seeds', '–')} |"
        )
    within_rows = [
        f"| {CORPORA[c][0]} | {len(m['classes'])} | {m['folds']} | {m['ua_mean']:.1f} ± {m['ua_std']:.1f} | "
        f"{m['wa_mean']:.1f} ± {m['wa_std']:.1f} | {m['ua']:.1f} | {m['macro_f1']:.1f} | "
        f"{', '.join(f'{ua:.1f}' for ua in m['ua_by_seed'])} |"
        for c, m in within.items()
    ]
    sets = "\n".join(
        f"- {CORPORA[c][0]} ({CORPORA[c][1]}, {CORPORA[c][2]}): {', '.join(classes)}" for c, classes in corpora.items()
    )
    licences = "\n".join(f"- {CORPORA[c][0]}: {CORPORA[c][3]}" for c in corpora)
    options = ", ".join(checkpoint.info["options"]) or "none beyond the recipe"
    seed_count = next(iter(within.values()))["seeds"]
    seeds = f"{seed_count} training seed{'s' if seed_count > 1 else ''}"
    protocol_line = (
        "It reads one clip at a time: nothing about the speaker is used beyond the clip itself (utterance-level)."
        if checkpoint.protocol == UTTERANCE_LEVEL
        else f"Speaker-adaptive: each speaker's features are normalised by the moments of several of that "
        f"speaker's recordings (unlabelled), so it needs `emotrace predict --adapt-speaker` and a few clips "
        f"per speaker, in more than one mood where it can; loading {NAME} brings it as the twin that option runs."
    )
    return f"""# {name}

Method A of emotrace (attention-based ROI detection: BiLSTM + additive attention over frozen
Whisper-base encoder frames, layers {list(spec.layers)}, pooled to {50 / spec.frame_pooling:g} Hz), trained on
three corpora at once: RAVDESS (English), ASED (Amharic) and nEMO (Polish), {len(checkpoint.labels)} output
classes: {", ".join(checkpoint.labels)}. The attention weights still mark the regions of interest, and the
frame posteriors give the emotion dynamics, as for every method A model. {protocol_line}

## The number that matters: accuracy on corpora it never heard
A model is used on voices, languages and microphones it never saw. Leave-one-corpus-out: each
system trained on two of the corpora (or on RAVDESS alone, where the row says so), tested on
every clip of the third, four classes (EmoBox's cross-corpus protocol: neutral, happy, sad,
angry; predictions restricted to them). Accuracy / UA in percent, averaged over the row's seeds
(`python benchmarks/cross_corpus.py`, {results["date"]}):

| system | protocol | {" | ".join(f"{c} held out" for c in held_out)} | mean | seeds |
|---|---|{"---|" * len(held_out)}---|---|
{chr(10).join(loco_rows)}

The shipped model trained on all three corpora, so no figure here is of the shipped weights on
a corpus they never heard; these are the figures of the recipe. Expect lower on spontaneous
speech, noisy channels and corpora unlike these three.
{moment_samples_section(multi, held_out) if checkpoint.protocol == SPEAKER_ADAPTIVE else ""}
## Within each corpus
Each corpus's own speaker-independent folds (RAVDESS: the 6 EmoBox folds; ASED and nEMO: group
5-fold by speaker), one model per fold trained on all three corpora's training speakers, scored
in the corpus's own classes, {checkpoint.protocol}, {seeds}. UA and WA of each fold
averaged over the seeds, as mean ± std over the folds that test the corpus; then UA and
macro-F1 pooled over those folds (mean over seeds), and each seed's pooled UA, which shows how
far one run moves:

| corpus | classes | folds | UA | WA | pooled UA | pooled macro-F1 | pooled UA by seed |
|---|---|---|---|---|---|---|---|
{chr(10).join(within_rows)}

## Classes
Each corpus kept its own label set in training; the loss never made a class a corpus lacks a
negative for its clips:
{sets}

Calm, disgusted and surprised are learnt from fewer voices (RAVDESS's 24 actors; surprised
also nEMO's 9) than neutral, happy, sad, angry and fearful.

## Data, languages and licences
{licences}

In plain words: {DATA_LICENCE}. Encoder: Whisper base (OpenAI, MIT licence) in the
faster-whisper CTranslate2 conversion, mapped into Hugging Face's WhisperEncoder. Features were
computed in float32 for training; `emotrace predict` runs the encoder in bfloat16 where the
CPU computes it natively (`--precision auto`, the default; `--precision float32` computes as
training did), which `benchmarks/precision.py` measures on this model's validation speakers.

## Intended use and limits
For exploring emotion in speech: labels, probabilities, and where in a clip the model's
attention went. All three corpora are acted emotions read in quiet rooms; the classes are acted
categories, not what a speaker feels. Do not use it for decisions about people (hiring,
policing, health, credit) or to monitor anyone without their informed consent.

## Reproduce
`EMOTRACE_DATA=<data> python benchmarks/cross_corpus.py`, then
`EMOTRACE_DATA=<data> python scripts/train_multicorpus_model.py` (runs resume; recipe
`configs/multicorpus/roi_attention.yaml`, options kept on validation: {options}). The final model's
validation speakers: {", ".join(checkpoint.info["val_speakers"])}.
"""


if __name__ == "__main__":
    main()
