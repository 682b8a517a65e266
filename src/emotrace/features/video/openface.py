"""OpenFace 2.x FeatureExtraction CSVs, read into the same frame features as the face mesh.

OpenFace (Baltrusaitis et al. 2018) writes one CSV per video, ``processed/<video
name>.csv``: a header, then one row per frame and face, values separated by ``", "``::

    frame, face_id, timestamp, confidence, success, gaze_0_x, ..., gaze_angle_x, gaze_angle_y,
    eye_lmk_x_0, ..., pose_Tx, pose_Ty, pose_Tz, pose_Rx, pose_Ry, pose_Rz, x_0, ..., x_67,
    y_0, ..., y_67, X_0, ..., p_scale, ..., AU01_r, ..., AU45_r, AU01_c, ..., AU28_c, AU45_c

Which groups appear depends on the flags it ran with (``-2Dfp -pose -gaze -aus``; all by
default), and ``face_id`` only in versions and tools that track several faces (2.0.3 on,
``FaceLandmarkVidMulti``). What is read: the 68 2-D landmarks ``x_i, y_i`` (required: the
geometry comes from them, by the same code as for the mesh), and the groups asked for:
``aus`` (17 intensities ``_r`` 0-5, 18 presences ``_c`` 0/1), ``pose`` (``pose_Rx/Ry/Rz``,
radians), ``gaze`` (``gaze_angle_x/y``, radians). A frame counts as showing a face when
``success`` is 1 and ``confidence`` reaches ``min_confidence``; other frames are kept and
marked, as everywhere. With several faces, the ``face_id`` seen in most such frames is the
speaker. Times come from ``timestamp``, or from ``frame`` and ``fps`` when given (OpenFace
assumes 30 fps for image sequences), and are resampled to ``rate`` samples per second.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emotrace.errors import InputError
from emotrace.features.base import Extractor, Features
from emotrace.features.video.geometry import (
    FaceFrames,
    feature_names,
    geometry_features,
)
from emotrace.features.video.reader import DEFAULT_RATE, VideoClip, probe_video

AU_INTENSITIES: tuple[str, ...] = tuple(
    f"AU{n:02d}_r" for n in (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 45)
)
AU_PRESENCES: tuple[str, ...] = tuple(
    f"AU{n:02d}_c" for n in (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 28, 45)
)
GROUPS: dict[str, tuple[str, ...]] = {
    "aus": AU_INTENSITIES + AU_PRESENCES,
    "pose": ("pose_Rx", "pose_Ry", "pose_Rz"),
    "gaze": ("gaze_angle_x", "gaze_angle_y"),
}
#: the FeatureExtraction flag that writes each group
FLAGS = {"aus": "-aus", "pose": "-pose", "gaze": "-gaze", "landmarks": "-2Dfp"}
LANDMARK_COLUMNS: tuple[str, ...] = tuple(f"x_{i}" for i in range(68)) + tuple(f"y_{i}" for i in range(68))
DEFAULT_MIN_CONFIDENCE = 0.8
TIMESTAMP_ROUNDING = 0.0005 + 1e-9  # seconds


def check_groups(groups: Sequence[str]) -> tuple[str, ...]:
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        raise ValueError(f"unknown OpenFace groups {unknown}; choose from {sorted(GROUPS)}")
    return tuple(group for group in GROUPS if group in groups)  # canonical order


def read_openface_csv(
    path: str | Path,
    *,
    groups: Sequence[str] = tuple(GROUPS),
    fps: float | None = None,
    rate: float | None = None,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    start: float | None = None,
    end: float | None = None,
    frame_size: tuple[int, int] = (0, 0),
) -> FaceFrames:
    """One OpenFace CSV as :class:`FaceFrames` (the groups' columns as extra series).

    ``fps`` overrides the timestamps (time = (frame - 1) / fps); ``rate`` is the output rate
    (default ``fps``, else the CSV's own: its frames over their span); ``start``/``end`` keep a
    segment (seconds), whose samples are timed from its start. ``frame_size`` (pixels) is
    only needed for the face position and scale measures, which are 0 without it.
    """
    groups = check_groups(groups)
    header, rows = _read_rows(Path(path))
    wanted = ["frame", "timestamp", "confidence", "success", *LANDMARK_COLUMNS]
    for group in groups:
        wanted += GROUPS[group]
    missing = [name for name in wanted if name not in header]
    if missing:
        flags = sorted(
            {FLAGS[g] for g in groups if set(GROUPS[g]) & set(missing)}
            | ({FLAGS["landmarks"]} if set(LANDMARK_COLUMNS) & set(missing) else set())
        )
        hint = f" (run FeatureExtraction with {' '.join(flags)})" if flags else ""
        raise InputError(
            path,
            f"is not an OpenFace CSV with the columns asked for: missing {', '.join(missing[:4])}"
            f"{' and more' if len(missing) > 4 else ''}{hint}",
        )
    table = _numbers(path, header, rows, [*wanted, *(["face_id"] if "face_id" in header else [])])
    ok = (table["success"] > 0.5) & (table["confidence"] >= min_confidence)
    if "face_id" in table:
        table, ok = _speaker_rows(table, ok)
    times = (table["frame"] - 1) / fps if fps else table["timestamp"]
    order = np.argsort(times, kind="stable")
    table = {name: values[order] for name, values in table.items()}
    times, ok = times[order], ok[order]
    begin = 0.0 if start is None else float(start)
    inside = (times >= begin - 1e-9) & (times < (np.inf if end is None else end))
    if not inside.any():
        raise InputError(path, f"has no frames in the segment {begin:.2f}-{end if end is not None else 'end'} s")
    table = {name: values[inside] for name, values in table.items()}
    times, ok = times[inside] - begin, ok[inside]
    rate = float(rate or fps or _own_rate(times))
    pick = _resampled(times, rate)
    points = np.stack([table[f"x_{i}"] for i in range(68)] + [table[f"y_{i}"] for i in range(68)], 1)
    points = points.reshape(-1, 2, 68).transpose(0, 2, 1)[pick]
    present = ok[pick]
    points[~present] = np.nan
    extra = {name: table[name][pick] for group in groups for name in GROUPS[group]}
    return FaceFrames(points, present, rate, frame_size, extra, source="openface")


def _read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        with open(path, newline="") as handle:
            reader = csv.reader(handle, skipinitialspace=True)
            header = [name.strip() for name in next(reader, [])]
            rows = [row for row in reader if row]
    except FileNotFoundError:
        raise InputError(path, "file not found (no OpenFace CSV for this video)") from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(path, f"cannot be read as a CSV ({error})") from None
    if not rows:
        raise InputError(path, "has no frames (an OpenFace CSV with a header only, or empty)")
    return header, rows


def _numbers(path: str | Path, header: list[str], rows: list[list[str]], names: list[str]) -> dict[str, np.ndarray]:
    positions = [header.index(name) for name in names]
    try:
        values = np.array([[float(row[i]) for i in positions] for row in rows], np.float64)
    except IndexError:
        short = next(n for n, row in enumerate(rows, 2) if len(row) < len(header))
        raise InputError(path, f"line {short} has fewer values than the header names") from None
    except ValueError as error:
        raise InputError(path, f"holds a value that is not a number ({error})") from None
    return {name: values[:, column] for column, name in enumerate(names)}


def _speaker_rows(table: dict[str, np.ndarray], ok: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The rows of the face seen in most good frames (ties: the lowest id)."""
    ids, counts = np.unique(table["face_id"][ok], return_counts=True)
    speaker = ids[np.argmax(counts)] if len(ids) else np.min(table["face_id"])
    rows = table["face_id"] == speaker
    return {name: values[rows] for name, values in table.items()}, ok[rows]


def _own_rate(times: np.ndarray) -> float:
    """Frames over their span: OpenFace rounds timestamps to milliseconds, so single steps mislead."""
    distinct = np.unique(times)
    if len(distinct) < 2:
        return DEFAULT_RATE
    return float((len(distinct) - 1) / (distinct[-1] - distinct[0]))


def _resampled(times: np.ndarray, rate: float) -> np.ndarray:
    """For each sample ``k / rate`` up to one frame past the last, the row on screen then."""
    interval = 1.0 / _own_rate(times) if len(np.unique(times)) > 1 else 1.0 / rate
    count = max(1, int(np.ceil((times[-1] + interval - TIMESTAMP_ROUNDING) * rate)))
    sample_times = np.arange(count) / rate
    # OpenFace writes timestamps to the millisecond: a frame due at 0.16667 s reads 0.167
    return np.clip(np.searchsorted(times, sample_times + TIMESTAMP_ROUNDING, side="right") - 1, 0, len(times) - 1)


class OpenFaceExtractor(Extractor):
    """Frame features from OpenFace CSVs in a folder, ``<folder>/<video stem>.csv`` per clip."""

    name = "openface"
    modality = "video"
    version = 1

    def __init__(
        self,
        folder: str | Path,
        groups: Sequence[str] = tuple(GROUPS),
        fps: float | None = None,
        rate: float = DEFAULT_RATE,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    ):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ValueError(f"{self.folder}: no such folder of OpenFace CSVs")
        self.groups, self.fps, self.rate, self.min_confidence = check_groups(groups), fps, float(rate), min_confidence

    def config(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder.resolve()),
            "groups": list(self.groups),
            "fps": self.fps,
            "rate": self.rate,
            "min_confidence": self.min_confidence,
        }

    def columns(self) -> tuple[str, ...]:
        return feature_names(tuple(name for group in self.groups for name in GROUPS[group]))

    def extract(self, inputs: Sequence[Any]) -> list[Features]:
        from emotrace.features.video.extractor import checked_clips

        return [self._features(clip) for clip in checked_clips(inputs)]

    def _features(self, clip: VideoClip) -> Features:
        info = probe_video(clip.path)
        table = self.folder / f"{Path(clip.path).stem}.csv"
        if not table.is_file():
            raise InputError(clip.path, f"has no OpenFace CSV ({table} not found)")
        try:
            frames = read_openface_csv(
                table,
                groups=self.groups,
                fps=self.fps,
                rate=self.rate,
                min_confidence=self.min_confidence,
                start=clip.start,
                end=clip.end,
                frame_size=(info.width, info.height),
            )
        except InputError as error:  # named by the video, as the batch reports it, and by the CSV
            raise InputError(clip.path, f"OpenFace CSV {error}") from None
        data, _ = geometry_features(frames)
        return Features(data=data[None], frame_rate=self.rate)
