"""Following the speaker's face through a clip: detect once, then track with the mesh.

The detector runs only when no face is being tracked (the first frame, and after the face
was lost); while it is, each frame's region comes from the previous frame's mesh, as in
MediaPipe's own video mode. Detection costs as much as the mesh, so a clip where the face
never leaves costs one mesh per frame.

Which face is the speaker's: when tracking starts, the largest face (or the one nearest
the frame's centre, ``select="central"``); when it resumes after the face was lost, the
detection that overlaps the face's last box by at least ``match_iou`` (intersection over
union), so a second person entering the shot does not take over; only when none overlaps
does the selection rule choose again. Frames where the mesh's face-presence score falls
under ``min_presence``, or the detector finds nothing, are marked as having no face.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import av
import numpy as np

from emotrace.features.video.face_models import (
    LEFT_EYE_CORNER,
    MESH_POINTS,
    RIGHT_EYE_CORNER,
    Detection,
    FaceDetector,
    FaceMesh,
    Roi,
    box_iou,
    roi_around,
)
from emotrace.features.video.reader import TimedFrame

Selection = Literal["largest", "central"]
SELECTIONS: tuple[str, ...] = ("largest", "central")


@dataclass(frozen=True)
class FaceTrack:
    """The tracked face over a clip's samples.

    ``points (T, 468, 3)`` mesh points in frame pixels (NaN where no face), ``present (T,)``,
    ``presence (T,)`` the mesh's face score (0 where no face), ``frame_size`` ``(width,
    height)``, ``rate`` samples per second, ``detections`` how often the detector ran,
    ``observed (T, K)`` what an ``observe`` callback returned for each face (zeros where none).
    """

    points: np.ndarray
    present: np.ndarray
    presence: np.ndarray
    frame_size: tuple[int, int]
    rate: float
    detections: int
    observed: np.ndarray | None = None


#: called with a frame and its face's mesh points; returns a fixed-length vector
Observer = Callable[[av.VideoFrame, np.ndarray], np.ndarray]


class FaceTracker:
    """Detector plus mesh over a stream of frames; one per thread (the models keep state)."""

    def __init__(
        self,
        detector: FaceDetector | None = None,
        mesh: FaceMesh | None = None,
        *,
        select: Selection = "largest",
        min_presence: float = 0.5,
        match_iou: float = 0.3,
    ):
        if select not in SELECTIONS:
            raise ValueError(f"select must be one of {SELECTIONS}, got {select!r}")
        self.detector = detector or FaceDetector()
        self.mesh = mesh or FaceMesh()
        self.select, self.min_presence, self.match_iou = select, min_presence, match_iou

    def track(
        self, samples: Iterable[tuple[int, TimedFrame]], rate: float, observe: Observer | None = None
    ) -> FaceTrack:
        """The face in each sample ``(k, frame)`` of :func:`~emotrace.features.video.reader.frames_at_rate`;
        ``observe`` reads more from each frame with a face (e.g. expression probabilities)."""
        points: list[np.ndarray] = []
        presence: list[float] = []
        observed: list[np.ndarray | None] = []
        roi: Roi | None = None  # where to look on the next frame (None: detect)
        last_box: np.ndarray | None = None  # the face's box when last seen
        last_index, last_result, last_observed = -1, (None, 0.0), None
        detections, frame_size = 0, (0, 0)
        for _, sample in samples:
            frame_size = (sample.frame.width, sample.frame.height)
            if sample.index != last_index:  # a repeated frame keeps its result
                last_index = sample.index
                found, score = None, 0.0
                if roi is not None:
                    found, score = self._mesh(sample, roi)
                if found is None:  # not tracking, or the track was lost on this very frame
                    detections += 1
                    chosen = self._choose(self.detector.detect(sample.frame), last_box, frame_size)
                    if chosen is not None:
                        found, score = self._mesh(sample, chosen.roi())
                if found is None:
                    roi = None
                else:
                    roi = roi_around(found[:, :2], found[RIGHT_EYE_CORNER, :2], found[LEFT_EYE_CORNER, :2])
                    last_box = np.concatenate([found[:, :2].min(0), found[:, :2].max(0)])
                last_result = (found, score)
                last_observed = observe(sample.frame, found) if observe and found is not None else None
            found, score = last_result
            points.append(found if found is not None else np.full((MESH_POINTS, 3), np.nan, np.float32))
            presence.append(score if found is not None else 0.0)
            observed.append(last_observed)
        stacked = np.stack(points) if points else np.zeros((0, MESH_POINTS, 3), np.float32)
        present = ~np.isnan(stacked[:, 0, 0])
        return FaceTrack(
            stacked,
            present,
            np.asarray(presence, np.float32),
            frame_size,
            rate,
            detections,
            _stacked_observations(observed) if observe else None,
        )

    def _mesh(self, sample: TimedFrame, roi: Roi) -> tuple[np.ndarray | None, float]:
        found, score = self.mesh.landmarks(sample.frame, roi)
        return (found, score) if score >= self.min_presence else (None, score)

    def _choose(
        self, faces: list[Detection], last_box: np.ndarray | None, frame_size: tuple[int, int]
    ) -> Detection | None:
        """The speaker's face among ``faces``: the one overlapping its last box, else by the rule."""
        if not faces:
            return None
        if last_box is not None:
            overlaps = [box_iou(face.box, last_box) for face in faces]
            best = int(np.argmax(overlaps))
            if overlaps[best] >= self.match_iou:
                return faces[best]
        if self.select == "largest":
            return max(faces, key=lambda face: face.area)
        centre = np.array(frame_size, np.float64) / 2
        return min(faces, key=lambda face: float(np.hypot(*((face.box[:2] + face.box[2:]) / 2 - centre))))


def _stacked_observations(observed: list[np.ndarray | None]) -> np.ndarray:
    """``(T, K)`` with zeros where nothing was observed (K 0 when nothing ever was)."""
    width = next((len(values) for values in observed if values is not None), 0)
    zeros = np.zeros(width, np.float32)
    return (
        np.stack([zeros if values is None else np.asarray(values, np.float32) for values in observed])
        if observed
        else np.zeros((0, width), np.float32)
    )
