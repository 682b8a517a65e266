"""The video reader: probing, decoding at a fixed rate, segments, and one-line errors on bad files.

The clip builders here (a real face pasted into frames, muxed with audio by PyAV) are shared
by the other video tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from emotrace.audio import load_audio
from emotrace.errors import InputError
from emotrace.features.video.reader import (
    TimedFrame,
    VideoClip,
    frames_at_rate,
    probe_video,
    read_frames,
)

FACE = Path(__file__).parent / "fixtures" / "cremad_1001_face.png"
BACKGROUND = (96, 128, 96)


def face_image(height: int) -> Image.Image:
    """The fixture face (a real CREMA-D actor, see fixtures/README.md) scaled to ``height`` pixels."""
    face = Image.open(FACE).convert("RGB")
    return face.resize((round(face.width * height / face.height), height), Image.Resampling.BILINEAR)


Face = tuple[int, tuple[float, float], tuple[float, float]]


def scene(
    frames: int,
    size: tuple[int, int] = (320, 240),
    faces: Sequence[Face] = ((110, (20, 40), (150, 60)),),
    blank: Sequence[int] = (),
    shown: Sequence[range | None] = (),
) -> tuple[list[np.ndarray], list[list[tuple[float, float] | None]]]:
    """Frames with faces moving in straight lines, and each face's centre per frame (None
    where it is not shown).

    ``faces`` are ``(height, top-left at the first frame, top-left at the last)``; frames in
    ``blank`` show no face at all; ``shown[i]``, when given, the frames face ``i`` is in.
    """
    images, centres = [], []
    pictures = [face_image(height) for height, _, _ in faces]
    for index in range(frames):
        canvas = Image.new("RGB", size, BACKGROUND)
        where: list[tuple[float, float] | None] = []
        share = index / max(frames - 1, 1)
        for number, (picture, (_, start, end)) in enumerate(zip(pictures, faces)):
            window = shown[number] if number < len(shown) else None
            if index in blank or (window is not None and index not in window):
                where.append(None)
                continue
            x = round(start[0] + share * (end[0] - start[0]))
            y = round(start[1] + share * (end[1] - start[1]))
            canvas.paste(picture, (x, y))
            where.append((x + picture.width / 2, y + picture.height / 2))
        images.append(np.asarray(canvas))
        centres.append(where)
    return images, centres


def tone(seconds: float, sample_rate: int, freq: float = 220.0) -> np.ndarray:
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_video(
    path: Path,
    images: Sequence[np.ndarray],
    rate: int = 25,
    audio: np.ndarray | None = None,
    sample_rate: int = 22050,
) -> Path:
    """Mux ``images`` (and a mono ``audio`` track) with PyAV: H.264 + AAC in .mp4/.mov, Flash
    video (Sorenson) + MP3 in .flv (whose muxer takes 44.1, 22.05 or 11.025 kHz only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    video_codec, audio_codec = ("flv", "mp3") if path.suffix == ".flv" else ("libx264", "aac")
    with av.open(str(path), "w") as container:
        video = container.add_stream(video_codec, rate=rate)
        video.width, video.height = images[0].shape[1], images[0].shape[0]
        video.pix_fmt = "yuv420p"
        sound = container.add_stream(audio_codec, rate=sample_rate, layout="mono") if audio is not None else None
        for image in images:
            container.mux(video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")))
        container.mux(video.encode())
        if sound is not None:
            frame = av.AudioFrame.from_ndarray(audio[None].astype(np.float32), format="fltp", layout="mono")
            frame.sample_rate = sample_rate
            container.mux(sound.encode(frame))
            container.mux(sound.encode())
    return path


def face_clip(path: Path, frames: int = 25, rate: int = 25, blank: Sequence[int] = (), **scene_options) -> Path:
    """A clip of the moving fixture face with a tone as its audio track."""
    images, _ = scene(frames, blank=blank, **scene_options)
    sample_rate = 22050
    return write_video(path, images, rate, tone(frames / rate, sample_rate), sample_rate)


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("suffix", [".mp4", ".flv"])
def test_probe_and_decode_a_muxed_clip(tmp_path: Path, suffix: str) -> None:
    path = face_clip(tmp_path / f"clip{suffix}", frames=20, rate=20)
    info = probe_video(path)
    assert (info.width, info.height, info.has_audio) == (320, 240, True)
    assert info.frame_rate == pytest.approx(20.0)
    frames = list(read_frames(VideoClip(str(path))))
    assert len(frames) == 20
    assert [f.index for f in frames] == list(range(20))
    assert frames[0].time == pytest.approx(0.0, abs=1e-6) and frames[-1].time == pytest.approx(0.95, abs=1e-3)
    assert load_audio(path).shape[0] == pytest.approx(16000, rel=0.1)  # the audio track of the same file


def test_fixed_rate_repeats_or_skips_frames_to_keep_time() -> None:
    def timed(times: Sequence[float]) -> list[TimedFrame]:
        return [TimedFrame(t, None, i) for i, t in enumerate(times)]  # type: ignore[arg-type]

    source = timed([0.0, 0.04, 0.08, 0.12])  # 25 fps, 4 frames: 0.16 s
    at_50 = [(k, f.index) for k, f in frames_at_rate(iter(source), 50.0)]
    assert at_50 == [(0, 0), (1, 0), (2, 1), (3, 1), (4, 2), (5, 2), (6, 3), (7, 3)]
    at_10 = [(k, f.index) for k, f in frames_at_rate(iter(source), 10.0)]
    assert at_10 == [(0, 0), (1, 2)]
    late = [(k, f.index) for k, f in frames_at_rate(iter(timed([0.05, 0.1])), 20.0)]
    assert late == [(0, 0), (1, 0), (2, 1)]  # the late first frame also stands for the time before it
    assert list(frames_at_rate(iter([]), 30.0)) == []
    with pytest.raises(ValueError, match="positive"):
        list(frames_at_rate(iter(source), 0.0))


def test_a_segment_is_timed_from_its_start(tmp_path: Path) -> None:
    path = face_clip(tmp_path / "clip.mp4", frames=50, rate=25)
    frames = list(read_frames(VideoClip(str(path), start=0.6, end=1.2)))
    assert len(frames) == 15
    assert frames[0].time == pytest.approx(0.0, abs=1e-6)
    assert frames[-1].time == pytest.approx(0.56, abs=1e-3)
    with pytest.raises(InputError, match="no decodable video frames in the segment"):
        list(read_frames(VideoClip(str(path), start=5.0, end=6.0)))
    with pytest.raises(InputError, match="empty or negative"):
        read_frames(VideoClip(str(path), start=1.0, end=0.5))


def test_bad_files_give_one_line_errors_naming_them(tmp_path: Path) -> None:
    audio_only = tmp_path / "speech.wav"
    sf.write(audio_only, tone(0.5, 16000), 16000)
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    good = face_clip(tmp_path / "good.mp4", frames=50)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    cases = [
        (tmp_path / "missing.mp4", "file not found"),
        (empty, "file is empty"),
        (text, "is not a video file FFmpeg can read"),
        (audio_only, "has no video stream (only audio)"),
        (tmp_path, "is not a regular file"),
    ]
    for path, problem in cases:
        with pytest.raises(InputError) as caught:
            list(read_frames(VideoClip(str(path))))
        assert str(caught.value).startswith(f"{path}: ") and problem in str(caught.value), str(caught.value)
        assert "\n" not in str(caught.value)
        with pytest.raises(InputError, match=problem.split(" (")[0]):
            probe_video(path)
    # an mp4 cut in half keeps its header at the end: FFmpeg cannot open it
    with pytest.raises(InputError, match="truncated.mp4: is not a video file FFmpeg can read"):
        list(read_frames(VideoClip(str(truncated))))


def test_a_cut_flash_video_gives_the_frames_before_the_cut(tmp_path: Path) -> None:
    good = face_clip(tmp_path / "good.flv", frames=50)
    cut = tmp_path / "cut.flv"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size * 2 // 3])
    frames = list(read_frames(VideoClip(str(cut))))
    assert 10 < len(frames) < 50  # FLV streams without an index: what was written decodes
