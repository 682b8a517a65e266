"""``benchmarks/video.py`` and ``benchmarks/video_speed.py`` end to end on a tiny synthetic
CREMA-D video tree (the real corpus is not on these machines)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from test_video_reader import scene, tone, write_video

REPO = Path(__file__).resolve().parent.parent
EMOTIONS = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")

pytestmark = pytest.mark.slow


def benchmark(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_cremad_videos(root: Path, actors: int = 6) -> Path:
    """``VideoFlash/`` only: six emotions per actor, the face in a place and the tone at a pitch
    that depend on the emotion (something to learn), 0.8 s at 15 fps with 22.05 kHz MP3 audio."""
    for actor in range(1001, 1001 + actors):
        for number, emotion in enumerate(EMOTIONS):
            start = (10 + 12 * number, 20 + (actor % 3) * 5)
            images, _ = scene(12, size=(240, 180), faces=((110, start, (start[0] + 20, start[1])),))
            write_video(
                root / "VideoFlash" / f"{actor}_DFA_{emotion}_XX.flv",
                images,
                rate=15,
                audio=tone(0.8, 22050, freq=150.0 + 60 * number),
                sample_rate=22050,
            )
    return root


def test_video_benchmark_runs_end_to_end_and_resumes(tmp_path: Path, torch_single_thread) -> None:
    root = build_cremad_videos(tmp_path / "CREMA-D")
    output = tmp_path / "results" / "video_cremad.json"
    arguments = [
        "cremad",
        str(root),
        "--folds",
        "fold1",
        "--store",
        str(tmp_path / "store"),
        "--runs",
        str(tmp_path / "runs"),
        "--output",
        str(output),
        "--quiet",
        "--set",
        "inputs.audio.features=logmel",
        "--set",
        "inputs.audio.layers=null",
        "--set",
        "inputs.audio.frame_pooling=4",
        "--set",
        "optim.max_epochs=2",
        "--set",
        "data.batch_size=8",
    ]
    video = benchmark("video")
    assert video.main(arguments) == output
    results = json.loads(output.read_text())
    assert results["benchmark"] == "video_cremad" and "utterance-level" in results["protocol"]
    assert [row["system"] for row in results["rows"]] == [video.AUDIO, video.VIDEO, video.FUSED]
    for row in results["rows"]:
        assert row["clips"] == 36 and row["folds"] == 1 and 0 <= row["ua_mean"] <= 100
    agreement = results["roi_agreement"]
    test_clips = agreement["all"]["clips"]
    assert 5 <= test_clips <= 12  # the test actors of fold 1, six clips each
    assert set(agreement["per_emotion"]) <= {"angry", "disgusted", "fearful", "happy", "neutral", "sad"}
    assert agreement["shuffled"]["clips"] == test_clips
    per_clip = json.loads((tmp_path / "runs" / "roi_agreement.json").read_text())["clips"]
    assert len(per_clip) == test_clips and all(clip["seconds"] > 0.5 for clip in per_clip)
    assert len(list((tmp_path / "runs" / "plots").glob("*.png"))) == len(agreement["per_emotion"])

    # a second run trains nothing: every fold is done; the figures are the same
    before = {row["system"]: row["ua_mean"] for row in results["rows"]}
    video.main(arguments)
    after = json.loads(output.read_text())
    assert {row["system"]: row["ua_mean"] for row in after["rows"]} == before
    assert after["roi_agreement"] == agreement


def test_video_speed_benchmark_writes_its_results(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "clip.mp4", scene(30)[0], rate=30, audio=tone(1.0, 22050), sample_rate=22050)
    speed = benchmark("video_speed")
    path = speed.main(
        [str(clip), "--repeat", "2", "--workers", "1", "--rates", "30", "--output", str(tmp_path / "speed.json")]
    )
    results = json.loads(path.read_text())
    assert results["benchmark"] == "speed" and "cores available" in results["machine"]
    (row,) = results["rows"]
    assert row["video_seconds"] == pytest.approx(2.0, abs=0.1) and row["frames"] == 60
    assert row["speed"] > 0 and row["cpu_speed"] > 0 and row["face_frames"] == 60 and row["workers"] == 1
