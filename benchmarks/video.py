"""Voice, face and both (issue 16): method A on the audio, method A on the face video, method B
on both, and where the two streams' regions of interest agree (Desai et al.'s comparison).

    python benchmarks/video.py cremad /data/CREMA-D [--folds fold1,fold2] [--set KEY=VALUE ...]
    python benchmarks/video.py ravdess /data/RAVDESS-video

The root is a corpus in its release layout: CREMA-D with ``VideoFlash/`` (and ``AudioWAV/``,
else each clip's audio is its video's MP3 track), or RAVDESS with the ``Video_Speech_Actor_XX``
downloads unpacked (``Actor_XX/01-01-...mp4``). Only clips with both audio and video, whose
features of every system could be made, are used, the same clips for all three systems.
Neither corpus's video is on these machines (six CREMA-D clips are, far too few): the figures
come from a run elsewhere; tests run this end to end on a tiny synthetic corpus.

Systems are the configs in ``SYSTEMS``; ``--set`` overrides them (``optim.max_epochs=5``;
``inputs.audio.*`` only where a config reads audio, likewise video). Per system a resumable run
under ``--runs`` (default ``runs/benchmarks/video_<corpus>/``); then, for each test clip, the
attention of the fold's audio model and of its video model, compared
(:mod:`emotrace.inference.roi_compare`): region IoU, Pearson r, lag, per emotion and over all,
against the same figures for mismatched clips (chance); per-clip figures and a plot per emotion
go to the runs folder. Results: ``benchmarks/results/video_<corpus>.json`` (or ``--output``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from emotrace.atomic import write_json_atomically
from emotrace.checkpoint import load_checkpoint
from emotrace.corpora import CorpusData
from emotrace.errors import BatchReport
from emotrace.features.pipeline import extract_corpus, resolve_extractor
from emotrace.features.store import FeatureStore
from emotrace.inference.roi_compare import (
    AttentionCurve,
    agreement_rows,
    attention_curve,
    compare_clip,
    plot_roi_comparison,
    shuffled_agreement,
)
from emotrace.training.config import ExperimentConfig, load_config
from emotrace.training.cv import (
    load_experiment_corpus,
    prepare,
    selected_folds,
    start_run,
    train_fold,
)
from emotrace.training.data import utterances_with_features
from emotrace.training.report import write_report

sys.path.insert(0, str(Path(__file__).parent))
from common import REPO, RESULTS, row_from_runs, write_results

AUDIO, VIDEO, FUSED = "audio (method A)", "face video (method A)", "audio + face video (method B)"
SYSTEMS = {
    "cremad": {
        AUDIO: "configs/cremad/roi_attention.yaml",
        VIDEO: "configs/cremad/roi_attention_video.yaml",
        FUSED: "configs/cremad/query_fusion_av.yaml",
    },
    "ravdess": {
        AUDIO: "configs/ravdess/roi_attention.yaml",
        VIDEO: "configs/ravdess/roi_attention_video.yaml",
        FUSED: "configs/ravdess/query_fusion_av.yaml",
    },
}


def configs(
    corpus: str, root: Path, overrides: list[str], folds: list[str] | None, store: str | None
) -> dict[str, ExperimentConfig]:
    """Each system's config with the root, folds, store and the overrides that apply to it."""
    result = {}
    for system, path in SYSTEMS[corpus].items():
        config = load_config(REPO / path, [f"corpus.root={root}"])
        applicable = [item for item in overrides if _applies(item, config)]
        if folds:
            applicable.append(f"folds=[{','.join(folds)}]")
        if store:
            applicable.append(f"store={store}")
        result[system] = load_config(REPO / path, [f"corpus.root={root}", *applicable])
    return result


def _applies(override: str, config: ExperimentConfig) -> bool:
    """``inputs.<modality>.x=...`` only for configs reading that modality; everything else always."""
    parts = override.split("=", 1)[0].split(".")
    return parts[0] != "inputs" or len(parts) < 2 or parts[1] in config.inputs


def common_corpus(systems: dict[str, ExperimentConfig], progress: bool) -> CorpusData:
    """The clips with audio and video whose features every system could make (extracting what is missing)."""
    first = next(iter(systems.values()))
    corpus = load_experiment_corpus(first)
    clips = [u for u in corpus.utterances if u.audio and u.video]
    stores = []
    for config in systems.values():
        extractors = [resolve_extractor(spec.features) for spec in config.inputs.values()]
        extract_corpus(clips, extractors, config.store_root(), report=BatchReport(), progress=progress)
        stores += [FeatureStore.open(config.store_root(), e.name, e.config(), e.version) for e in extractors]
    usable = tuple(utterances_with_features(clips, stores))
    for store in stores:
        store.close()
    print(f"{len(usable)} clips with audio and face video ({len(corpus.utterances) - len(usable)} left out)")
    return CorpusData(corpus.name, corpus.label_set, usable, corpus.folds, corpus.dropped)


