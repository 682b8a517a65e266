"""Throughput of the Ray engine (``--engine ray``) with 1 and 2 actors on this machine, and
with 4 one-thread actors on the same cores (a simulated cluster of more workers than cores),
beside the single-process path, for extraction and for prediction.

Measured on RAVDESS clips, one thread per actor (and for the single process), in one local
Ray cluster of 4 logical CPUs (started once, not timed). Each figure is a whole job's wall
time: actors starting and loading their models, hashing, decoding, the model, the writes
and, for prediction, assembling the output. ``speed`` is audio hours per hour of wall
time; ``efficiency`` is the 2-actor speed over twice the 1-actor speed.

    EMOTRACE_DATA=../shared/data python benchmarks/ray_scaling.py [--clips 96] [--predict-clips 48]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import soundfile as sf
import torch
from threadpoolctl import threadpool_limits

from emotrace.api import DEFAULT_MODEL, load_model
from emotrace.corpora.records import Utterance
from emotrace.distributed.extract import extract_corpus_on_ray
from emotrace.distributed.predict import predict_files_on_ray
from emotrace.errors import BatchReport
from emotrace.features.pipeline import extract_corpus

sys.path.insert(0, str(Path(__file__).parent))
from common import write_results

ACTORS = (1, 2, 4)


def clips(root: Path, count: int) -> list[Path]:
    """``count`` clips taken round-robin over the actors, so every speaker is in."""
    folders = [sorted(folder.glob("*.flac")) for folder in sorted((root / "ravdess").glob("Actor_*"))]
    return [folder[index] for index in range(60) for folder in folders][:count]


def timed(run: Callable[[], object]) -> tuple[float, float]:
    """Wall seconds of ``run()``, and the machine's load average over the last minute before it."""
    load = os.getloadavg()[0]
    started = time.perf_counter()
    run()
    return time.perf_counter() - started, load


def row(system: str, timing: tuple[float, float], audio: float, items: int, **extra: object) -> dict[str, object]:
    seconds, load = timing
    speed = audio / seconds
    print(f"{system}: {seconds:.1f} s, {speed:.1f} audio hours per hour (load {load:.1f})", flush=True)
    return {
        "system": system,
        "speed": round(speed, 1),
        "seconds": round(seconds, 1),
        "audio_seconds": round(audio, 1),
        "items": items,
        "load_average": round(load, 1),
        **extra,
    }


def extraction_rows(paths: list[Path], features: str, folder: Path) -> list[dict[str, object]]:
    utterances = [Utterance(id=path.stem, audio=str(path), label=None, speaker=path.parent.name) for path in paths]
    audio = sum(sf.info(str(path)).duration for path in paths)
    timing = timed(lambda: extract_corpus(utterances, [features], folder / "local", progress=False))
    rows = [row(f"extract {features}, single process", timing, audio, len(paths), engine="local", actors=None)]
    for actors in ACTORS:
        timing = timed(
            lambda actors=actors: extract_corpus_on_ray(
                utterances, [features], folder / f"ray{actors}", actors=actors, progress=False
            )
        )
        rows.append(
            row(f"extract {features}, Ray, {actors} actor(s)", timing, audio, len(paths), engine="ray", actors=actors)
        )
    return rows


def prediction_rows(paths: list[Path], model: str, folder: Path) -> list[dict[str, object]]:
    audio = sum(sf.info(str(path)).duration for path in paths)

    def local() -> None:
        predictor = load_model(model)
        for path in paths:
            predictor.predict_file(path)

    rows = [row(f"predict {model}, single process", timed(local), audio, len(paths), engine="local", actors=None)]
    for actors in ACTORS:
        timing = timed(
            lambda actors=actors: predict_files_on_ray(
                model, {None: paths}, folder / f"ray{actors}.json", report=BatchReport(), actors=actors, progress=False
            )
        )
        rows.append(
            row(f"predict {model}, Ray, {actors} actor(s)", timing, audio, len(paths), engine="ray", actors=actors)
        )
    return rows


def efficiency(rows: list[dict[str, object]]) -> float:
    speed = {item["actors"]: item["speed"] for item in rows}
    return round(speed[2] / (2 * speed[1]), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("EMOTRACE_DATA", "../shared/data")))
    parser.add_argument("--clips", type=int, default=144, help="clips to extract")
    parser.add_argument("--features", default="egemaps")
    parser.add_argument("--predict-clips", type=int, default=96, help="clips to predict")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    args = parser.parse_args()

    import ray

    ray.init(num_cpus=4, include_dashboard=False, logging_level="WARNING")
    torch.set_num_threads(1)
    with threadpool_limits(1), tempfile.TemporaryDirectory() as folder:
        extraction = extraction_rows(clips(args.data, args.clips), args.features, Path(folder))
        prediction = prediction_rows(clips(args.data, args.predict_clips), args.model, Path(folder))
    ray.shutdown()
    path = write_results(
        "ray_scaling",
        "throughput only (no accuracy): RAVDESS clips; one thread per actor and for the single process; "
        "a local Ray cluster of 4 logical CPUs on the machine's cores; wall time of whole jobs including actor "
        "start-up and model loading, excluding the cluster's start",
        extraction + prediction,
        efficiency={"extract": efficiency(extraction[1:]), "predict": efficiency(prediction[1:])},
        note="speed: audio hours per hour of wall time; efficiency: 2-actor speed / (2 x 1-actor speed). "
        "4 actors on 2 cores simulate a cluster of more workers than cores: its speed is bounded by the cores. "
        "load_average: the machine's 1-minute load before each run; above the 2 cores, other processes share "
        "them and the figures show that contention more than the engine's scaling.",
    )
    print(f"written {path}")


if __name__ == "__main__":
    main()
