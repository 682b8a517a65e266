"""ONNX export: every registered model's graph computes what PyTorch computes, at any
batch size and length, and says what it needs."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime
import pytest
import torch

from emotrace.checkpoint import Checkpoint, load_checkpoint
from emotrace.features.transforms import InputSpec
from emotrace.inference import export
from emotrace.inference.export import ExportError, export_onnx
from emotrace.models import MODELS, ROIOutput
from test_models import CASES, make_model

pytestmark = pytest.mark.usefixtures("torch_single_thread")

LABELS = ("neutral", "happy", "sad", "angry")


def save_checkpoint(case: str, directory) -> str:
    model = make_model(case).eval()
    inputs = {m: InputSpec("logmel" if m == "audio" else "minilm") for m in model.config.modalities}
    return Checkpoint(model, LABELS, inputs, "utterance-level").save(directory)


def random_inputs(config, batch: int, frames: int) -> dict[str, np.ndarray]:
    """Features and unequal lengths (at least 16: the spectrogram CNN's minimum)."""
    rng = np.random.default_rng(7)
    inputs = {}
    for index, modality in enumerate(config.modalities):
        length = frames + 3 * index
        layers, width = config.layers_in(modality), config.input_dims[modality]
        shape = (batch, layers, length, width) if layers > 1 else (batch, length, width)
        inputs[modality] = rng.standard_normal(shape).astype(np.float32)
        inputs[f"{modality}_lengths"] = rng.integers(16, length + 1, batch).astype(np.int64)
        inputs[f"{modality}_lengths"][-1] = length
    return inputs


def test_every_registered_model_is_exported():
    assert {name for name, _ in CASES.values()} == set(MODELS)


@pytest.mark.parametrize("case", CASES)
def test_export_matches_pytorch(case, tmp_path):
    checkpoint_dir = save_checkpoint(case, tmp_path / "checkpoint")
    report = export_onnx(checkpoint_dir, tmp_path / "onnx" / "model.onnx")
    assert report.path == tmp_path / "onnx" / "model.onnx"
    assert report.max_differences["probabilities"] <= 1e-4

    # Compare again on a batch size and lengths the export never saw.
    checkpoint = load_checkpoint(checkpoint_dir)
    inputs = random_inputs(checkpoint.model.config, batch=5, frames=29)
    session = onnxruntime.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, inputs)))
    with torch.no_grad():
        expected = checkpoint.model(**{name: torch.from_numpy(value) for name, value in inputs.items()})
    compared = ["logits", "probabilities"]
    if isinstance(expected, ROIOutput):
        compared += ["attention", "frame_posteriors", "mixture"]
    for name in compared:
        want = getattr(expected, name).numpy()
        np.testing.assert_allclose(outputs[name], want, atol=1e-5, err_msg=name)

    metadata = json.loads(report.metadata_path.read_text())
    assert report.metadata_path == tmp_path / "onnx" / "model.json"
    assert metadata["labels"] == list(LABELS)
    assert metadata["inputs"] == json.loads((checkpoint_dir / "config.json").read_text())["inputs"]
    assert [i["name"] for i in metadata["graph_inputs"]] == [i.name for i in session.get_inputs()]
    assert [o["name"] for o in metadata["graph_outputs"]] == list(outputs)
    assert all(o["shape"][0] == "batch" for o in metadata["graph_outputs"])


class FloorDivisions(torch.nn.Module):
    """Floor divisions whose quotients are negative: a ceiling of the traced length (as
    the authors' CNN counts its windows), integers by positive and negative divisors, floats."""

    def forward(self, values, counts):
        windows = -(-values.shape[1] // 16)
        return torch.arange(windows), counts // 3, counts // -4, values // 0.5


def test_floor_division_rounds_down_as_in_pytorch(tmp_path):
    module, path = FloorDivisions(), tmp_path / "divisions.onnx"
    counts = torch.tensor([-7, -6, -1, 0, 5, 7])
    with export._exporter_fixes(export.MIN_OPSET):
        torch.onnx.export(
            module,
            (torch.randn(2, 24), counts),
            str(path),
            input_names=["values", "counts"],
            dynamic_axes={"values": {0: "batch", 1: "frames"}},
            opset_version=export.MIN_OPSET,
            dynamo=False,
        )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    values = torch.randn(3, 41, generator=torch.Generator().manual_seed(0))
    outputs = session.run(None, {"values": values.numpy(), "counts": counts.numpy()})
    for got, want in zip(outputs, module(values, counts), strict=True):
        np.testing.assert_array_equal(got, want.numpy())


def test_roi_outputs_have_time_axes(tmp_path):
    report = export_onnx(save_checkpoint("roi-audio", tmp_path / "checkpoint"), tmp_path / "roi.onnx")
    metadata = json.loads(report.metadata_path.read_text())
    shapes = {output["name"]: output["shape"] for output in metadata["graph_outputs"]}
    assert shapes["attention"] == ["batch", "audio_frames"]
    assert shapes["frame_posteriors"] == ["batch", "audio_frames", len(LABELS)]
    outputs = ["logits", "probabilities", "attention", "frame_posteriors", "mixture"]
    assert list(report.max_differences) == outputs


def test_failed_check_leaves_nothing_behind(tmp_path, monkeypatch):
    checkpoint_dir = save_checkpoint("lstm-audio-last", tmp_path / "checkpoint")
    monkeypatch.setattr(export, "TOLERANCE", -1.0)
    with pytest.raises(ExportError, match="differs from PyTorch"):
        export_onnx(checkpoint_dir, tmp_path / "out" / "model.onnx")
    assert list((tmp_path / "out").iterdir()) == []


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere: not a checkpoint"):
        export_onnx(tmp_path / "nowhere", tmp_path / "model.onnx")


def test_opset_below_layer_normalization_is_refused(tmp_path):
    with pytest.raises(ValueError, match="opset must be at least 17"):
        export_onnx(tmp_path, tmp_path / "model.onnx", opset=13)
