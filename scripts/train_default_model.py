"""Train the packaged RAVDESS models (the default before the multi-corpus one) and write their cards.

Method A (ROI attention) on Whisper-base frames of RAVDESS speech (8 classes), by
``configs/ravdess/roi_attention.yaml``, under both protocols: ``ravdess-whisper-base``
(utterance-level) and ``ravdess-whisper-base-adaptive`` (speaker-adaptive). For each, the
6-fold cross-validation gives the figures on the model card, and a final model trained on
22 of the 24 actors (the other 2 validate, to choose the epoch) is what ships.

    EMOTRACE_DATA=../shared/data python scripts/train_default_model.py [--store DIR]

Runs resume (``runs/benchmarks/ravdess_audio/``, shared with benchmarks/ravdess_audio.py,
so a finished benchmark leaves only the final models to train).
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
from pathlib import Path

from emotrace.api import ADAPTIVE_SUFFIX, DEFAULT_MODEL, PRETRAINED
from emotrace.atomic import write_text_atomically
from emotrace.checkpoint import load_checkpoint
from emotrace.protocols import SPEAKER_ADAPTIVE, UTTERANCE_LEVEL
from emotrace.training.config import load_config
from emotrace.training.cv import run_cv, train_final
from emotrace.training.report import write_report

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "configs" / "ravdess" / "roi_attention.yaml"
DATA_LICENCE = (
    "RAVDESS (Livingstone & Russo, 2018, PLoS ONE 13(5): e0196391), "
    "CC BY-NC-SA 4.0: the weights are derived from it and are for non-commercial use"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default=os.environ.get("EMOTRACE_STORE", "~/.cache/emotrace/features"))
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "benchmarks" / "ravdess_audio")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=PRETRAINED)
    args = parser.parse_args()
    for protocol, name in ((UTTERANCE_LEVEL, DEFAULT_MODEL), (SPEAKER_ADAPTIVE, DEFAULT_MODEL + ADAPTIVE_SUFFIX)):
        config = load_config(
            CONFIG, [f"protocol={protocol}", f"trainer.jobs={args.jobs}", f"store={os.path.expanduser(args.store)}"]
        )
        run_dir = args.runs / f"{config.name}-{protocol}-seed{config.seed}"  # the benchmark's seed-0 run
        run_cv(config, run_dir, progress=False)
        summary = write_report(run_dir)
        model_dir = train_final(config, run_dir, progress=False)
        package(model_dir, args.out / name, name, summary)
        print(
            f"{name}: UA {summary['ua_mean']:.1f} ± {summary['ua_std']:.1f}, "
            f"WA {summary['wa_mean']:.1f} ± {summary['wa_std']:.1f} -> {args.out / name}"
        )


def package(model_dir: Path, target: Path, name: str, summary: dict) -> None:
    """Copy the final model into the package with its cross-validation figures and card."""
    checkpoint = load_checkpoint(model_dir)
    checkpoint.info = {
        **checkpoint.info,
        "name": name,
        "metrics": {
            key: round(summary[key], 2)
            for key in (
                "ua_mean",
                "ua_std",
                "wa_mean",
                "wa_std",
                "macro_f1_mean",
                "macro_f1_std",
                "ece_unscaled_mean",
                "ece_unscaled_std",
                "ece_mean",
                "ece_std",
            )
        }
        | {"folds": summary["folds"], "folds_protocol": summary["folds_protocol"], "protocol": summary["protocol"]},
        "training_data": "RAVDESS speech, 1440 clips, 24 actors (final model: 22 train, "
        f"{' and '.join(checkpoint.info['val_speakers'])} validate)",
        "data_licence": DATA_LICENCE,
        "encoder": "Whisper base encoder (faster-whisper-base weights, MIT), frozen",
        "trained": datetime.date.today().isoformat(),
        "command": "python scripts/train_default_model.py",
    }
    shutil.rmtree(target, ignore_errors=True)
    checkpoint.save(target)
    write_text_atomically(target / "README.md", model_card(name, checkpoint, summary))


def model_card(name: str, checkpoint, summary: dict) -> str:
    recalls = ", ".join(f"{label} {value:.0f}" for label, value in summary["recall_mean"].items())
    spec = checkpoint.inputs["audio"]
    protocol_line = (
        "utterance-level: nothing about the speaker is used beyond the clip itself"
        if summary["protocol"] == UTTERANCE_LEVEL
        else "speaker-adaptive: features are normalised per speaker from several of that speaker's "
        "recordings (unlabelled), so it needs `--adapt-speaker` and a few clips per speaker"
    )
    figures = " | ".join(
        f"{summary[f'{metric}_mean']:.1f} ± {summary[f'{metric}_std']:.1f}"
        for metric in ("ua", "wa", "macro_f1", "ece_unscaled", "ece")
    )
    fold_temperatures = f"{summary['temperature_mean']:.2f} ± {summary['temperature_std']:.2f}"
    ece = f"{summary['ece_unscaled_mean']:.1f} → {summary['ece_mean']:.1f}"
    return f"""# {name}

Method A of emotrace (attention-based ROI detection: BiLSTM + additive attention over frozen
Whisper-base encoder frames, layers {list(spec.layers)}, pooled to {50 / spec.frame_pooling:g} Hz),
with {len(checkpoint.labels)} classes: {", ".join(checkpoint.labels)}.

## Figures (measured, not claimed)
Speaker-independent 6-fold cross-validation on RAVDESS speech (the EmoBox folds: 4 test
actors per fold, 2 validation actors from the training side), protocol **{summary["protocol"]}**
({protocol_line}):

| UA | WA | macro-F1 | ECE before scaling | ECE after |
|---|---|---|---|---|
| {figures} |

Mean ± std over folds, percent. Per-class recall: {recalls}.
The shipped weights are a final model trained with the same recipe on 22 of the 24 actors,
the other two ({" and ".join(checkpoint.info["val_speakers"])}) choosing the epoch; its figures are
those of the cross-validation above.

## Calibration
Probabilities are temperature-scaled: softmax(logits / T) with **T = {checkpoint.temperature:.3f}**,
fitted on the final model's two validation actors (in each fold, on that fold's validation
actors: T {fold_temperatures} over folds). Expected calibration error (top label, 15
equal-width bins) before → after scaling: {ece} % over the folds' test actors.
`emotrace predict --min-confidence P` labels a clip "uncertain" when its top probability
is below P.

## Data and licence
{DATA_LICENCE}. Encoder: Whisper base (OpenAI, MIT licence) in the faster-whisper
CTranslate2 conversion, mapped into Hugging Face's WhisperEncoder.

## Intended use and limits
For exploring emotion in English speech: labels, probabilities, and where in a clip the
model's attention went. RAVDESS is acted speech by 24 North-American actors saying two
neutral sentences in a studio; spontaneous speech, other languages, noisy channels and
other speakers will score lower, sometimes much lower. The classes are acted categories,
not what a speaker feels. Do not use it for decisions about people (hiring, policing,
health, credit) or to monitor anyone without their informed consent.

## Reproduce
`EMOTRACE_DATA=<data> python scripts/train_default_model.py` (cross-validation runs resume;
see `configs/ravdess/roi_attention.yaml`).
"""


if __name__ == "__main__":
    main()
