"""The two face models: MediaPipe's BlazeFace short-range detector and its 468-point mesh.

Both ship with emotrace as the ``.tflite`` files of the ``mediapipe==0.10.21`` wheel
(Apache-2.0, ``models/LICENSE``; 230 kB and 1.2 MB) and run on ``ai-edge-litert``, the
TensorFlow Lite runtime: no model is downloaded, newer mediapipe releases (which ship no
models and pin old numpy/protobuf in the release that does) are not needed, and the
pre- and post-processing below is MediaPipe's own, written out (its graph files
``face_detection_short_range.pbtxt`` and ``face_landmark_front_cpu.pbtxt``):

- detector: the frame letterboxed to 128x128, values in [-1, 1]; 896 SSD anchors (strides
  8, 16, 16, 16; fixed size); boxes and six keypoints (eyes, nose tip, mouth, ears)
  decoded at scale 128; sigmoid scores over 0.5; weighted non-maximum suppression at IoU 0.3.
- region of interest: a square 1.5 times the face, rotated so the eyes lie level (from the
  detector's eye keypoints, or from the mesh's eye corners 33 and 263 on the next frame).
- mesh: that square warped to 192x192, values in [0, 1]; 468 points (x, y in the crop's
  pixels, z at the same scale) and a face-presence logit.

One departure, for speed: the crop is sampled nearest-neighbour (bilinear sampling in
Pillow costs more than the mesh itself), from a frame first shrunk by FFmpeg's area filter
so the square is at most 1.25 times the crop size: nearest-neighbour sampling then
neither aliases nor blurs much.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image

from emotrace.errors import EmotraceError

MODELS_DIR = Path(__file__).parent / "models"
DETECTOR_FILE = "face_detection_short_range.tflite"
MESH_FILE = "face_landmark.tflite"
#: sha256 of the shipped files, checked on first load
CHECKSUMS = {
    DETECTOR_FILE: "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
    MESH_FILE: "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
}
DETECTOR_SIZE = 128
MESH_SIZE = 192
MESH_POINTS = 468
ROI_SCALE = 1.5  # the region of interest is this many times the face
MAX_CROP_RATIO = 1.25  # shrink frames so a region is at most this many crop sizes wide
_SHRINK_STEPS = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
RIGHT_EYE_CORNER, LEFT_EYE_CORNER = 33, 263  # mesh points that set a region's rotation


class VideoModelError(EmotraceError):
    """The face models cannot run: runtime missing, or a shipped file damaged."""


@cache
def model_path(name: str) -> Path:
    """A shipped model file, once its checksum is verified."""
    path = MODELS_DIR / name
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        raise VideoModelError(f"{path}: the face model is missing from this installation; reinstall emotrace") from None
    if digest != CHECKSUMS[name]:
        raise VideoModelError(f"{path}: checksum {digest[:12]}... is not the shipped model's; reinstall emotrace")
    return path


def interpreter(name: str, threads: int = 1) -> Any:
    """A TensorFlow Lite interpreter of a shipped model, tensors allocated."""
    return interpreter_at(model_path(name), threads)


def interpreter_at(path: Path, threads: int = 1) -> Any:
    """A TensorFlow Lite interpreter of the model file ``path``, tensors allocated."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise VideoModelError(
            "the video features need the TensorFlow Lite runtime: pip install 'emotrace[video]'"
        ) from None
    runner = Interpreter(model_path=str(path), num_threads=threads)
    runner.allocate_tensors()
    return runner


@dataclass(frozen=True)
class Roi:
    """A square region of a frame in pixels: centre, side, and rotation in radians
    (clockwise on screen, so that the face in it stands upright)."""

    cx: float
    cy: float
    size: float
    angle: float

    def rotation(self) -> np.ndarray:
        cos, sin = math.cos(self.angle), math.sin(self.angle)
        return np.array([[cos, -sin], [sin, cos]])

    def to_frame(self, points: np.ndarray) -> np.ndarray:
        """Points ``(N, 2)`` in the region's unit square (0..1) as frame pixels."""
        return (points - 0.5) * self.size @ self.rotation().T + (self.cx, self.cy)

    def pil_affine(self, crop: int, shrink_x: float = 1.0, shrink_y: float = 1.0) -> tuple[float, ...]:
        """Pillow's affine coefficients taking crop pixels to pixels of the frame shrunk by
        ``shrink_x`` and ``shrink_y``."""
        shrink = np.array([[shrink_x], [shrink_y]])
        matrix = self.rotation() * self.size / crop / shrink
        offset = (np.array([self.cx, self.cy]) - self.rotation() @ np.array([self.size, self.size]) / 2) / shrink[:, 0]
        return (matrix[0, 0], matrix[0, 1], offset[0], matrix[1, 0], matrix[1, 1], offset[1])


