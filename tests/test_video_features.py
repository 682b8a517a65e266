"""Face tracking, face geometry and the ``face`` extractor, on clips built from a real face.

The face pasted into these clips is a real CREMA-D actor's (fixtures/README.md), because a
drawn face does not reliably trigger the detector: the tests know where the face is in every
frame and check that the tracker follows it, marks the frames without one, and keeps the
speaker's face when another appears.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emotrace.corpora import Utterance
from emotrace.errors import BatchReport
from emotrace.features.inputs import ExtractorConfigError
from emotrace.features.pipeline import extract_corpus
from emotrace.features.registry import EXTRACTORS, get_extractor
from emotrace.features.store import FeatureStore
from emotrace.features.video.extractor import FaceGeometryExtractor
from emotrace.features.video.face_models import CHECKSUMS, MODELS_DIR, box_iou
from emotrace.features.video.geometry import (
    MEASURES,
    MESH_TO_IBUG68,
    PRESENCE_COLUMN,
    FaceFrames,
    geometry_features,
    hold_nearest,
    measures,
)
from test_video_reader import face_clip, scene, write_video

DIMS = 2 * len(MEASURES) + 1


@pytest.fixture(scope="module")
def extractor() -> FaceGeometryExtractor:
    return FaceGeometryExtractor(rate=25)


def track_centres(points: np.ndarray) -> np.ndarray:
    """The middle of each frame's mesh box ``(T, 2)`` (NaN where no face)."""
    return (points[:, :, :2].min(1) + points[:, :, :2].max(1)) / 2


def test_the_tracker_follows_a_moving_face_and_marks_frames_without_one(tmp_path: Path, extractor) -> None:
    blank = range(10, 15)
    images, truth = scene(30, blank=blank)
    track = extractor.track(str(write_video(tmp_path / "moving.mp4", images)))
    assert track.present.tolist() == [index not in blank for index in range(30)]
    assert track.detections == 1 + len(blank) + 1  # the first frame, each empty frame, the face's return
    shown = [index for index in range(30) if index not in blank]
    offsets = track_centres(track.points)[shown] - np.array([truth[index][0] for index in shown])
    assert np.abs(offsets).max() < 20  # on the pasted face (110 pixels high)
    assert offsets.std(0).max() < 2.0  # and moving with it, pixel for pixel


def test_the_largest_or_the_most_central_face_is_the_speaker(tmp_path: Path) -> None:
    faces = ((140, (10, 40), (10, 40)), (100, (190, 60), (190, 60)))  # a large face left, a smaller one centred
    images, truth = scene(8, size=(480, 240), faces=faces)
    path = str(write_video(tmp_path / "two.mp4", images))
    for select, which in (("largest", 0), ("central", 1)):
        track = FaceGeometryExtractor(rate=25, select=select).track(path)
        assert track.present.all()
        centre = track_centres(track.points).mean(0)
        assert np.hypot(*(centre - truth[0][which])) < 20, select


def test_a_face_that_returns_is_matched_by_overlap_not_taken_over_by_a_larger_one(tmp_path: Path) -> None:
    faces = ((100, (20, 60), (20, 60)), (140, (300, 40), (300, 40)))
    images, truth = scene(24, size=(480, 240), faces=faces, blank=range(8, 11), shown=(None, range(11, 24)))
    track = FaceGeometryExtractor(rate=25).track(str(write_video(tmp_path / "intruder.mp4", images)))
    assert track.present.tolist() == [index not in range(8, 11) for index in range(24)]
    centres = track_centres(track.points)
    assert np.hypot(*(centres[11:] - truth[11][0]).T).max() < 20  # still the first face, though the other is larger
    assert np.hypot(*(centres[11:] - truth[11][1]).T).min() > 100


def test_a_clip_without_a_face_keeps_every_frame_marked(tmp_path: Path, extractor) -> None:
    images, _ = scene(12, faces=())
    (features,) = extractor.extract([str(write_video(tmp_path / "empty.mp4", images))])
    assert features.data.shape == (1, 12, DIMS) and features.frame_rate == 25.0
    assert not features.data.any()  # no face: zero measures, zero deltas, mask 0


def test_extractor_features_columns_and_registry(tmp_path: Path, extractor) -> None:
    path = face_clip(tmp_path / "clip.flv", frames=20, rate=20, blank=(5, 6))
    (features,) = extractor.extract([str(path)])
    columns = extractor.columns()
    assert features.data.shape == (1, 25, DIMS) and len(columns) == DIMS  # 1 s of a 20 fps clip at 25 Hz
    assert columns[-1] == PRESENCE_COLUMN and columns[0] == "mouth_open" and columns[len(MEASURES)] == "d_mouth_open"
    mask = features.data[0, :, -1]
    assert np.flatnonzero(mask == 0).tolist() == [7, 8]  # source frames 5 and 6 span 0.25-0.35 s: samples at 0.28, 0.32
    held = features.data[0, :, : len(MEASURES)]
    assert np.isfinite(features.data).all() and (held[mask == 0] == held[np.argmax(mask == 0) - 1]).all()
    assert (features.data[0, mask == 0, len(MEASURES) : 2 * len(MEASURES)] == 0).all()

    assert "face" in EXTRACTORS and "openface" in EXTRACTORS
    built = get_extractor("face:rate=15:select=central:points=1:workers=2")
    assert (built.rate, built.select, built.points, built.workers) == (15.0, "central", True, 2)
    assert len(built.columns()) == DIMS + 136
    assert built.config() != extractor.config() and "workers" not in built.config()  # threads change no number
    for spec, problem in (("face:select=left", "select"), ("face:points=maybe", "points"), ("face:size=3", "unknown")):
        with pytest.raises(ExtractorConfigError, match=problem):
            get_extractor(spec)


