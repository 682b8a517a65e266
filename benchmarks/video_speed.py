"""How fast the ``face`` extractor turns video into frame features: decode, detect, track the
face mesh, geometry; x real time on this machine's 2 cores.

    EMOTRACE_DATA=../shared/data python benchmarks/video_speed.py [CLIP ...] [--workers 1,2] [--rates 30,15]

Default clips: the six CREMA-D clips of the shared data (480x360 VP6 at 29.97 fps, 12.6 s in
all). The clips go through the extractor ``--repeat`` times as one batch (as in a corpus run:
models load once per thread), for each feature rate in ``--rates`` (30 Hz: a mesh on every
frame; 15 Hz: on every other one, though every frame is still decoded) and each worker count in
``--workers`` (threads, one clip each at a time). ``speed`` = video seconds / wall seconds; ``cpu_speed`` =
video seconds / CPU seconds of this process, which does not depend on what else runs on the
shared cores (``load`` is the 1-minute load average before and after). Results:
``benchmarks/results/video_speed.json`` (or ``--output``).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

from emotrace.features.video.extractor import FaceGeometryExtractor
from emotrace.features.video.reader import probe_video

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, write_results


def measure(clips: list[str], workers: int, rate: float) -> dict[str, Any]:
    extractor = FaceGeometryExtractor(rate=rate, workers=workers)
    extractor.extract(clips[:workers])  # load the models in each thread first
    load_before = os.getloadavg()[0]
    started, cpu_started = time.perf_counter(), time.process_time()
    features = extractor.extract(clips)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    frames = sum(item.data.shape[1] for item in features)
    seconds = sum(probe_video(clip).duration for clip in clips)
    return {
        "system": f"face extractor at {rate:g} Hz, {workers} worker{'s' if workers > 1 else ''}",
        "workers": workers,
        "rate": rate,
        "clips": len(clips),
        "video_seconds": round(seconds, 2),
        "frames": frames,
        "face_frames": int(sum(item.data[0, :, -1].sum() for item in features)),
        "seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        "speed": round(seconds / wall, 1),
        "cpu_speed": round(seconds / cpu, 1),
        "load": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("clips", nargs="*", type=Path)
    parser.add_argument("--workers", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--rates", default="30,15", help="comma-separated feature rates (Hz)")
    parser.add_argument("--output", type=Path, default=RESULTS / "video_speed.json")
    args = parser.parse_args(argv)
    clips = [str(clip) for clip in args.clips]
    if not clips:
        folder = Path(os.environ.get("EMOTRACE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
        clips = sorted(str(path) for path in (folder / "cremad-video").glob("*.flv"))
        if not clips:
            parser.error(f"no clips given and none in {folder / 'cremad-video'} (set EMOTRACE_DATA)")
    batch = clips * args.repeat
    rows = []
    rates = [float(rate) for rate in args.rates.split(",")]
    for rate in rates:
        for workers in (int(count) for count in args.workers.split(",")):
            rows.append(measure(batch, workers, rate))
        print(
            f"{rows[-1]['system']}: {rows[-1]['speed']}x real time (CPU: {rows[-1]['cpu_speed']}x per core busy), "
            f"load {rows[-1]['load']}"
        )
    protocol = (
        f"{len(clips)} clips x {args.repeat} ({rows[0]['video_seconds']:g} s of video), face features "
        f"at {' and '.join(f'{r:g}' for r in rates)} Hz (decode, BlazeFace, face mesh, geometry); wall time of "
        "one process with models loaded beforehand, and its CPU time: on a shared machine (load = 1-minute "
        "load average on its 2 cores) wall time says as much about the others as about this code"
    )
    return write_results(args.output.stem, protocol, rows, directory=args.output.parent)


if __name__ == "__main__":
    main()
