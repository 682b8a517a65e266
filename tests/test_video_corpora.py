"""RAVDESS audio-visual and CREMA-D Flash video trees, built here in the release layouts with
real (tiny) videos muxed by PyAV, read and extracted like any corpus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from emotrace.audio import load_audio
from emotrace.corpora import load_corpus
from emotrace.errors import BatchReport
from emotrace.features.pipeline import extract_corpus
from test_video_reader import face_clip, scene, tone, write_video


def build_ravdess_video(root: Path) -> Path:
    """Actor 1: one take as audio-visual + video-only mp4 (the two video downloads) plus its
    audio-only wav; actor 2: one audio-visual take, one video-only take without an AV twin."""
    face_clip(root / "Actor_01" / "01-01-03-01-01-01-01.mp4", frames=12)
    images, _ = scene(12)
    write_video(root / "Actor_01" / "02-01-03-01-01-01-01.mp4", images)  # video only: no audio track
    sf.write(root / "Actor_01" / "03-01-03-01-01-01-01.wav", tone(0.5, 16000), 16000)
    face_clip(root / "Actor_02" / "01-01-05-02-02-01-02.mp4", frames=12)
    write_video(root / "Actor_02" / "02-01-04-01-01-02-02.mp4", images)
    return root


def test_ravdess_audio_visual_takes_read_and_extract(tmp_path: Path) -> None:
    root = build_ravdess_video(tmp_path / "RAVDESS")
    data = load_corpus("ravdess", root)
    takes = {u.id: u for u in data.utterances}
    assert sorted(takes) == ["01-03-01-01-01-01", "01-04-01-01-02-02", "01-05-02-02-01-02"]
    first = takes["01-03-01-01-01-01"]
    assert first.audio.endswith("03-01-03-01-01-01-01.wav") and first.video.endswith("01-01-03-01-01-01-01.mp4")
    angry = takes["01-05-02-02-01-02"]
    assert angry.audio == angry.video and angry.video.endswith("01-01-05-02-02-01-02.mp4")
    assert load_audio(angry.audio).size > 0  # the audio track of the audio-visual mp4
    silent = takes["01-04-01-01-02-02"]
    assert silent.audio is None and silent.video.endswith("02-01-04-01-01-02-02.mp4")

    report = BatchReport()
    summary = extract_corpus(data.utterances, ["logmel", "face"], tmp_path / "store", report=report, progress=False)
    counts = {count.extractor: (count.computed, count.skipped) for count in summary.stores}
    assert counts == {"logmel": (2, 1), "face": (3, 0)}
    assert [str(error) for error in report.skipped] == ["01-04-01-01-02-02: has no audio file"]


def test_cremad_with_audio_and_flash_video_and_with_flash_video_alone(tmp_path: Path) -> None:
    full = tmp_path / "full"
    (full / "AudioWAV").mkdir(parents=True)
    for name in ("1001_DFA_ANG_XX", "1002_IEO_SAD_LO"):
        sf.write(full / "AudioWAV" / f"{name}.wav", tone(0.5, 16000), 16000)
    face_clip(full / "VideoFlash" / "1001_DFA_ANG_XX.flv", frames=10)
    data = load_corpus("cremad", full)
    by_id = {u.id: u for u in data.utterances}
    assert by_id["1001_DFA_ANG_XX"].audio.endswith(".wav") and by_id["1001_DFA_ANG_XX"].video.endswith(".flv")
    assert by_id["1002_IEO_SAD_LO"].video is None

    videos = tmp_path / "video-only"
    names = [f"{actor}_DFA_{emotion}_XX" for actor in (1001, 1002) for emotion in ("ANG", "HAP")]
    for name in names:
        face_clip(videos / "VideoFlash" / f"{name}.flv", frames=10)
    (videos / "VideoFlash" / "._1001_DFA_ANG_XX.flv").write_bytes(b"macOS metadata")
    (videos / "VideoFlash" / "1001_DFA_XYZ_XX.flv").write_bytes(b"")
    report = BatchReport()
    data = load_corpus("cremad", videos, report=report)
    assert sorted(u.id for u in data.utterances) == names
    assert [e.problem for e in report.skipped] == ["unknown emotion code XYZ"]
    assert all(u.audio == u.video for u in data.utterances)
    summary = extract_corpus(data.utterances, ["logmel", "face"], tmp_path / "store", progress=False)
    assert [(count.computed, count.skipped) for count in summary.stores] == [(4, 0), (4, 0)]
    audio = load_audio(data.utterances[0].audio)
    assert np.abs(audio).max() > 0.1  # the flv's MP3 tone