def run_system(
    config: ExperimentConfig, corpus: CorpusData, run_dir: Path, progress: bool
) -> dict[str, AttentionCurve]:
    """Train (or resume) every selected fold; for method A, each test clip's attention curve."""
    start_run(config, run_dir)
    experiment = prepare(config, progress, corpus=corpus, extract=False)
    curves: dict[str, AttentionCurve] = {}
    modality = next(iter(config.inputs)) if config.model["name"] == "roi_attention" else None
    for fold in selected_folds(config, corpus):
        fold_dir = run_dir / "folds" / fold.name
        train_fold(experiment, fold, fold_dir, progress)
        if modality is None:
            continue
        model = load_checkpoint(fold_dir / "model").model
        inputs = experiment.inputs[modality]
        for utterance in fold.split(experiment.corpus.utterances)[2]:
            curves[utterance.id] = attention_curve(model, inputs.frames[utterance.id], inputs.frame_rate)
    write_report(run_dir)
    return curves


def agreement(
    corpus: CorpusData, audio: dict[str, AttentionCurve], video: dict[str, AttentionCurve], plots: Path, protocol: str
) -> dict[str, Any]:
    """Per-clip agreement of the two streams' attention, its summary, the chance level, and one
    plot per emotion (its first clip)."""
    labels = {u.id: u.label for u in corpus.utterances}
    ids = sorted(set(audio) & set(video))
    clips = [compare_clip(audio[i], video[i], clip=i, emotion=labels[i]) for i in ids]
    shown: set[str | None] = set()
    for clip in clips:
        if clip.emotion not in shown:
            shown.add(clip.emotion)
            title = f"{clip.clip} ({clip.emotion}): the models of the fold testing it, {protocol}"
            plot_roi_comparison(plots / f"{clip.clip}.png", audio[clip.clip], video[clip.clip], clip, title=title)
    shuffled = shuffled_agreement([audio[i] for i in ids], [video[i] for i in ids]) if len(ids) > 1 else None
    return agreement_rows(clips, shuffled)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("corpus", choices=sorted(SYSTEMS))
    parser.add_argument("root", type=Path)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--folds", help="comma-separated fold names (default: all)")
    parser.add_argument("--store", help="feature store folder (default: the configs')")
    parser.add_argument("--runs", type=Path, help="where the runs go (default runs/benchmarks/video_<corpus>)")
    parser.add_argument("--output", type=Path, help="results file (default benchmarks/results/video_<corpus>.json)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    name = f"video_{args.corpus}"
    runs = args.runs or REPO / "runs" / "benchmarks" / name
    systems = configs(
        args.corpus, args.root.resolve(), args.overrides, args.folds.split(",") if args.folds else None, args.store
    )
    corpus = common_corpus(systems, not args.quiet)
    rows, curves = [], {}
    for system, config in systems.items():
        run_dir = runs / config.name
        curves[system] = run_system(config, corpus, run_dir, not args.quiet)
        rows.append(row_from_runs(system, [run_dir], clips=len(corpus.utterances)))
        print(f"{system}: UA {rows[-1]['ua_mean']:.1f} ± {rows[-1]['ua_std']:.1f}")
    (runs / "plots").mkdir(parents=True, exist_ok=True)
    first = next(iter(systems.values()))
    agreed = agreement(corpus, curves[AUDIO], curves[VIDEO], runs / "plots", first.protocol)
    write_json_atomically(runs / "roi_agreement.json", agreed)
    summary = {key: value for key, value in agreed.items() if key != "clips"}
    protocol = (
        f"{args.corpus}, {len(corpus.label_set.classes)} classes, {corpus.folds.protocol} folds "
        f"({corpus.folds.description}), {first.protocol}; the {len(corpus.utterances)} clips with audio "
        "and face video, the same for every system; ROI agreement between the audio and the video "
        "method-A models of each fold on its test clips"
    )
    output = args.output or RESULTS / f"{name}.json"
    path = write_results(output.stem, protocol, rows, directory=output.parent, roi_agreement=summary)
    print(json.dumps(summary["all"], indent=1))
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