def roi_around(points: np.ndarray, right_eye: np.ndarray, left_eye: np.ndarray) -> Roi:
    """MediaPipe's region for points: their box, rotated so the eyes are level, squared to its
    longer side, scaled by :data:`ROI_SCALE`. The box is taken in the upright frame, so its
    size does not grow with the head's tilt."""
    angle = _normalised(-math.atan2(-(left_eye[1] - right_eye[1]), left_eye[0] - right_eye[0]))
    cos, sin = math.cos(angle), math.sin(angle)
    upright_x = points[:, 0] * cos + points[:, 1] * sin  # the rotation's inverse, applied to each point
    upright_y = points[:, 1] * cos - points[:, 0] * sin
    left, right, top, bottom = upright_x.min(), upright_x.max(), upright_y.min(), upright_y.max()
    middle_x, middle_y = (left + right) / 2, (top + bottom) / 2
    return Roi(
        float(middle_x * cos - middle_y * sin),
        float(middle_x * sin + middle_y * cos),
        float(max(right - left, bottom - top) * ROI_SCALE),
        angle,
    )


def _normalised(angle: float) -> float:
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


@dataclass(frozen=True)
class Detection:
    """A face found by the detector: box ``(x0, y0, x1, y1)`` and keypoints ``(6, 2)`` in pixels."""

    box: np.ndarray
    keypoints: np.ndarray
    score: float

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))

    def roi(self) -> Roi:
        """The mesh's region for this face (MediaPipe's detection-to-region rule)."""
        right_eye, left_eye = self.keypoints[0], self.keypoints[1]
        angle = _normalised(-math.atan2(-(left_eye[1] - right_eye[1]), left_eye[0] - right_eye[0]))
        cx, cy = (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2
        size = max(self.box[2] - self.box[0], self.box[3] - self.box[1]) * ROI_SCALE
        return Roi(float(cx), float(cy), float(size), angle)


def box_iou(first: np.ndarray, second: np.ndarray) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes."""
    width = min(first[2], second[2]) - max(first[0], second[0])
    height = min(first[3], second[3]) - max(first[1], second[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (first[2] - first[0]) * (first[3] - first[1]) + (second[2] - second[0]) * (second[3] - second[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _anchors() -> np.ndarray:
    """The detector's 896 anchor centres ``(x, y)`` in 0..1 (MediaPipe's SsdAnchorsCalculator:
    4 layers, strides 8, 16, 16, 16, two anchors per layer and cell, fixed size)."""
    centres = []
    for stride, per_cell in ((8, 2), (16, 6)):
        cells = DETECTOR_SIZE // stride
        y, x = np.mgrid[0:cells, 0:cells]
        grid = np.stack([(x + 0.5) / cells, (y + 0.5) / cells], -1).reshape(-1, 1, 2)
        centres.append(np.repeat(grid, per_cell, axis=1).reshape(-1, 2))
    return np.concatenate(centres).astype(np.float32)


class FaceDetector:
    """BlazeFace short range: faces within about 2 m of the camera, as in corpora of actors."""

    def __init__(self, min_score: float = 0.5, nms_iou: float = 0.3, threads: int = 1):
        self.min_score, self.nms_iou = min_score, nms_iou
        self._runner = interpreter(DETECTOR_FILE, threads)
        self._input = self._runner.get_input_details()[0]["index"]
        outputs = {detail["name"]: detail["index"] for detail in self._runner.get_output_details()}
        self._boxes, self._scores = outputs["regressors"], outputs["classificators"]
        self._anchors = _anchors()
        self._tensor = np.zeros((1, DETECTOR_SIZE, DETECTOR_SIZE, 3), np.float32)
        self._reformatter = VideoReformatter()  # keeps its scaler between frames

    def detect(self, frame: av.VideoFrame) -> list[Detection]:
        """Faces in ``frame``, best first."""
        scale = DETECTOR_SIZE / max(frame.width, frame.height)
        width, height = max(1, round(frame.width * scale)), max(1, round(frame.height * scale))
        pixels = self._reformatter.reformat(
            frame, width=width, height=height, format="rgb24", interpolation="AREA"
        ).to_ndarray()
        pad_x, pad_y = (DETECTOR_SIZE - width) // 2, (DETECTOR_SIZE - height) // 2
        self._tensor.fill(-1.0)
        self._tensor[0, pad_y : pad_y + height, pad_x : pad_x + width] = pixels * np.float32(2 / 255) - 1
        self._runner.set_tensor(self._input, self._tensor)
        self._runner.invoke()
        raw = self._runner.get_tensor(self._boxes)[0]
        logits = np.clip(self._runner.get_tensor(self._scores)[0, :, 0].astype(np.float64), -100, 100)
        scores = 1 / (1 + np.exp(-logits))
        keep = scores >= self.min_score
        if not keep.any():
            return []
        raw, scores, anchors = raw[keep] / DETECTOR_SIZE, scores[keep], self._anchors[keep]
        centres = raw[:, :2] + anchors
        half = raw[:, 2:4] / 2
        boxes = np.concatenate([centres - half, centres + half], 1)
        keypoints = raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :]
        # from the letterboxed unit square to frame pixels
        unit = np.array([pad_x, pad_y], np.float32) / DETECTOR_SIZE
        boxes = (boxes - np.tile(unit, 2)) * DETECTOR_SIZE / scale
        keypoints = (keypoints - unit) * DETECTOR_SIZE / scale
        return self._weighted_nms(boxes, keypoints, scores)

    def _weighted_nms(self, boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray) -> list[Detection]:
        """MediaPipe's WEIGHTED suppression: each kept face is the score-weighted mean of the
        candidates that overlap it."""
        order = list(np.argsort(-scores))
        faces = []
        while order:
            best = order[0]
            overlapping = [i for i in order if box_iou(boxes[best], boxes[i]) > self.nms_iou]
            weights = scores[overlapping] / scores[overlapping].sum()
            faces.append(
                Detection(
                    box=(boxes[overlapping] * weights[:, None]).sum(0),
                    keypoints=(keypoints[overlapping] * weights[:, None, None]).sum(0),
                    score=float(scores[best]),
                )
            )
            order = [i for i in order if i not in overlapping]
        return faces


class FaceMesh:
    """The 468-point face mesh inside a region of interest."""

    def __init__(self, threads: int = 1):
        self._runner = interpreter(MESH_FILE, threads)
        self._input = self._runner.get_input_details()[0]["index"]
        outputs = {detail["name"]: detail["index"] for detail in self._runner.get_output_details()}
        self._points, self._presence = outputs["conv2d_21"], outputs["conv2d_31"]
        self._reformatter = VideoReformatter()

    def landmarks(self, frame: av.VideoFrame, roi: Roi) -> tuple[np.ndarray, float]:
        """``(points (468, 3) in frame pixels, face presence 0..1)``; z is depth at the pixel scale."""
        needed = roi.size / (MESH_SIZE * MAX_CROP_RATIO)
        shrink = max((step for step in _SHRINK_STEPS if step <= needed), default=1.0)
        width, height = frame.width, frame.height
        if shrink > 1.0:
            width, height = round(frame.width / shrink), round(frame.height / shrink)
        # RGBA, because Pillow keeps RGB images as 4 bytes a pixel too: the frame is then read in
        # place rather than repacked
        rgba = self._reformatter.reformat(frame, width=width, height=height, format="rgba", interpolation="AREA")
        plane = rgba.planes[0]
        image = Image.frombuffer("RGBA", (rgba.width, rgba.height), plane, "raw", "RGBA", plane.line_size, 1)
        affine = roi.pil_affine(MESH_SIZE, frame.width / rgba.width, frame.height / rgba.height)
        crop = image.transform(
            (MESH_SIZE, MESH_SIZE), Image.Transform.AFFINE, affine, resample=Image.Resampling.NEAREST
        )
        tensor = np.multiply(np.asarray(crop)[..., :3], np.float32(1 / 255), dtype=np.float32)[None]
        self._runner.set_tensor(self._input, tensor)
        self._runner.invoke()
        raw = self._runner.get_tensor(self._points).reshape(MESH_POINTS, 3) / MESH_SIZE
        presence = float(1 / (1 + math.exp(-float(np.clip(self._runner.get_tensor(self._presence).item(), -100, 100)))))
        points = np.empty((MESH_POINTS, 3), np.float32)
        points[:, :2] = roi.to_frame(raw[:, :2])
        points[:, 2] = raw[:, 2] * roi.size
        return points, presence
