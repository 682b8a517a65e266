"""What bfloat16 arithmetic in the Whisper encoder changes in a model's predictions, and how
much faster it is (``emotrace predict --precision``, default ``auto``).

The clips are the model's validation speakers (recorded in its checkpoint): they chose its
epoch but never trained it, so its predictions on them are neither memorised nor tuned for.
Both precisions predict the same clips through :func:`emotrace.api.predict_files` (the path
of ``emotrace predict``), one after the other in this process, encoder loaded beforehand.
Reported: labels that change, how far the probabilities move, UA per corpus in each
precision, and the wall time of each pass.

    EMOTRACE_DATA=../shared/data python benchmarks/precision.py [--model NAME] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import write_results
from emotrace.api import DEFAULT_MODEL, load_model, predict_files
from emotrace.corpora import load_corpus
from emotrace.features.precision import PRECISIONS, native_bfloat16
from emotrace.inference.predictions import Prediction
from emotrace.inference.predictor import Predictor
from emotrace.protocols import UTTERANCE_LEVEL


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = Path(os.environ.get("EMOTRACE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    predictors = {precision: load_model(args.model, precision=precision) for precision in PRECISIONS}
    checkpoint = predictors["float32"].checkpoints[UTTERANCE_LEVEL]
    clips = validation_clips(checkpoint.info, data)
    audio_seconds = sum(seconds for _, _, _, seconds in clips)
    files = [path for path, _, _, _ in clips]
    results: dict[str, dict[str, Prediction]] = {}
    rows = []
    for precision, predictor in predictors.items():
        predictor.predict(files[0])  # loads the encoder outside the timed pass
        started = time.perf_counter()
        batch = predictor_batch(predictor, files)
        seconds = time.perf_counter() - started
        results[precision] = batch
        scored = [(corpus, label, batch[path].label) for path, corpus, label, _ in clips if path in batch]
        per_corpus = {
            corpus: unweighted_recall([(t, p) for c, t, p in scored if c == corpus]) for corpus in corpora(clips)
        }
        rows.append(
            {
                "system": f"{args.model}, Whisper encoder in {precision}",
                "precision": precision,
                "clips": len(scored),
                "seconds": round(seconds, 1),
                "speed": round(audio_seconds / seconds, 1),
                "ua_per_corpus": {corpus: round(ua, 1) for corpus, ua in per_corpus.items()},
                "ua_mean": round(float(np.mean(list(per_corpus.values()))), 2),
            }
        )
    write_results(
        "precision",
        f"{UTTERANCE_LEVEL}; the {args.model} model's validation speakers "
        f"({', '.join(checkpoint.info['val_speakers'])}: {len(files)} clips, {audio_seconds / 60:.1f} min), "
        f"predicted with the encoder in float32 and in bfloat16 ({args.threads} torch threads, speech check on, "
        f"native bfloat16: {native_bfloat16()}); UA per corpus in percent, over the classes its clips have; "
        "speed = audio seconds / wall seconds of the pass",
        rows,
        comparison=agreement(results["float32"], results["bfloat16"]),
    )


def validation_clips(info: dict[str, Any], data: Path) -> list[tuple[str, str, str, float]]:
    """``(path, corpus, label, seconds)`` of every clip of the checkpoint's validation speakers,
    each read once here, so that neither timed pass reads from a cold disk cache."""
    speakers = set(info["val_speakers"])
    clips = []
    for corpus in info["corpora"]:
        for utterance in load_corpus(corpus, data / corpus).utterances:
            if f"{corpus}/{utterance.speaker}" in speakers:
                samples, rate = sf.read(utterance.audio, dtype="float32")
                clips.append((utterance.audio, corpus, utterance.label, len(samples) / rate))
    if not clips:
        raise SystemExit(f"no clips of {sorted(speakers)} under {data}")
    return clips


def predictor_batch(predictor: Predictor, files: list[str]) -> dict[str, Prediction]:
    """Every file's prediction, by path (files without speech are left out)."""
    batch = predict_files(files, predictor)
    return {result.source: result for result in batch.results if isinstance(result, Prediction)}


def corpora(clips: list[tuple[str, str, str, float]]) -> list[str]:
    return sorted({corpus for _, corpus, _, _ in clips})


def unweighted_recall(pairs: list[tuple[str, str]]) -> float:
    """Mean recall over the true classes present (a prediction outside them counts as wrong)."""
    classes = sorted({truth for truth, _ in pairs})
    return 100 * float(np.mean([np.mean([p == c for t, p in pairs if t == c]) for c in classes]))


def agreement(exact: dict[str, Prediction], low: dict[str, Prediction]) -> dict[str, Any]:
    """Labels kept and probability shifts between two passes over the same files."""
    shared = sorted(set(exact) & set(low))
    shifts = [
        max(
            abs(exact[path].probabilities[label] - low[path].probabilities[label])
            for label in exact[path].probabilities
        )
        for path in shared
    ]
    return {
        "clips": len(shared),
        "same_label_percent": round(100 * float(np.mean([exact[p].label == low[p].label for p in shared])), 2),
        "probability_shift_mean": round(float(np.mean(shifts)), 4),
        "probability_shift_p99": round(float(np.percentile(shifts, 99)), 4),
        "probability_shift_max": round(float(np.max(shifts)), 4),
    }


if __name__ == "__main__":
    main()
