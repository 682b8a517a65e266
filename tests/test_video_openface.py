"""OpenFace 2.x FeatureExtraction CSVs, written here in OpenFace's exact format, read into the
same frame features as the face mesh."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emotrace.corpora import Utterance
from emotrace.errors import InputError
from emotrace.features.pipeline import extract_corpus
from emotrace.features.registry import get_extractor
from emotrace.features.store import FeatureStore
from emotrace.features.video.geometry import MEASURES, FaceFrames, geometry_features
from emotrace.features.video.openface import (
    AU_INTENSITIES,
    AU_PRESENCES,
    GROUPS,
    read_openface_csv,
)
from test_video_reader import face_clip

#: a plausible face: 68 iBUG points (pixels) of the fixture face as the mesh tracked it
FACE_68 = np.array(
    [
        [104, 96],
        [106, 113],
        [109, 129],
        [113, 145],
        [119, 160],
        [128, 173],
        [139, 183],
        [152, 190],
        [166, 192],
        [180, 190],
        [193, 183],
        [204, 173],
        [212, 160],
        [218, 145],
        [222, 129],
        [225, 113],
        [227, 96],
        [115, 83],
        [125, 77],
        [137, 76],
        [148, 78],
        [158, 82],
        [174, 82],
        [184, 78],
        [195, 76],
        [207, 77],
        [217, 83],
        [166, 95],
        [166, 106],
        [166, 117],
        [166, 128],
        [154, 137],
        [160, 139],
        [166, 141],
        [172, 139],
        [178, 137],
        [128, 97],
        [135, 93],
        [143, 93],
        [150, 98],
        [143, 100],
        [135, 100],
        [182, 98],
        [189, 93],
        [197, 93],
        [204, 97],
        [197, 100],
        [189, 100],
        [145, 157],
        [153, 153],
        [161, 151],
        [166, 152],
        [171, 151],
        [179, 153],
        [187, 157],
        [179, 164],
        [172, 167],
        [166, 168],
        [160, 167],
        [153, 164],
        [149, 157],
        [160, 156],
        [166, 157],
        [172, 156],
        [183, 157],
        [172, 160],
        [166, 161],
        [160, 160],
    ],
    dtype=np.float64,
)


def openface_header(face_id: bool = True, groups: tuple[str, ...] = ("gaze", "pose", "landmarks", "aus")) -> list[str]:
    """The columns FeatureExtraction writes, in its order, for the groups it was asked for."""
    names = ["frame", *(["face_id"] if face_id else []), "timestamp", "confidence", "success"]
    if "gaze" in groups:
        names += [f"gaze_{eye}_{axis}" for eye in (0, 1) for axis in "xyz"] + ["gaze_angle_x", "gaze_angle_y"]
        names += [f"eye_lmk_{axis}_{i}" for axis in ("x", "y") for i in range(56)]
        names += [f"eye_lmk_{axis}_{i}" for axis in "XYZ" for i in range(56)]
    if "pose" in groups:
        names += ["pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz"]
    if "landmarks" in groups:
        names += [f"x_{i}" for i in range(68)] + [f"y_{i}" for i in range(68)]
        names += [f"{axis}_{i}" for axis in "XYZ" for i in range(68)]
        names += ["p_scale", "p_rx", "p_ry", "p_rz", "p_tx", "p_ty"] + [f"p_{i}" for i in range(34)]
    if "aus" in groups:
        names += list(AU_INTENSITIES) + list(AU_PRESENCES)
    return names


def write_openface(path: Path, rows: list[dict[str, float]], header: list[str]) -> Path:
    """Rows as OpenFace writes them: ``", "``-separated, unset columns 0."""
    lines = [", ".join(header)]
    for row in rows:
        lines.append(", ".join(_number(row.get(name, 0.0)) for name in header))
    path.write_text("\n".join(lines) + "\n")
    return path


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.6f}"


def frame_row(
    frame: int,
    fps: float = 30.0,
    *,
    face_id: int = 0,
    success: int = 1,
    confidence: float = 0.98,
    mouth: float = 0.0,
    shift: float = 0.0,
    au12: float = 0.0,
) -> dict[str, float]:
    """One frame: the face shifted right by ``shift`` pixels, the lower lip down by ``mouth``."""
    points = FACE_68.copy()
    points[:, 0] += shift
    points[[57, 66], 1] += mouth
    row = {
        "frame": frame,
        "face_id": face_id,
        "timestamp": round((frame - 1) / fps, 3),
        "confidence": confidence,
        "success": success,
        "pose_Rx": 0.1,
        "pose_Ry": -0.2,
        "pose_Rz": 0.05,
        "gaze_angle_x": 0.3,
        "gaze_angle_y": -0.1,
        "AU12_r": au12,
        "AU12_c": float(au12 > 1),
    }
    row.update({f"x_{i}": points[i, 0] for i in range(68)})
    row.update({f"y_{i}": points[i, 1] for i in range(68)})
    return row


def test_a_full_openface_csv_reads_into_the_common_form(tmp_path: Path) -> None:
    rows = [frame_row(n, mouth=n, au12=0.5 * n) for n in range(1, 11)]
    rows[3].update(success=0)  # the tracker failed
    rows[4].update(confidence=0.4)  # and was unsure
    path = write_openface(tmp_path / "clip.csv", rows, openface_header())
    frames = read_openface_csv(path, frame_size=(320, 240))
    assert frames.rate == pytest.approx(30.0)  # from timestamps OpenFace rounds to milliseconds
    assert frames.present.tolist() == [True, True, True, False, False] + [True] * 5
    assert list(frames.extra) == [*GROUPS["aus"], *GROUPS["pose"], *GROUPS["gaze"]]
    np.testing.assert_allclose(frames.extra["AU12_r"], 0.5 * np.arange(1, 11))
    np.testing.assert_allclose(frames.points[0], FACE_68 + _mouth(1))
    data, names = geometry_features(frames)
    assert data.shape == (10, 2 * len(MEASURES) + 35 + 3 + 2 + 1) and names[-1] == "face_present"
    opening = data[:, names.index("mouth_open")]
    assert np.all(np.diff(opening[5:]) > 0) and opening[3] == opening[4] == opening[2]  # held over the bad frames

    # the geometry is the mesh path's: the same points give the same measures
    same = FaceFrames(frames.points, frames.present, frames.rate, (320, 240))
    np.testing.assert_allclose(geometry_features(same)[0][:, : 2 * len(MEASURES)], data[:, : 2 * len(MEASURES)])


def _mouth(pixels: float) -> np.ndarray:
    offset = np.zeros((68, 2))
    offset[[57, 66], 1] = pixels
    return offset


def test_older_files_without_face_id_and_missing_groups(tmp_path: Path) -> None:
    # FeatureExtraction -2Dfp -3Dfp -pdmparams -aus, of a version without face_id
    header = openface_header(face_id=False, groups=("landmarks", "aus"))
    rows = [frame_row(n) for n in range(1, 6)]
    path = write_openface(tmp_path / "old.csv", rows, header)
    frames = read_openface_csv(path, groups=("aus",))
    assert frames.present.all() and list(frames.extra) == list(GROUPS["aus"])
    missing_pose = r"old.csv: .*missing pose_Rx, pose_Ry, pose_Rz.*\(run FeatureExtraction with -pose\)"
    with pytest.raises(InputError, match=missing_pose):
        read_openface_csv(path, groups=("aus", "pose"))
    no_points = write_openface(tmp_path / "aus_only.csv", rows, openface_header(groups=("aus",)))
    with pytest.raises(InputError, match="-2Dfp"):
        read_openface_csv(no_points, groups=("aus",))
    with pytest.raises(ValueError, match="unknown OpenFace groups"):
        read_openface_csv(path, groups=("emotions",))


def test_fps_override_rate_and_segments(tmp_path: Path) -> None:
    rows = [frame_row(n, fps=10.0, shift=n) for n in range(1, 21)]
    for row in rows:
        row["timestamp"] = 0.0  # an image sequence read without its rate
    path = write_openface(tmp_path / "images.csv", rows, openface_header())
    frames = read_openface_csv(path, fps=10.0)
    assert (frames.rate, len(frames.present)) == (10.0, 20)
    np.testing.assert_allclose(frames.points[:, 0, 0], FACE_68[0, 0] + np.arange(1, 21))
    doubled = read_openface_csv(path, fps=10.0, rate=20.0)
    np.testing.assert_allclose(doubled.points[:6, 0, 0], FACE_68[0, 0] + np.array([1, 1, 2, 2, 3, 3]))
    segment = read_openface_csv(path, fps=10.0, start=0.5, end=1.0)
    np.testing.assert_allclose(segment.points[:, 0, 0], FACE_68[0, 0] + np.arange(6, 11))
    with pytest.raises(InputError, match="no frames in the segment 3.00-4.0 s"):
        read_openface_csv(path, fps=10.0, start=3.0, end=4.0)


def test_with_several_faces_the_one_seen_most_is_the_speaker(tmp_path: Path) -> None:
    rows = []
    for n in range(1, 9):
        rows.append(frame_row(n, face_id=0, shift=0, success=int(n < 3)))
        rows.append(frame_row(n, face_id=1, shift=100))
    frames = read_openface_csv(write_openface(tmp_path / "multi.csv", rows, openface_header()))
    assert frames.present.all() and len(frames.present) == 8
    np.testing.assert_allclose(frames.points[:, 0, 0], FACE_68[0, 0] + 100)


def test_bad_csvs_give_one_line_errors(tmp_path: Path) -> None:
    header = openface_header()
    good = [frame_row(n) for n in range(1, 4)]
    text = write_openface(tmp_path / "text.csv", good, header)
    text.write_text(text.read_text().replace("0.98", "high", 1))
    short = tmp_path / "short.csv"
    short.write_text(", ".join(header) + "\n1, 0, 0.0, 0.9\n")
    empty = tmp_path / "empty.csv"
    empty.write_text(", ".join(header) + "\n")
    for path, problem in (
        (text, "not a number"),
        (short, "line 2 has fewer values"),
        (empty, "has no frames"),
        (tmp_path / "missing.csv", "file not found"),
    ):
        with pytest.raises(InputError) as caught:
            read_openface_csv(path)
        assert str(caught.value).startswith(str(path)) and problem in str(caught.value)


def test_openface_extractor_fills_a_store_from_a_folder_of_csvs(tmp_path: Path) -> None:
    video = face_clip(tmp_path / "videos" / "take.mp4", frames=10)
    csvs = tmp_path / "processed"
    csvs.mkdir()
    write_openface(csvs / "take.csv", [frame_row(n, fps=25.0) for n in range(1, 11)], openface_header())
    orphan = face_clip(tmp_path / "videos" / "orphan.mp4", frames=5)
    utterances = [
        Utterance("take", str(video), "happy", "s1", video=str(video)),
        Utterance("orphan", str(orphan), "sad", "s1", video=str(orphan)),
    ]
    extractor = get_extractor(f"openface:{csvs}:rate=25:groups=aus,pose")
    summary = extract_corpus(utterances, [extractor], tmp_path / "store", progress=False)
    assert (summary.stores[0].computed, summary.stores[0].skipped) == (1, 1)
    assert f"orphan ({orphan}): has no OpenFace CSV ({csvs / 'orphan.csv'} not found)" in summary.report.summary()
    store = FeatureStore.at(next((tmp_path / "store").glob("openface-*")))
    features = store.get("take")
    assert features.data.shape == (1, 10, len(extractor.columns())) and features.frame_rate == 25.0
    assert len(extractor.columns()) == 2 * len(MEASURES) + 35 + 3 + 1
    face_x = extractor.columns().index("face_x")
    assert 0 < features.data[0, 0, face_x] < 1  # the frame size came from the video
