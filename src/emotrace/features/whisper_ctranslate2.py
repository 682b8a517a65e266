"""Whisper models in CTranslate2 format, opened up layer by layer.

The CTranslate2 runtime returns only the encoder's last layer, and the intermediate layers
are the ones that carry the most emotion. Its ``model.bin`` holds every weight, though, and
they map one to one onto a Hugging Face ``WhisperEncoder`` (the fused query/key/value
projection splits in three), which exposes every layer. The converted encoder is saved as
safetensors with its config and a Whisper feature extractor config, i.e. as an ordinary
Hugging Face model folder.

``model.bin`` layout (CTranslate2's ``ModelSpec._serialize``, little-endian): uint32 binary
version; spec name; uint32 spec revision; uint32 variable count; per variable: name, uint8
rank, rank x uint32 dims, uint8 dtype id, uint32 byte count, raw bytes; then uint32 alias
count and (alias, target) name pairs (identical variables are stored once). A name is a
uint16 length (including a NUL) and UTF-8 bytes ending in NUL.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import BinaryIO

import torch
from transformers import WhisperConfig, WhisperFeatureExtractor
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from emotrace.features.inputs import ExtractorConfigError

#: binary versions whose variable records have the layout read here (CTranslate2 4.x writes 6)
SUPPORTED_BINARY_VERSIONS = range(3, 7)
#: CTranslate2's DataType ids (include/ctranslate2/types.h)
_DTYPES = {0: torch.float32, 1: torch.int8, 2: torch.int16, 3: torch.int32, 4: torch.float16, 5: torch.bfloat16}
_LAYER = re.compile(r"^encoder/layer_(\d+)/")


def _unpack(handle: BinaryIO, fmt: str) -> int:
    size = struct.calcsize("<" + fmt)
    data = handle.read(size)
    if len(data) != size:
        raise ExtractorConfigError(f"{handle.name}: truncated CTranslate2 model file")
    return struct.unpack("<" + fmt, data)[0]


def _name(handle: BinaryIO) -> str:
    length = _unpack(handle, "H")
    return handle.read(length).rstrip(b"\0").decode("utf-8")


def read_ctranslate2_variables(model_bin: Path, prefix: str) -> tuple[str, dict[str, torch.Tensor]]:
    """The spec name and the variables whose names start with ``prefix``, aliases resolved.

    CTranslate2 stores identical variables once and names the copies as aliases (a model's
    zero-initialised biases, tied embeddings), so an alias may point anywhere in the file.
    """
    records: dict[str, tuple[int, list[int], int, int]] = {}  # name -> (offset, shape, dtype id, size)
    with open(model_bin, "rb") as handle:
        version = _unpack(handle, "I")
        if version not in SUPPORTED_BINARY_VERSIONS:
            raise ExtractorConfigError(f"{model_bin}: CTranslate2 binary version {version} is not supported")
        spec = _name(handle)
        _unpack(handle, "I")  # spec revision: the variable names below say all we use
        for _ in range(_unpack(handle, "I")):
            name = _name(handle)
            shape = [_unpack(handle, "I") for _ in range(_unpack(handle, "B"))]
            dtype_id = _unpack(handle, "B")
            size = _unpack(handle, "I")
            records[name] = (handle.tell(), shape, dtype_id, size)
            handle.seek(size, 1)
        aliases = dict((_name(handle), _name(handle)) for _ in range(_unpack(handle, "I")))
        variables = {}
        for name in [*records, *aliases]:
            if not name.startswith(prefix):
                continue
            offset, shape, dtype_id, size = records[aliases.get(name, name)]
            if dtype_id not in _DTYPES:
                raise ExtractorConfigError(f"{model_bin}: variable {name} has unknown dtype id {dtype_id}")
            handle.seek(offset)
            data = bytearray(handle.read(size))
            if len(data) != size:
                raise ExtractorConfigError(f"{model_bin}: truncated at variable {name}")
            variables[name] = torch.frombuffer(data, dtype=_DTYPES[dtype_id]).reshape(shape)
    return spec, variables


def whisper_encoder_from_ctranslate2(model_bin: Path) -> WhisperEncoder:
    """A Hugging Face ``WhisperEncoder`` holding the encoder weights of a CTranslate2 Whisper model.

    Every encoder variable must be used and every encoder parameter filled (strict load,
    which also checks each shape), so a quantized or unexpected model fails here instead of
    producing wrong features.
    """
    spec, variables = read_ctranslate2_variables(model_bin, "encoder/")
    if spec != "WhisperSpec":
        raise ExtractorConfigError(f"{model_bin}: a {spec} model, not a Whisper model")
    layers = 1 + max((int(match[1]) for name in variables if (match := _LAYER.match(name))), default=-1)
    if layers == 0:
        raise ExtractorConfigError(f"{model_bin}: no encoder layers")

    def take(name: str) -> torch.Tensor:
        try:
            return variables.pop(f"encoder/{name}")
        except KeyError:
            raise ExtractorConfigError(f"{model_bin}: no variable encoder/{name}") from None

    heads = int(take("num_heads"))
    state = {
        "conv1.weight": take("conv1/weight"),
        "conv1.bias": take("conv1/bias"),
        "conv2.weight": take("conv2/weight"),
        "conv2.bias": take("conv2/bias"),
        "embed_positions.weight": take("position_encodings/encodings"),
        "layer_norm.weight": take("layer_norm/gamma"),
        "layer_norm.bias": take("layer_norm/beta"),
    }
    for index in range(layers):
        ct2, hf = f"layer_{index}", f"layers.{index}"
        query, key, value = take(f"{ct2}/self_attention/linear_0/weight").chunk(3)
        query_bias, key_bias, value_bias = take(f"{ct2}/self_attention/linear_0/bias").chunk(3)
        if key_bias.any():  # Whisper's key projection has no bias; the fused one holds zeros
            raise ExtractorConfigError(f"{model_bin}: layer {index} has a key bias, which Whisper lacks")
        state |= {
            f"{hf}.self_attn.q_proj.weight": query,
            f"{hf}.self_attn.q_proj.bias": query_bias,
            f"{hf}.self_attn.k_proj.weight": key,
            f"{hf}.self_attn.v_proj.weight": value,
            f"{hf}.self_attn.v_proj.bias": value_bias,
            f"{hf}.self_attn.out_proj.weight": take(f"{ct2}/self_attention/linear_1/weight"),
            f"{hf}.self_attn.out_proj.bias": take(f"{ct2}/self_attention/linear_1/bias"),
            f"{hf}.self_attn_layer_norm.weight": take(f"{ct2}/self_attention/layer_norm/gamma"),
            f"{hf}.self_attn_layer_norm.bias": take(f"{ct2}/self_attention/layer_norm/beta"),
            f"{hf}.fc1.weight": take(f"{ct2}/ffn/linear_0/weight"),
            f"{hf}.fc1.bias": take(f"{ct2}/ffn/linear_0/bias"),
            f"{hf}.fc2.weight": take(f"{ct2}/ffn/linear_1/weight"),
            f"{hf}.fc2.bias": take(f"{ct2}/ffn/linear_1/bias"),
            f"{hf}.final_layer_norm.weight": take(f"{ct2}/ffn/layer_norm/gamma"),
            f"{hf}.final_layer_norm.bias": take(f"{ct2}/ffn/layer_norm/beta"),
        }
    if variables:
        raise ExtractorConfigError(
            f"{model_bin}: encoder variables with no Hugging Face counterpart (a quantized model?): "
            f"{sorted(variables)[:5]}"
        )
    dtype = state["conv1.weight"].dtype
    if any(tensor.dtype != dtype for tensor in state.values()):
        raise ExtractorConfigError(f"{model_bin}: encoder weights of mixed dtypes (a quantized model?)")
    config = WhisperConfig(
        num_mel_bins=state["conv1.weight"].shape[1],
        d_model=state["conv1.weight"].shape[0],
        encoder_layers=layers,
        encoder_attention_heads=heads,
        encoder_ffn_dim=state["layers.0.fc1.weight"].shape[0],
        max_source_positions=state["embed_positions.weight"].shape[0],
    )
    encoder = WhisperEncoder(config).to(dtype)
    try:
        encoder.load_state_dict(state, strict=True)
    except RuntimeError as error:  # a shape that does not fit the config derived above
        raise ExtractorConfigError(f"{model_bin}: {error}") from error
    return encoder.eval()


def convert_ctranslate2_whisper(model_bin: Path, folder: Path) -> None:
    """Write the encoder of a CTranslate2 Whisper model to ``folder`` as a Hugging Face model.

    Weights keep their stored precision (float16 for the usual CTranslate2 models), so the
    conversion is exact; loading upcasts them to float32.
    """
    encoder = whisper_encoder_from_ctranslate2(model_bin)
    encoder.save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=encoder.config.num_mel_bins).save_pretrained(folder)