def test_geometry_does_not_depend_on_where_the_face_is_or_how_big(extractor, tmp_path: Path) -> None:
    track = extractor.track(str(face_clip(tmp_path / "clip.mp4", frames=5)))
    points = track.points[:, list(MESH_TO_IBUG68), :2].astype(np.float64)
    angle, scale, shift = 0.3, 1.7, np.array([40.0, -25.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = points @ rotation.T * scale + shift
    original = measures(FaceFrames(points, track.present, 25.0, (0, 0)))
    transformed = measures(FaceFrames(moved, track.present, 25.0, (0, 0)))
    shape = [MEASURES.index(name) for name in MEASURES if not name.startswith(("head_roll", "face_"))]
    np.testing.assert_allclose(transformed[:, shape], original[:, shape], atol=1e-9)
    roll = MEASURES.index("head_roll")
    np.testing.assert_allclose(transformed[:, roll] - original[:, roll], angle, atol=1e-9)
    # the mouth opens: the lower inner lip moves down by 0.1 inter-ocular distances
    opened = points.copy()
    distance = np.hypot(*((points[:, 42] + points[:, 45]) / 2 - (points[:, 36] + points[:, 39]) / 2).T)
    opened[:, 66, 1] += 0.1 * distance
    change = measures(FaceFrames(opened, track.present, 25.0, (0, 0)))[:, 0] - original[:, 0]
    np.testing.assert_allclose(change, 0.1, atol=0.02)


def test_hold_nearest_and_deltas() -> None:
    values = np.arange(12, dtype=np.float64).reshape(6, 2)
    present = np.array([False, True, False, False, True, False])
    np.testing.assert_array_equal(hold_nearest(values, present)[:, 0], [2, 2, 2, 2, 8, 8])
    assert not hold_nearest(values, np.zeros(6, bool)).any()
    points = np.zeros((4, 68, 2))
    points[:, 36], points[:, 39], points[:, 42], points[:, 45] = (-1.2, 0), (-0.8, 0), (0.8, 0), (1.2, 0)
    points[:, 0], points[:, 16] = (-2, 0.5), (2, 0.5)  # a jaw, or the face is degenerate
    points[:, 66, 1] = [0.1, 0.2, 0.4, 0.4]
    present = np.array([True, True, False, True])
    data, names = geometry_features(FaceFrames(points, present, 10.0, (0, 0)))
    opening, delta = data[:, names.index("mouth_open")], data[:, names.index("d_mouth_open")]
    np.testing.assert_allclose(opening, [0.05, 0.1, 0.1, 0.2], atol=1e-6)  # half the eye distance of 2
    np.testing.assert_allclose(delta, [0.0, 0.5, 0.0, 0.0], atol=1e-6)  # per second; 0 next to a gap
    np.testing.assert_array_equal(data[:, -1], present)


def test_shipped_models_and_licence_are_present_and_small() -> None:
    for name in CHECKSUMS:
        assert (MODELS_DIR / name).stat().st_size < 2_000_000
    assert "Apache License" in (MODELS_DIR / "LICENSE").read_text()
    assert box_iou(np.array([0, 0, 2, 2]), np.array([1, 1, 3, 3])) == pytest.approx(1 / 7)


def test_corpus_extraction_into_the_store_skips_bad_videos_and_resumes(tmp_path: Path) -> None:
    good = face_clip(tmp_path / "a.mp4", frames=15)
    second = face_clip(tmp_path / "b.flv", frames=15)
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video")
    utterances = [
        Utterance("a", str(good), "happy", "s1", video=str(good)),
        Utterance("b", str(second), "sad", "s1", video=str(second)),
        Utterance("segment", str(good), "sad", "s2", video=str(good), video_start=0.2, video_end=0.4),
        Utterance("no-video", str(good), "angry", "s2"),
        Utterance("broken", str(good), "angry", "s2", video=str(broken)),
    ]
    report = BatchReport()
    summary = extract_corpus(utterances, ["face"], tmp_path / "store", report=report, progress=False)
    assert (summary.stores[0].computed, summary.stores[0].skipped) == (3, 2)
    problems = sorted(str(error) for error in report.skipped)
    assert problems[0].startswith(f"broken ({broken}): is not a video file FFmpeg can read")
    assert problems[1] == "no-video: has no video file"
    store = FeatureStore.at(next((tmp_path / "store").glob("face-*")))
    assert store.ids() == ["a", "b", "segment"]
    assert store.get("segment").data.shape == (1, 6, DIMS)  # 0.2 s at 30 Hz
    assert store.entry_meta("a")["seconds"] == pytest.approx(15 / 25, abs=0.04)
    again = extract_corpus(utterances[:3], ["face"], tmp_path / "store", progress=False)
    assert (again.stores[0].computed, again.stores[0].cached) == (0, 3)


def test_expression_probabilities_from_fer_when_installed(tmp_path: Path) -> None:
    from emotrace.features.video.expressions import (
        EXPRESSION_COLUMNS,
        expression_model_path,
    )
    from emotrace.features.video.face_models import VideoModelError

    try:
        expression_model_path()
    except VideoModelError as error:
        pytest.skip(str(error))
    extractor = FaceGeometryExtractor(rate=25, expressions=True)
    (features,) = extractor.extract([str(face_clip(tmp_path / "clip.mp4", frames=10, blank=(3,)))])
    columns = extractor.columns()
    assert len(columns) == DIMS + 7 and columns[2 * len(MEASURES) : -1] == EXPRESSION_COLUMNS
    probabilities = features.data[0, :, 2 * len(MEASURES) : -1]
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-4)  # the face-less frame holds its neighbour's
