"""The ``face`` extractor: a clip's face geometry per frame, into the feature store.

Decode (PyAV) -> samples at a fixed rate -> detect and track the speaker's face (BlazeFace,
face mesh) -> 68 points -> aligned geometry, deltas and the face mask (see
:mod:`emotrace.features.video.geometry`), optionally with expression probabilities.
Clips of a batch run on ``workers`` threads, each with its own models: the TensorFlow
Lite runtime and FFmpeg both release the GIL while they compute.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from emotrace.errors import InputError
from emotrace.features.base import Extractor, Features
from emotrace.features.video.face_models import CHECKSUMS
from emotrace.features.video.geometry import (
    MESH_TO_IBUG68,
    FaceFrames,
    feature_names,
    geometry_features,
)
from emotrace.features.video.reader import (
    DEFAULT_RATE,
    VideoClip,
    frames_at_rate,
    read_frames,
)
from emotrace.features.video.tracking import (
    SELECTIONS,
    FaceTrack,
    FaceTracker,
    Selection,
)


def checked_clips(inputs: Sequence[Any]) -> list[VideoClip]:
    """The inputs as :class:`VideoClip` (paths are taken as whole clips); an InputError names
    the first that is neither."""
    clips = []
    for position, item in enumerate(inputs):
        if isinstance(item, VideoClip):
            clips.append(item)
        elif isinstance(item, str):
            clips.append(VideoClip(item))
        else:
            raise InputError(f"input {position}", f"expected a video clip or path, got {type(item).__name__}")
    return clips


class FaceGeometryExtractor(Extractor):
    """Face geometry at ``rate`` samples per second from any video file."""

    name = "face"
    modality = "video"
    version = 1

    def __init__(
        self,
        rate: float = DEFAULT_RATE,
        select: Selection = "largest",
        points: bool = False,
        expressions: bool = False,
        workers: int = 1,
        min_presence: float = 0.5,
    ):
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        if select not in SELECTIONS:
            raise ValueError(f"select must be one of {SELECTIONS}, got {select!r}")
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.rate, self.select, self.points = float(rate), select, points
        self.expressions, self.workers, self.min_presence = expressions, workers, min_presence
        self._local = threading.local()
        if expressions:
            from emotrace.features.video.expressions import expression_model_path

            expression_model_path()  # fail now, not in the middle of a corpus

    def config(self) -> dict[str, Any]:
        return {
            "models": {name: digest[:16] for name, digest in CHECKSUMS.items()},
            "rate": self.rate,
            "select": self.select,
            "points": self.points,
            "expressions": self.expressions,
            "min_presence": self.min_presence,
        }

    def columns(self) -> tuple[str, ...]:
        """The name of each feature column, in order."""
        extra: tuple[str, ...] = ()
        if self.expressions:
            from emotrace.features.video.expressions import EXPRESSION_COLUMNS

            extra = EXPRESSION_COLUMNS
        return feature_names(extra, self.points)

    def extract(self, inputs: Sequence[Any]) -> list[Features]:
        clips = checked_clips(inputs)
        if self.workers == 1 or len(clips) == 1:
            return [self._features(clip) for clip in clips]
        with ThreadPoolExecutor(min(self.workers, len(clips))) as pool:
            return list(pool.map(self._features, clips))

    def track(self, clip: VideoClip | str) -> FaceTrack:
        """The tracked face mesh of one clip (for plots and checks)."""
        (clip,) = checked_clips([clip])
        return self._tracker().track(frames_at_rate(read_frames(clip), self.rate), self.rate)

    def face_frames(self, clip: VideoClip | str) -> FaceFrames:
        """One clip's faces in the common form (the expression probabilities as extra series)."""
        (clip,) = checked_clips([clip])
        observe = self._expression_model().probabilities if self.expressions else None
        track = self._tracker().track(frames_at_rate(read_frames(clip), self.rate), self.rate, observe)
        extra = {}
        if self.expressions:
            from emotrace.features.video.expressions import EXPRESSION_COLUMNS

            observed = track.observed if track.observed.shape[1] else np.zeros((len(track.present), 7), np.float32)
            extra = dict(zip(EXPRESSION_COLUMNS, observed.T))
        return FaceFrames(
            points=track.points[:, list(MESH_TO_IBUG68), :2],
            present=track.present,
            rate=track.rate,
            frame_size=track.frame_size,
            extra=extra,
            source="mediapipe-face-mesh",
        )

    def _features(self, clip: VideoClip) -> Features:
        data, _ = geometry_features(self.face_frames(clip), points=self.points)
        return Features(data=data[None], frame_rate=self.rate)

    def _tracker(self) -> FaceTracker:
        tracker = getattr(self._local, "tracker", None)
        if tracker is None:
            tracker = FaceTracker(select=self.select, min_presence=self.min_presence)
            self._local.tracker = tracker
        return tracker

    def _expression_model(self) -> Any:
        model = getattr(self._local, "expressions", None)
        if model is None:
            from emotrace.features.video.expressions import ExpressionModel

            model = self._local.expressions = ExpressionModel()
        return model
