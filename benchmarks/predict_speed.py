"""Speed and memory of ``emotrace predict`` end to end, beside a wav2vec2-base pipeline.

Measured, each in a fresh process so peak memory is its own:
* ``emotrace predict`` (the CLI code path, default model; its encoder at each ``--precision``
  asked for: ``auto`` is bfloat16 on a CPU that computes it natively) on the 1440 RAVDESS clips, and on a
  one-hour recording made by concatenating RAVDESS clips with 0.5-2 s pauses (the long-recording
  path: voice activity segmentation, per-segment prediction, timeline);
* a wav2vec2-base pipeline as SpeechBrain and Hugging Face users run it (16 kHz waveform,
  normalised, Wav2Vec2Model, mean pooling, linear head), architecture-identical with random
  weights (timing only), on the same clips and on the same hour in 30 s chunks.
Wall time includes process start, model loading, audio decoding, the encoder and the model.
``speed`` = audio seconds / wall seconds (x real time); ``rtf`` = its inverse.

    EMOTRACE_DATA=../shared/data python benchmarks/predict_speed.py [--threads 2] [--precisions auto float32]
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

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).parent))
from common import earlier_results, write_results
from emotrace.features.precision import AUTO_PRECISION, TRAINING_PRECISION, resolve_precision

HOUR = 3600.0


def child(kind: str, target: str, threads: int, precision: str) -> None:
    """One measurement, in this process; prints wall seconds, audio seconds and peak MB."""
    import torch

    torch.set_num_threads(threads)
    started = time.perf_counter()
    paths = audio_files(Path(target))
    if kind == "emotrace":
        from emotrace.cli import app

        with tempfile.TemporaryDirectory() as temp:
            out = Path(temp) / "predictions.json"
            command = ["predict", target, "--format", "json", "--output", str(out), "--precision", precision]
            try:
                app(command, standalone_mode=False)
            except SystemExit as exit_:
                if exit_.code:
                    raise
            predicted = len(json.loads(out.read_text())["predictions"])
    else:
        predicted = wav2vec2_pipeline(paths)
    wall = time.perf_counter() - started
    audio = sum(sf.info(str(path)).duration for path in paths)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"wall": wall, "audio": audio, "peak_mb": peak, "predicted": predicted}))


def audio_files(target: Path) -> list[Path]:
    if not target.is_dir():
        return [target]
    return sorted(path for path in target.rglob("*") if path.suffix.lower() in (".wav", ".flac"))


def wav2vec2_pipeline(paths: list[Path]) -> int:
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from emotrace.audio import load_audio, stream_audio

    model = Wav2Vec2Model(Wav2Vec2Config()).eval()  # wav2vec2-base architecture
    head = torch.nn.Linear(model.config.hidden_size, 8)
    count = 0
    with torch.inference_mode():
        for path in paths:
            whole = sf.info(str(path)).duration <= 30
            blocks = [load_audio(path)] if whole else (block for _, block in stream_audio(path, 30.0))
            for block in blocks:
                if len(block) < 400:  # under wav2vec2's 25 ms receptive field: dropped, as such pipelines do
                    continue
                wave = torch.from_numpy((block - block.mean()) / (block.std() + 1e-7))[None]
                head(model(wave).last_hidden_state.mean(1)).softmax(-1)
                count += 1
    return count


def make_hour(clips: list[Path], path: Path, seed: int = 0) -> None:
    """Clips and pauses, written block by block, until an hour of audio."""
    from emotrace.audio import load_audio

    rng = np.random.default_rng(seed)
    total, written = int(HOUR * 16000), 0
    with sf.SoundFile(str(path), "w", samplerate=16000, channels=1, format="FLAC") as out:
        while written < total:
            clip = load_audio(clips[int(rng.integers(len(clips)))])
            pause = np.zeros(int(rng.uniform(0.5, 2.0) * 16000), np.float32)
            piece = np.concatenate([clip, pause])[: total - written]
            out.write(piece)
            written += len(piece)


def measure(kind: str, target: Path, threads: int, precision: str = AUTO_PRECISION) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(target), "--threads", str(threads), "--precision", precision],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(f"{kind} on {target} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "speed": round(result["audio"] / result["wall"], 1),
        "rtf": round(result["wall"] / result["audio"], 4),
        "seconds": round(result["wall"], 1),
        "audio_seconds": round(result["audio"], 1),
        "peak_mb": round(result["peak_mb"]),
        "items": result["predicted"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs=2, metavar=("KIND", "TARGET"), help=argparse.SUPPRESS)
    parser.add_argument("--precision", default=AUTO_PRECISION, help=argparse.SUPPRESS)  # the child's
    parser.add_argument(
        "--precisions",
        nargs="+",
        default=[AUTO_PRECISION, TRAINING_PRECISION],
        help="the encoder precisions emotrace is measured at",
    )
    parser.add_argument(
        "--only-emotrace",
        action="store_true",
        help="measure emotrace again and keep the results file's wav2vec2 rows (dated): after a change of "
        "emotrace's model or code, the reference pipeline has not changed",
    )
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.threads, args.precision)
        return
    ravdess = Path(os.environ.get("EMOTRACE_DATA", "../shared/data")) / "ravdess"
    clips = audio_files(ravdess)
    if len(clips) != 1440:
        sys.exit(f"expected the 1440 RAVDESS clips under {ravdess}, found {len(clips)}")
    rows = []
    earlier = {}
    if args.only_emotrace:
        earlier = {row["system"]: row for row in earlier_results("predict_speed")["rows"]}
    with tempfile.TemporaryDirectory() as temp:
        hour = Path(temp) / "hour.flac"
        make_hour(clips, hour)
        for name, target in (("RAVDESS, 1440 clips", ravdess), ("one-hour recording", hour)):
            ours = {precision: measure("emotrace", target, args.threads, precision) for precision in args.precisions}
            reference = f"wav2vec2-base pipeline (random weights, timing only), {name}"
            theirs = earlier[reference] if args.only_emotrace else measure("wav2vec2", target, args.threads)
            for precision, measured in ours.items():
                system = f"emotrace predict (default model, --precision {precision}), {name}"
                rows.append({"system": system, "precision": resolve_precision(precision), **measured})
            fastest = max(measured["speed"] for measured in ours.values())
            rows.append({**theirs, "system": reference, "emotrace_speedup": round(fastest / theirs["speed"], 2)})
            write_results(
                "predict_speed",
                "end-to-end wall time and peak memory (RSS) of one process "
                f"per measurement, {args.threads} torch threads; 'precision' is the Whisper encoder's "
                "(--precision auto resolves to bfloat16 on a CPU with native bfloat16)",
                rows,
            )
    for row in rows:
        print(f"{row['system']:<80} {row['speed']:7.1f}x real time, peak {row['peak_mb']} MB")


if __name__ == "__main__":
    main()
