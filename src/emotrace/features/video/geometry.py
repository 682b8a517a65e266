"""Expression-bearing face geometry, the same from every landmark source.

Every source (the MediaPipe mesh, an OpenFace CSV) is brought to one form,
:class:`FaceFrames`: 68 points per sample in the iBUG-300W layout (jaw 0-16, brows
17-26, nose 27-35, eyes 36-47, lips 48-67; the subject's right side on the image's left),
a face/no-face mask, and any per-frame values the source has besides (OpenFace's action
units, pose, gaze). :func:`geometry_features` turns it into the feature matrix.

Alignment. Each sample's points are mapped by the similarity transform (rotation, scale,
translation) that takes the two eye centres, each the midpoint of the eye's two corners
(corners do not move when the lids do), to (-0.5, 0) and (0.5, 0): distances are then in
inter-ocular units, whatever the face's size, position or roll. The 2-D measures below are
taken in that canonical frame; the pose that the alignment removed is kept as measures of
its own (roll, yaw and pitch proxies, position, scale).

Measures (``MEASURES``), each per sample: mouth opening (inner lips), mouth width, lip
corner raise (corners above the mid-lip line: smiling), upper-lip raise (nose base to upper
lip), jaw drop (nose base to chin), inner and outer brow raise on each side (brow above its
eye corner), brow furrow (inner brow gap), eye opening on each side (lid distance over eye
width), nose length (bridge to base: shortens in a wrinkle), head roll, yaw and pitch
proxies, face position and scale in the frame. Then their frame deltas (per second, 0 where
a face was missing on either side), then the face mask.

Frames without a face keep their row: their measures hold the nearest frame's values
(before, else after; zero if the clip never shows a face), their deltas are 0 and the
mask column is 0. Under the speaker-adaptive protocol the existing per-speaker
normalisation removes each speaker's mean face, their neutral baseline, from every column.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

#: MediaPipe mesh index of each of the 68 iBUG points (jaw, brows, nose, eyes, lips)
MESH_TO_IBUG68: tuple[int, ...] = (
    162,
    234,
    93,
    58,
    172,
    136,
    149,
    148,
    152,
    377,
    378,
    365,
    397,
    288,
    323,
    454,
    389,
    71,
    63,
    105,
    66,
    107,
    336,
    296,
    334,
    293,
    301,
    168,
    197,
    5,
    4,
    75,
    97,
    2,
    326,
    305,
    33,
    160,
    158,
    133,
    153,
    144,
    362,
    385,
    387,
    263,
    373,
    380,
    61,
    39,
    37,
    0,
    267,
    269,
    291,
    405,
    314,
    17,
    84,
    181,
    78,
    82,
    13,
    312,
    308,
    317,
    14,
    87,
)
MEASURES: tuple[str, ...] = (
    "mouth_open",
    "mouth_width",
    "lip_corner_raise",
    "upper_lip_raise",
    "jaw_drop",
    "brow_inner_raise_right",
    "brow_inner_raise_left",
    "brow_outer_raise_right",
    "brow_outer_raise_left",
    "brow_furrow",
    "eye_open_right",
    "eye_open_left",
    "nose_length",
    "head_roll",
    "head_yaw",
    "head_pitch",
    "face_x",
    "face_y",
    "face_scale",
)
PRESENCE_COLUMN = "face_present"


@dataclass(frozen=True)
class FaceFrames:
    """One clip's faces in the common form.

    ``points (T, 68, 2)`` in frame pixels (NaN where no face), ``present (T,)`` bool, ``rate``
    samples per second, ``frame_size`` ``(width, height)`` in pixels, ``extra`` named
    ``(T,)`` series the source has besides points (in a fixed order), ``source`` its name.
    """

    points: np.ndarray
    present: np.ndarray
    rate: float
    frame_size: tuple[int, int]
    extra: Mapping[str, np.ndarray] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        frames = len(self.present)
        if self.points.shape != (frames, 68, 2):
            raise ValueError(f"points must be ({frames}, 68, 2), got {self.points.shape}")
        for name, series in self.extra.items():
            if series.shape != (frames,):
                raise ValueError(f"extra series {name!r} must be ({frames},), got {series.shape}")


def aligned_points(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(aligned (T, 68, 2), roll (T,) radians, inter-ocular distance (T,) pixels)``.

    Each frame's similarity transform takes its eye centres to (-0.5, 0) and (0.5, 0).
    """
    right = (points[:, 36] + points[:, 39]) / 2  # the subject's right eye, on the image's left
    left = (points[:, 42] + points[:, 45]) / 2
    axis = left - right
    distance = np.hypot(axis[:, 0], axis[:, 1])
    roll = np.arctan2(axis[:, 1], axis[:, 0])
    cos, sin = np.cos(-roll), np.sin(-roll)
    centred = points - ((right + left) / 2)[:, None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        x = (centred[..., 0] * cos[:, None] - centred[..., 1] * sin[:, None]) / distance[:, None]
        y = (centred[..., 0] * sin[:, None] + centred[..., 1] * cos[:, None]) / distance[:, None]
    return np.stack([x, y], -1), roll, distance


def _distance(points: np.ndarray, first: int, second: int) -> np.ndarray:
    return np.hypot(*(points[:, first] - points[:, second]).T)


def measures(frames: FaceFrames) -> np.ndarray:
    """``(T, len(MEASURES))`` per-sample measures (NaN where no face)."""
    p, roll, distance = aligned_points(frames.points.astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):  # a degenerate face gives NaN, marked below
        x, y = p[..., 0], p[..., 1]  # y grows downwards, as on screen
        mid_lip = (y[:, 51] + y[:, 57]) / 2
        eye_open_right = (_distance(p, 37, 41) + _distance(p, 38, 40)) / (2 * _distance(p, 36, 39))
        eye_open_left = (_distance(p, 43, 47) + _distance(p, 44, 46)) / (2 * _distance(p, 42, 45))
        jaw_width = x[:, 16] - x[:, 0]
        eyes_middle = frames.points[:, [36, 39, 42, 45]].mean(1)
        columns = [
            _distance(p, 62, 66),
            _distance(p, 48, 54),
            mid_lip - (y[:, 48] + y[:, 54]) / 2,
            y[:, 51] - y[:, 33],
            y[:, 8] - y[:, 33],
            y[:, 39] - y[:, 21],
            y[:, 42] - y[:, 22],
            y[:, 36] - y[:, 17],
            y[:, 45] - y[:, 26],
            x[:, 22] - x[:, 21],
            eye_open_right,
            eye_open_left,
            _distance(p, 27, 33),
            roll,
            (x[:, 30] - (x[:, 0] + x[:, 16]) / 2) / jaw_width,  # nose tip off the jaw's middle: turning
            y[:, 30],  # nose tip below the eye line: shrinks when the head tilts forward
            *_placement(eyes_middle, distance, frames.frame_size),
        ]
    result = np.stack(columns, 1)
    result[~frames.present] = np.nan
    return result


def _placement(eyes_middle: np.ndarray, distance: np.ndarray, frame_size: tuple[int, int]) -> list[np.ndarray]:
    """Face position (the eyes' middle, in frame widths and heights) and scale (inter-ocular
    distance over the frame diagonal); zeros when the frame size is unknown."""
    width, height = frame_size
    if width <= 0 or height <= 0:
        return [np.zeros_like(distance)] * 3
    return [eyes_middle[:, 0] / width, eyes_middle[:, 1] / height, distance / np.hypot(width, height)]


def hold_nearest(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Rows where ``present`` is False replaced by the nearest present row before them (else
    after); all zeros when no row is present."""
    if not present.any():
        return np.zeros_like(values)
    index = np.where(present, np.arange(len(present)), -1)
    index = np.maximum.accumulate(index)
    index[index < 0] = int(np.argmax(present))
    return values[index]


def geometry_features(frames: FaceFrames, points: bool = False) -> tuple[np.ndarray, tuple[str, ...]]:
    """``(features (T, D) float32, column names)``: measures, their deltas per second, the
    source's extra series, optionally the 68 aligned points, and the face mask last."""
    present = np.asarray(frames.present, bool)
    values = measures(frames)
    values = np.where(np.isfinite(values), values, np.nan)
    present = present & np.isfinite(values).all(1)  # a degenerate face (eyes on one point) counts as none
    held = hold_nearest(np.nan_to_num(values), present)
    deltas = np.zeros_like(held)
    both = present[1:] & present[:-1]
    deltas[1:][both] = (held[1:] - held[:-1])[both] * frames.rate
    blocks = [held, deltas]
    names = [*MEASURES, *(f"d_{name}" for name in MEASURES)]
    if frames.extra:
        extra = np.stack([np.asarray(series, np.float64) for series in frames.extra.values()], 1)
        blocks.append(hold_nearest(np.nan_to_num(extra), present))
        names += list(frames.extra)
    if points:
        aligned = aligned_points(frames.points.astype(np.float64))[0].reshape(len(present), -1)
        blocks.append(hold_nearest(np.nan_to_num(aligned), present))
        names += [f"{axis}_{i}" for i in range(68) for axis in ("x", "y")]
    blocks.append(present[:, None].astype(np.float64))
    names.append(PRESENCE_COLUMN)
    return np.concatenate(blocks, 1).astype(np.float32), tuple(names)


def face_found(data: np.ndarray) -> np.ndarray:
    """Whether each sample of :func:`geometry_features`' output ``(..., T, D)`` shows a face:
    its face mask, the last column."""
    return data[..., -1] > 0.5


def feature_names(extra: tuple[str, ...] = (), points: bool = False) -> tuple[str, ...]:
    """The column names :func:`geometry_features` gives for these extra series and options."""
    names = [*MEASURES, *(f"d_{name}" for name in MEASURES), *extra]
    if points:
        names += [f"{axis}_{i}" for i in range(68) for axis in ("x", "y")]
    return (*names, PRESENCE_COLUMN)
