"""``emotrace demo``: the shipped clips end to end through what a fresh install can run offline.

Reads the clips as a RAVDESS-named corpus, decodes them, transcribes them with the
packaged Whisper tiny.en and extracts the acoustic features the methods train on. It
stands in for ``emotrace predict`` until the pretrained default model ships.
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from emotrace.audio import load_audio
from emotrace.corpora.ravdess import read_ravdess
from emotrace.errors import BatchReport
from emotrace.features.asr import WhisperASR
from emotrace.features.registry import get_extractor
from emotrace.samples import SAMPLES


def demo() -> None:
    """Run the shipped sample clips through decoding, ASR and feature extraction."""
    console = Console()
    utterances = read_ravdess(SAMPLES, BatchReport())
    asr = WhisperASR()
    extractors = [get_extractor("whisper-tiny:layers=4"), get_extractor("egemaps")]
    table = Table("clip", "label (file name)", "seconds", "ASR transcript", *(e.name for e in extractors))
    with console.status("transcribing and extracting features"):
        for utterance in utterances:
            waveform = load_audio(utterance.audio)
            transcript = asr.transcribe(waveform)
            shapes = []
            for extractor in extractors:
                (features,) = extractor.extract([waveform])
                layers, frames, dims = features.data.shape
                shapes.append(f"{frames} x {dims} @ {features.frame_rate:g} Hz")
            table.add_row(
                utterance.id, utterance.label or "?", f"{len(waveform) / 16000:.2f}",
                transcript.text, *shapes,
            )
    console.print(table)
    console.print(
        "Next: [bold]emotrace extract ravdess ROOT --features whisper-base:layers=3,4 --store DIR[/]"
    )


if __name__ == "__main__":
    typer.run(demo)
