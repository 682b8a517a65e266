"""A checkpoint's classifier as an ONNX graph, checked against PyTorch before it is kept.

The graph starts where the checkpoint's model starts: at the features of the frozen
encoders (Whisper frames, text token states, ...), which a deployment computes as it
already does. Its inputs are, for each modality in ``model.config.modalities`` order, the
features ``(B, L, T, D)`` (``(B, T, D)`` when one layer) and their lengths ``(B,)`` int64;
its outputs are the utterance ``logits`` and ``probabilities`` (calibrated: softmax of the
logits over the checkpoint's ``temperature``) and every other tensor the model returns (a
dict field becomes one output per key), except fields that only repeat the inputs. Batch
and time axes are dynamic. A JSON file beside the graph says what to feed it and what
comes out.

PyTorch's ONNX exporters each fall short here. The dynamo exporter needs onnxscript,
which emotrace does not depend on, so this uses the TorchScript one, where three things go
wrong and are fixed for the export only, without touching the models:

- ``nn.MultiheadAttention`` is traced with the example's batch size and length as
  constants (pytorch/pytorch#122321); each one is swapped for
  :class:`_TraceableAttention`, the same computation with dynamic reshapes.
- ``F.layer_norm(x, x.shape[-1:])`` (how :class:`~emotrace.models.layers.LayerWeightedSum`
  normalises each layer) is rejected because its shape is traced rather than constant;
  :func:`_layer_norm` exports any layer norm as ONNX LayerNormalization instead.
- ``//`` (``aten::floor_divide``) is exported as division rounded toward zero, as PyTorch
  divided before 1.13 (pytorch/pytorch#78442), so a ceiling written ``-(-length // frames)``
  (how :class:`~emotrace.models.contrastive.FlatSpectrogramCNN` counts its windows) came
  out one short; :func:`_floor_divide` rounds down, as PyTorch does.

Whatever the tracer got wrong, the check runs the graph in onnxruntime on inputs of
other batch sizes and lengths than the trace saw, with unequal lengths in each batch,
and compares every output with the PyTorch model's.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.onnx import symbolic_helper

from emotrace.atomic import atomic_path, write_json_atomically
from emotrace.checkpoint import Checkpoint, load_checkpoint
from emotrace.errors import EmotraceError
from emotrace.models.base import EmotionModel, ModelConfig
from emotrace.models.outputs import ModelOutput
from emotrace.models.registry import model_config_to_dict

MIN_OPSET = 17  # LayerNormalization
TOLERANCE = 1e-4  # largest difference from PyTorch allowed, relative to the output's scale
# Output fields that only repeat what the caller passed in.
_ECHOED_FIELDS = ("lengths", "modalities_used")
# (batch, frames of the first modality) of the trace and of the two checks: all differ, so
# a size the tracer froze shows up as an error or a difference.
_TRACE_SIZES = (2, 24)
_CHECK_SIZES = ((3, 41), (1, 17))

# A shape names its dynamic axes and gives the size of the others: ["batch", 4].
Shape = list[int | str]


class ExportError(EmotraceError):
    """The exported graph does not compute what the PyTorch model computes."""


@dataclass(frozen=True)
class ExportReport:
    """Where the graph and its description went, and how far the graph's outputs were
    from PyTorch's on the check inputs (largest absolute difference per output; empty
    when the check was skipped)."""

    path: Path
    metadata_path: Path
    max_differences: dict[str, float]


def export_onnx(
    checkpoint_dir: str | Path, output_path: str | Path, *, opset: int = MIN_OPSET, check: bool = True
) -> ExportReport:
    """Export the model of the checkpoint in ``checkpoint_dir`` to ``output_path`` (ONNX),
    with its description in ``output_path`` with suffix ``.json``.

    With ``check`` the graph is compared with the PyTorch model in onnxruntime before it
    is moved into place; :class:`ExportError` if they differ by more than
    :data:`TOLERANCE`, and then nothing is written.
    """
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be at least {MIN_OPSET} (for LayerNormalization), got {opset}")
    checkpoint = load_checkpoint(checkpoint_dir)
    model = checkpoint.model
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    example = _random_inputs(model.config, *_TRACE_SIZES, seed=0)
    input_shapes, output_shapes = _input_shapes(model.config), _output_shapes(model)
    # the original stays the check's reference
    exportable = _Exportable(copy.deepcopy(model), checkpoint.temperature)
    for module in exportable.modules():
        if type(module) is nn.MultiheadAttention:
            module.__class__ = _TraceableAttention  # same parameters and attributes, new forward

    with atomic_path(output_path) as temp:  # a failed check leaves no file behind
        with warnings.catch_warnings():
            # The tracer warns about every Python branch on a tensor and about LSTM batch
            # sizes; the check below is what tells whether the graph is right.
            warnings.simplefilter("ignore")
            with _exporter_fixes(opset):
                torch.onnx.export(
                    exportable,
                    tuple(example),
                    str(temp),
                    input_names=list(input_shapes),
                    output_names=list(output_shapes),
                    dynamic_axes=_dynamic_axes({**input_shapes, **output_shapes}),
                    opset_version=opset,
                    dynamo=False,
                )
        differences = _compare(model, temp, checkpoint.temperature) if check else {}

    metadata_path = output_path.with_suffix(".json")
    metadata = _metadata(checkpoint, output_path.name, opset, input_shapes, output_shapes)
    write_json_atomically(metadata_path, metadata)
    return ExportReport(output_path, metadata_path, differences)


class _TraceableAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention`` for batch-first inputs, written so that a TorchScript
    ONNX trace keeps batch size and length dynamic (the stock forward reshapes with sizes
    the tracer freezes). Same parameters, same results; attention masks other than a key
    padding mask, and bias_k/bias_v or zero attention, are not supported."""

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        if attn_mask is not None or is_causal or not self.batch_first:
            raise NotImplementedError(
                "ONNX export supports attention on batch-first inputs with a key padding mask only"
            )
        if self.bias_k is not None or self.add_zero_attn or not self._qkv_same_embed_dim:
            raise NotImplementedError(
                "ONNX export does not support attention with bias_k/bias_v, zero attention or kdim/vdim"
            )
        biases = (None,) * 3 if self.in_proj_bias is None else self.in_proj_bias.chunk(3)
        q, k, v = (
            F.linear(x, weight, bias).unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)
            for x, weight, bias in zip((query, key, value), self.in_proj_weight.chunk(3), biases)
        )
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, heads, L, S)
        if key_padding_mask is not None:
            mask = key_padding_mask[:, None, None, :]
            # TransformerEncoder hands over an additive float mask, other callers a bool one
            scores = scores.masked_fill(mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
        weights = scores.softmax(-1)
        attended = self.out_proj((weights @ v).transpose(1, 2).flatten(2))
        if not need_weights:
            return attended, None
        return attended, weights.mean(1) if average_attn_weights else weights


class _Exportable(nn.Module):
    """The model with positional inputs (features, lengths per modality) and a tuple of
    named outputs, as an ONNX graph has them; its probabilities at the checkpoint's ``temperature``."""

    def __init__(self, model: EmotionModel, temperature: float):
        super().__init__()
        self.model = model
        self.temperature = temperature

    def forward(self, *tensors: Tensor) -> tuple[Tensor, ...]:
        output = self.model(**_as_keywords(self.model.config, tensors))
        return tuple(_named_outputs(output, self.temperature).values())


def _as_keywords(config: ModelConfig, tensors: tuple[Tensor, ...] | list[Tensor]) -> dict[str, Tensor]:
    return dict(zip(_input_shapes(config), tensors))


def _input_shapes(config: ModelConfig) -> dict[str, Shape]:
    shapes: dict[str, Shape] = {}
    for m in config.modalities:
        layers = [config.layers_in(m)] if config.layers_in(m) > 1 else []
        shapes[m] = ["batch", *layers, f"{m}_frames", config.input_dims[m]]
        shapes[f"{m}_lengths"] = ["batch"]
    return shapes


def _dynamic_axes(shapes: dict[str, Shape]) -> dict[str, dict[int, str]]:
    return {
        name: {dim: size for dim, size in enumerate(shape) if isinstance(size, str)} for name, shape in shapes.items()
    }


def _named_outputs(output: ModelOutput, temperature: float = 1.0) -> dict[str, Tensor]:
    """The graph's outputs: logits, probabilities (at ``temperature``), then the output's
    other fields in order."""
    named = {"logits": output.logits, "probabilities": output.probabilities_at(temperature)}
    for field in dataclasses.fields(output):
        value = getattr(output, field.name)
        if field.name in named or field.name in _ECHOED_FIELDS:
            continue
        if isinstance(value, dict):
            named.update({f"{field.name}_{key}": tensor for key, tensor in value.items()})
        else:
            named[field.name] = value
    return named


def _random_inputs(config: ModelConfig, batch: int, frames: int, seed: int) -> list[Tensor]:
    """Features and lengths for every modality: the first item full length, the others
    random between two thirds and all of the ``frames`` (more for later modalities, so
    that no two time axes have one size)."""
    generator = torch.Generator().manual_seed(seed)
    tensors = []
    for index, modality in enumerate(config.modalities):
        length = frames + 5 * index
        layers, width = config.layers_in(modality), config.input_dims[modality]
        shape = (batch, layers, length, width) if layers > 1 else (batch, length, width)
        lengths = torch.randint(2 * length // 3, length + 1, (batch,), generator=generator)
        lengths[0] = length
        tensors += [torch.randn(*shape, generator=generator), lengths]
    return tensors


@torch.no_grad()
def _output_shapes(model: EmotionModel) -> dict[str, Shape]:
    """The shape of each output, its dynamic axes found by running the model on inputs
    that differ from the trace's in their batch size only, or in one modality's length."""
    config = model.config
    base = _random_inputs(config, *_TRACE_SIZES, seed=0)
    reference = _named_outputs(model(**_as_keywords(config, base)))
    shapes: dict[str, Shape] = {name: list(tensor.shape) for name, tensor in reference.items()}
    variants = {"batch": _random_inputs(config, _TRACE_SIZES[0] + 1, _TRACE_SIZES[1], seed=0)}
    for index, modality in enumerate(config.modalities):
        longer = list(base)
        features = base[2 * index]
        longer[2 * index] = torch.cat([features, features.narrow(-2, 0, 1)], dim=-2)
        variants[f"{modality}_frames"] = longer
    for axis_name, inputs in variants.items():
        for name, tensor in _named_outputs(model(**_as_keywords(config, inputs))).items():
            for dim, (before, after) in enumerate(zip(reference[name].shape, tensor.shape)):
                if before != after:
                    shapes[name][dim] = axis_name
    return shapes


@torch.no_grad()
def _compare(model: EmotionModel, path: Path, temperature: float) -> dict[str, float]:
    """Largest difference of each output between onnxruntime and PyTorch over the check
    inputs; :class:`ExportError` where one exceeds the tolerance."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    differences: dict[str, float] = {}
    for seed, (batch, frames) in enumerate(_CHECK_SIZES, start=1):
        inputs = _random_inputs(model.config, batch, frames, seed)
        expected = _named_outputs(model(**_as_keywords(model.config, inputs)), temperature)
        feeds = {name: tensor.numpy() for name, tensor in _as_keywords(model.config, inputs).items()}
        for (name, want), got in zip(expected.items(), session.run(list(expected), feeds)):
            want, got = want.numpy().astype(np.float64), np.asarray(got, np.float64)  # flags compare as 0/1
            if got.shape != want.shape:
                raise ExportError(
                    f"{path}: output {name} has shape {got.shape} in ONNX, {want.shape} in PyTorch "
                    f"(batch {batch}, {frames} frames)"
                )
            difference = float(np.abs(got - want).max(initial=0.0))
            differences[name] = max(differences.get(name, 0.0), difference)
            if difference > TOLERANCE * max(1.0, float(np.abs(want).max(initial=0.0))):
                raise ExportError(
                    f"{path}: output {name} differs from PyTorch by up to {difference:.3g} "
                    f"(batch {batch}, {frames} frames; tolerance {TOLERANCE:g})"
                )
    return differences


@symbolic_helper.parse_args("v", "v", "v", "v", "f", "none")
def _layer_norm(
    g: Any, input: Any, normalized_shape: Any, weight: Any, bias: Any, eps: float, cudnn_enable: Any
) -> Any:
    """``aten::layer_norm`` as ONNX LayerNormalization, also when ``normalized_shape`` was
    read from the input's shape (a traced list, not a constant): only its length matters."""
    node = normalized_shape.node()  # a constant, or a list of sizes read off the input
    constant = node.kind() != "prim::ListConstruct"
    dims = node.t("value").numel() if constant else len(list(node.inputs()))
    if weight.node().mustBeNone():
        widths = g.op(
            "Slice",
            g.op("Shape", input),
            g.op("Constant", value_t=torch.tensor([-dims])),
            g.op("Constant", value_t=torch.tensor([sys.maxsize])),
        )
        weight = g.op("ConstantOfShape", widths, value_t=torch.tensor([1.0]))
    inputs = (input, weight) if bias.node().mustBeNone() else (input, weight, bias)
    return g.op("LayerNormalization", *inputs, epsilon_f=eps, axis_i=-dims)


def _floor_divide(g: Any, dividend: Any, divisor: Any) -> Any:
    """``aten::floor_divide`` rounded down, as PyTorch computes it (the exporter's own
    rounds toward zero, which differs when the quotient is negative)."""
    if symbolic_helper._is_fp(dividend) or symbolic_helper._is_fp(divisor):
        return g.op("Floor", g.op("Div", dividend, divisor))
    remainder = g.op("Mod", dividend, divisor, fmod_i=0)  # takes the divisor's sign, as Python's %
    return g.op("Div", g.op("Sub", dividend, remainder), divisor)  # exact: the difference is a multiple


_SYMBOLICS = {"aten::layer_norm": _layer_norm, "aten::floor_divide": _floor_divide}


@contextmanager
def _exporter_fixes(opset: int) -> Iterator[None]:
    """:data:`_SYMBOLICS` in place of the exporter's own, for the duration of one export."""
    for name, symbolic in _SYMBOLICS.items():
        torch.onnx.register_custom_op_symbolic(name, symbolic, opset)
    try:
        yield
    finally:
        for name in _SYMBOLICS:
            torch.onnx.unregister_custom_op_symbolic(name, opset)


def _metadata(
    checkpoint: Checkpoint,
    onnx_file: str,
    opset: int,
    input_shapes: dict[str, Shape],
    output_shapes: dict[str, Shape],
) -> dict[str, Any]:
    """What an ONNX user needs to feed the graph and read its outputs."""
    return {
        "onnx": onnx_file,
        "opset": opset,
        "labels": list(checkpoint.labels),
        "inputs": {m: dataclasses.asdict(spec) for m, spec in checkpoint.inputs.items()},
        "graph_inputs": [
            {"name": name, "shape": shape, "dtype": "int64" if name.endswith("_lengths") else "float32"}
            for name, shape in input_shapes.items()
        ],
        "graph_outputs": [{"name": name, "shape": shape} for name, shape in output_shapes.items()],
        "notes": (
            "Feed each modality's features made as 'inputs' describes, padded along time, "
            "and its *_lengths: the valid frames of each item. 'probabilities' are over "
            "'labels' in order, calibrated: softmax(logits / temperature)."
        ),
        "model": model_config_to_dict(checkpoint.model.config),
        "protocol": checkpoint.protocol,
        "temperature": checkpoint.temperature,
    }
