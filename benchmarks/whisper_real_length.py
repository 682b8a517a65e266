"""Does running Whisper on the real length of a clip, not padded to 30 s, keep its accuracy?

emotrace's Whisper extractor runs the encoder on the clip's own frames (padding masked out
of attention, layers only up to the deepest kept). The usual Hugging Face path pads every
clip to Whisper's 30 s window and keeps the frames that cover the clip, whose attention has
seen the padding. Both extract Whisper-base layers 2-5 of the 1440 RAVDESS clips; a linear
probe (mean+std pooling, logistic regression tuned on validation actors; the ravdess_audio
benchmark's probe) is cross-validated on each, utterance-level, over the 6 EmoBox folds.
Extraction time is wall time on this machine, model loading included.

    EMOTRACE_DATA=../shared/data python benchmarks/whisper_real_length.py [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from emotrace.audio import SAMPLE_RATE
from emotrace.corpora import load_corpus
from emotrace.features.pipeline import extract_corpus
from emotrace.features.store import FeatureStore
from emotrace.features.whisper import WhisperEncoderExtractor
from emotrace.protocols import UTTERANCE_LEVEL
from emotrace.training.classic import run_classic

sys.path.insert(0, str(Path(__file__).parent))
from common import write_results

LAYERS = (2, 3, 4, 5)
PROBE_LAYERS = {"layers 2-5 (mean of their pooled statistics)": None, "layer 4": [4]}


class PaddedWhisper(WhisperEncoderExtractor):
    """The Hugging Face way: every clip padded to 30 s, the whole encoder run, the clip's
    frames kept. Only for this comparison."""

    version = 1

    def __init__(self) -> None:
        super().__init__("whisper-base", LAYERS)
        self.name = "whisper-base-padded-30s"

    def config(self) -> dict[str, Any]:
        return {**super().config(), "padding": "30 s, Hugging Face WhisperEncoder forward"}

    @staticmethod
    def _encode(encoder, mel_extractor, clips, frames, layers) -> np.ndarray:
        mel = mel_extractor(clips, sampling_rate=SAMPLE_RATE, padding="max_length", return_tensors="pt")
        with torch.inference_mode():
            states = encoder(mel.input_features, output_hidden_states=True).hidden_states
        hidden = torch.stack([states[layer] for layer in layers], dim=1)
        return hidden[:, :, : max(frames)].numpy().astype(np.float32, copy=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    corpus = load_corpus("ravdess", Path(os.environ.get("EMOTRACE_DATA", "../shared/data")) / "ravdess")
    audio_seconds = sum(sf.info(u.audio).duration for u in corpus.utterances)
    rows = []
    with tempfile.TemporaryDirectory() as stores:
        for system, extractor in (
            ("real length (emotrace)", WhisperEncoderExtractor("whisper-base", LAYERS)),
            ("padded to 30 s (Hugging Face default)", PaddedWhisper()),
        ):
            started = time.perf_counter()
            extract_corpus(corpus.utterances, [extractor], stores, batch_size=8, progress=False)
            seconds = time.perf_counter() - started
            with FeatureStore.open(stores, extractor.name, extractor.config(), extractor.version) as store:
                for probe, layers in PROBE_LAYERS.items():
                    summary = run_classic("probe", store, corpus, UTTERANCE_LEVEL, layers=layers)["summary"]
                    rows.append(
                        {
                            "system": f"Whisper-base {system}, linear probe on {probe}",
                            "protocol": UTTERANCE_LEVEL,
                            "folds": summary["folds"],
                            **{
                                f"{name}_{stat}": round(summary[f"{name}_{stat}"], 2)
                                for name in ("ua", "wa")
                                for stat in ("mean", "std")
                            },
                            "extraction_seconds": round(seconds, 1),
                            "speed": round(audio_seconds / seconds, 1),
                        }
                    )
                    print(
                        f"{rows[-1]['system']:<90} UA {rows[-1]['ua_mean']:5.1f}  "
                        f"extraction {seconds:6.0f} s ({rows[-1]['speed']}x real time)"
                    )
            write_results(
                "whisper_real_length",
                (
                    "RAVDESS speech, 8 classes, 1440 clips, the 6 EmoBox folds, utterance-level; Whisper-base "
                    "layers 2-5 extracted on the real length vs padded to 30 s; linear probe (mean+std pooling, "
                    "logistic regression, C tuned on validation actors); extraction wall time with model "
                    f"loading, {args.threads} torch threads"
                ),
                rows,
            )


if __name__ == "__main__":
    main()
