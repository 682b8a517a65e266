"""The whole video path on the six real CREMA-D clips (``cremad-video/`` of the shared data):
decode, detect, mesh, features, method A on audio and on video, comparison, plot. Skipped
when the data is absent; far too few clips for any accuracy figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from emotrace.corpora import load_corpus
from emotrace.features.pipeline import extract_corpus
from emotrace.features.store import FeatureStore
from emotrace.features.transforms import InputSpec, model_frames
from emotrace.features.video.extractor import FaceGeometryExtractor
from emotrace.features.video.reader import probe_video
from emotrace.inference.roi_compare import (
    attention_curve,
    compare_clip,
    plot_roi_comparison,
)
from emotrace.models import build_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clips(shared_data: Path) -> list[Path]:
    folder = shared_data / "cremad-video"
    found = sorted(folder.glob("*.flv"))
    if len(found) != 6:
        pytest.skip(f"the six CREMA-D clips are not in {folder}")
    return found


@pytest.fixture(scope="module")
def corpus_root(clips: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The clips as CREMA-D's video part (``VideoFlash/``), by symbolic links."""
    root = tmp_path_factory.mktemp("CREMA-D")
    (root / "VideoFlash").mkdir()
    for clip in clips:
        (root / "VideoFlash" / clip.name).symlink_to(clip)
    return root


def test_the_detector_finds_the_face_on_at_least_95_percent_of_frames(clips: list[Path]) -> None:
    extractor = FaceGeometryExtractor()  # 30 Hz, the clips' own rate (29.97 fps)
    total = found = 0
    for clip in clips:
        info = probe_video(clip)
        assert (info.width, info.height, info.codec, info.has_audio) == (480, 360, "vp6f", True)
        track = extractor.track(str(clip))
        assert len(track.present) == pytest.approx(info.duration * 30, abs=2)
        total += len(track.present)
        found += int(track.present.sum())
        assert track.detections <= 3  # detected once, then tracked
        # the mesh sits on a face-sized region near the middle of the 480x360 frame
        width = np.ptp(track.points[track.present, :, 0], axis=1)
        assert 60 < np.median(width) < 200
    assert found / total >= 0.95, f"a face on {found} of {total} frames"


def test_whole_path_through_the_store_method_a_and_the_comparison(
    corpus_root: Path, tmp_path: Path, torch_single_thread
) -> None:
    corpus = load_corpus("cremad", corpus_root)
    assert sorted(u.label for u in corpus.utterances) == ["angry", "disgusted", "fearful", "happy", "neutral", "sad"]
    assert all(u.audio == u.video and u.video.endswith(".flv") for u in corpus.utterances)  # audio: the MP3 track
    summary = extract_corpus(corpus.utterances, ["face", "logmel"], tmp_path / "store", progress=False)
    assert [(count.computed, count.skipped) for count in summary.stores] == [(6, 0), (6, 0)]
    video_store = FeatureStore.at(next((tmp_path / "store").glob("face-*")))
    audio_store = FeatureStore.at(next((tmp_path / "store").glob("logmel-*")))

    torch.manual_seed(0)
    video_spec, audio_spec = InputSpec("face", frame_pooling=2), InputSpec("logmel", frame_pooling=8)
    video_model = build_model("roi_attention", num_classes=6, input_dims={"video": 39}, modalities=("video",))
    audio_model = build_model("roi_attention", num_classes=6, input_dims={"audio": 80}, modalities=("audio",))
    for utterance in corpus.utterances:
        video_features, audio_features = video_store.get(utterance.id), audio_store.get(utterance.id)
        assert video_features.frame_rate == 30.0 and video_features.data[0, :, -1].mean() >= 0.95
        video = attention_curve(video_model, model_frames(video_features, video_spec), 15.0)
        audio = attention_curve(audio_model, model_frames(audio_features, audio_spec), 12.5)
        assert abs(video.duration - audio.duration) < 0.2  # one clip, two streams
        agreement = compare_clip(audio, video, clip=utterance.id, emotion=utterance.label)
        assert agreement.seconds == pytest.approx(min(audio.duration, video.duration), abs=1e-3)
        assert agreement.video_regions and agreement.audio_regions
    path = plot_roi_comparison(tmp_path / "angry.png", audio, video, agreement)
    assert Image.open(path).size[0] > 800
