"""Feature extraction speed and memory on the 1440 RAVDESS clips, one extractor at a time.

Each extractor runs through ``emotrace extract`` (hashing, decoding, the extractor, writing
the store) into a fresh store, in a fresh process, so ``peak_mb`` is its own. ``speed`` =
audio seconds / wall seconds (x real time), model loading included. The same extraction is
then run again on the filled store: ``rerun_computed`` must be 0. The ASR row is copied
from ``benchmarks/results/asr_ravdess.json`` (run ``benchmarks/asr_ravdess.py``).

    EMOTRACE_DATA=../shared/data python benchmarks/extraction.py [--threads 2] [--extractors ...]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, write_results

EXTRACTORS = {
    "whisper-base:layers=2,3,4,5": "default acoustic extractor (the default model's input): Whisper-base, "
    "real length, layers up to 5",
    "whisper-base": "Whisper-base, real length, all 7 layers",
    "whisper-tiny": "Whisper tiny.en, real length, all 5 layers",
    "logmel": "log-mel filterbank, 80 bins",
    "egemaps": "eGeMAPSv02 low-level descriptors",
    "egemaps-functionals": "eGeMAPSv02 functionals",
}


def child(spec: str, root: str, threads: int) -> None:
    from emotrace.cli import app
    from emotrace.corpora import load_corpus
    from emotrace.features.pipeline import extract_corpus

    with tempfile.TemporaryDirectory() as store:
        started = time.perf_counter()
        app(
            [
                "extract",
                "ravdess",
                root,
                "--features",
                spec,
                "--store",
                store,
                "--threads",
                str(threads),
                "--batch-size",
                "16",
            ],
            standalone_mode=False,
        )
        wall = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rerun = extract_corpus(load_corpus("ravdess", root).utterances, [spec], store, progress=False, threads=threads)
    print(
        json.dumps(
            {
                "wall": wall,
                "peak_mb": peak,
                "rerun_seconds": rerun.seconds,
                "rerun_computed": sum(count.computed for count in rerun.stores),
                "rerun_cached": sum(count.cached for count in rerun.stores),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--extractors", nargs="+", default=list(EXTRACTORS), choices=list(EXTRACTORS))
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.threads)
        return
    root = Path(os.environ.get("EMOTRACE_DATA", "../shared/data")) / "ravdess"
    clips = sorted(path for path in root.rglob("*") if path.suffix.lower() in (".wav", ".flac"))
    audio = sum(sf.info(str(clip)).duration for clip in clips)
    rows = []
    for spec in args.extractors:
        done = subprocess.run(
            [sys.executable, __file__, "--child", spec, str(root), "--threads", str(args.threads)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            sys.exit(f"{spec} failed:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(
            {
                "system": spec,
                "description": EXTRACTORS[spec],
                "clips": len(clips),
                "audio_seconds": round(audio, 1),
                "seconds": round(result["wall"], 1),
                "speed": round(audio / result["wall"], 1),
                "rtf": round(result["wall"] / audio, 4),
                "peak_mb": round(result["peak_mb"]),
                "rerun_seconds": round(result["rerun_seconds"], 1),
                "rerun_computed": result["rerun_computed"],
                "rerun_cached": result["rerun_cached"],
            }
        )
        print(
            f"{spec:<32} {rows[-1]['speed']:7.1f}x real time, peak {rows[-1]['peak_mb']} MB, "
            f"rerun {rows[-1]['rerun_seconds']} s computing {rows[-1]['rerun_computed']}"
        )
        asr = RESULTS / "asr_ravdess.json"
        extra = {"asr": json.loads(asr.read_text())["rows"]} if asr.exists() else {}
        write_results(
            "extraction",
            f"RAVDESS speech, {len(clips)} clips ({audio / 60:.0f} min), `emotrace extract` "
            f"into a fresh store, {args.threads} torch threads, one process per extractor",
            rows,
            **extra,
        )


if __name__ == "__main__":
    main()
