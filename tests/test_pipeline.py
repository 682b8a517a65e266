"""Corpus extraction: caching, invalidation, bad inputs, a killed run resumed, the CLI."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import soundfile
import typer
from typer.testing import CliRunner

from emotrace.audio import load_audio
from emotrace.cli import features as features_cli
from emotrace.corpora.records import Utterance
from emotrace.errors import BatchReport, InputError
from emotrace.features.base import Extractor, Features
from emotrace.features.pipeline import extract_corpus
from emotrace.features.store import FeatureStore

RATE = 16000
HOP = 160
MIN_FRAMES = 15  # FrameEnergy rejects clips under 0.15 s, which load_audio still accepts


class FrameEnergy(Extractor):
    """Log energy and zero-crossing rate per 10 ms: a deterministic function of the waveform."""

    name = "frame-energy"
    modality = "audio"

    def __init__(self, delay: float = 0.0):
        self.delay = delay  # seconds per input, to make a run slow enough to kill
        self.calls: list[int] = []

    def config(self) -> dict:
        return {"hop": HOP}

    def extract(self, inputs: Sequence[np.ndarray]) -> list[Features]:
        self.calls.append(len(inputs))
        time.sleep(self.delay * len(inputs))
        results = []
        for waveform in inputs:
            if len(waveform) < MIN_FRAMES * HOP:
                raise InputError("waveform", f"shorter than {MIN_FRAMES} frames")
            frames = waveform[: len(waveform) // HOP * HOP].reshape(-1, HOP)
            energy = np.log(np.mean(frames**2, axis=1) + 1e-8)
            crossings = np.mean(np.abs(np.diff(np.sign(frames), axis=1)) > 0, axis=1)
            results.append(Features(np.stack([energy, crossings], axis=1)[None].astype(np.float32), RATE / HOP))
        return results


class WordLengths(Extractor):
    """Letters per word, one frame per word: a deterministic text extractor."""

    name = "word-lengths"
    modality = "text"

    def __init__(self) -> None:
        self.inputs: list[str] = []

    def config(self) -> dict:
        return {}

    def extract(self, inputs: Sequence[str]) -> list[Features]:
        self.inputs.extend(inputs)
        results = []
        for text in inputs:
            words = text.split()
            lengths = np.array([[len(word)] for word in words], np.float32).reshape(1, len(words), 1)
            results.append(Features(lengths, 0.0, tokens=tuple(words), word_index=np.arange(len(words))))
        return results


def write_clips(folder: Path, count: int, seconds: float = 0.3, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        noise = rng.standard_normal(int(seconds * RATE)) * rng.uniform(0.01, 0.3)
        soundfile.write(folder / f"clip{index:03d}.wav", noise.clip(-1, 1), RATE, subtype="PCM_16")


def utterances_in(folder: Path) -> list[Utterance]:
    return [
        Utterance(id=path.stem, audio=str(path), label=None, speaker="speaker") for path in sorted(folder.glob("*.wav"))
    ]


def check_store(store_root: Path, utterances: list[Utterance]) -> FeatureStore:
    """Every utterance has exactly one entry, equal to the extractor's output on its audio."""
    extractor = FrameEnergy()
    store = FeatureStore.open(store_root, extractor.name, extractor.config())
    assert store.ids() == sorted(utterance.id for utterance in utterances)
    for utterance, stored in zip(utterances, store.get_many([u.id for u in utterances])):
        expected = extractor.extract([load_audio(utterance.audio)])[0]
        np.testing.assert_array_equal(stored.data, expected.data)
        assert stored.frame_rate == 100.0
    return store


def test_a_rerun_does_no_work(tmp_path: Path) -> None:
    write_clips(tmp_path / "clips", 6)
    utterances = utterances_in(tmp_path / "clips")
    first = extract_corpus(utterances, [FrameEnergy()], tmp_path / "store", batch_size=4, progress=False)
    assert [(c.computed, c.cached, c.skipped) for c in first.stores] == [(6, 0, 0)]
    assert first.report.done == 6 and first.report.skipped == []
    extractor = FrameEnergy()
    again = extract_corpus(utterances, [extractor], tmp_path / "store", batch_size=4, progress=False)
    assert [(c.computed, c.cached, c.skipped) for c in again.stores] == [(0, 6, 0)]
    assert extractor.calls == []
    assert "0 computed, 6 cached" in again.text()
    store = check_store(tmp_path / "store", utterances)
    assert store.info()["shards"] == 0  # compacted at the end of the first run
    assert store.entry_meta("clip000") == {"seconds": pytest.approx(0.3)}


def test_the_same_input_under_another_id_is_copied_not_recomputed(tmp_path: Path) -> None:
    """A paired corpus lists each clip (and text) again under a new id: no second encoder pass."""
    write_clips(tmp_path / "clips", 3)
    originals = utterances_in(tmp_path / "clips")
    for index, utterance in enumerate(originals):
        originals[index] = Utterance(utterance.id, utterance.audio, None, "s", transcript=f"word {index}")
    extract_corpus(originals, [FrameEnergy(), WordLengths()], tmp_path / "store", progress=False)
    pairs = [Utterance(f"{u.id}+pair", u.audio, None, "s", transcript=u.transcript) for u in originals]
    audio, text = FrameEnergy(), WordLengths()
    summary = extract_corpus(pairs, [audio, text], tmp_path / "store", batch_size=2, progress=False)
    assert audio.calls == [] and text.inputs == []
    assert [(c.computed, c.cached) for c in summary.stores] == [(0, 3), (0, 3)]
    store = check_store(tmp_path / "store", originals + pairs)
    assert store.key("clip000+pair") == store.key("clip000") and store.info()["shards"] == 0


def test_a_changed_audio_file_recomputes_only_its_entry(tmp_path: Path) -> None:
    write_clips(tmp_path / "clips", 5)
    utterances = utterances_in(tmp_path / "clips")
    extract_corpus(utterances, [FrameEnergy()], tmp_path / "store", progress=False)
    changed = tmp_path / "clips" / "clip002.wav"
    soundfile.write(changed, np.linspace(-0.5, 0.5, RATE // 2), RATE, subtype="PCM_16")
    extractor = FrameEnergy()
    summary = extract_corpus(utterances, [extractor], tmp_path / "store", progress=False)
    assert [(c.computed, c.cached) for c in summary.stores] == [(1, 4)]
    assert extractor.calls == [1]
    store = check_store(tmp_path / "store", utterances)
    assert store.get("clip002").data.shape[1] == 50  # the new, longer clip


def test_bad_inputs_are_skipped_and_reported(tmp_path: Path) -> None:
    write_clips(tmp_path / "clips", 4)
    (tmp_path / "clips" / "clip001.wav").write_bytes(b"RIFF not really a wave file")
    short = np.random.default_rng(1).uniform(-0.1, 0.1, int(0.12 * RATE))  # loads, but too short to extract
    soundfile.write(tmp_path / "clips" / "clip002.wav", short, RATE, subtype="PCM_16")
    utterances = [*utterances_in(tmp_path / "clips"), Utterance("gone", str(tmp_path / "gone.wav"), None, "s")]
    report = BatchReport()
    summary = extract_corpus(
        utterances, [FrameEnergy()], tmp_path / "store", batch_size=8, report=report, progress=False
    )
    assert [(c.computed, c.cached, c.skipped) for c in summary.stores] == [(2, 0, 3)]
    assert report.done == 2
    assert sorted(error.source for error in report.skipped) == [
        f"clip001 ({tmp_path / 'clips' / 'clip001.wav'})",
        f"clip002 ({tmp_path / 'clips' / 'clip002.wav'})",
        f"gone ({tmp_path / 'gone.wav'})",
    ]
    assert f"skipped gone ({tmp_path / 'gone.wav'}): file not found" in report.summary()
    good = [u for u in utterances if u.id in {"clip000", "clip003"}]
    check_store(tmp_path / "store", good)
    with pytest.raises(InputError):
        extract_corpus(utterances, [FrameEnergy()], tmp_path / "store", report=BatchReport(strict=True), progress=False)


def test_text_extractors_read_transcripts(tmp_path: Path) -> None:
    write_clips(tmp_path / "clips", 3)
    utterances = utterances_in(tmp_path / "clips")
    utterances[0] = Utterance(utterances[0].id, utterances[0].audio, None, "s", transcript="dogs are sitting")
    utterances[1] = Utterance(utterances[1].id, utterances[1].audio, None, "s", transcript="kids")
    extractor = WordLengths()
    report = BatchReport()
    summary = extract_corpus(utterances, [extractor, FrameEnergy()], tmp_path / "store", report=report, progress=False)
    assert [(c.extractor, c.computed, c.skipped) for c in summary.stores] == [
        ("word-lengths", 2, 1),
        ("frame-energy", 3, 0),
    ]
    assert [str(error) for error in report.skipped] == ["clip002: no transcript (pass --asr to transcribe the audio)"]
    store = FeatureStore.open(tmp_path / "store", extractor.name, extractor.config())
    stored = store.get("clip000")
    assert stored.tokens == ("dogs", "are", "sitting") and stored.data[0, :, 0].tolist() == [4, 3, 7]
    # a changed transcript is a changed input
    utterances[1] = Utterance(utterances[1].id, utterances[1].audio, None, "s", transcript="kids are talking")
    rerun = WordLengths()
    summary = extract_corpus(utterances, [rerun], tmp_path / "store", progress=False)
    assert rerun.inputs == ["kids are talking"] and summary.stores[0].cached == 1


CHILD = """
import sys
sys.path.insert(0, sys.argv[3])
from pathlib import Path
from test_pipeline import FrameEnergy, utterances_in
from emotrace.features.pipeline import extract_corpus
extract_corpus(utterances_in(Path(sys.argv[1])), [FrameEnergy(delay=0.05)], sys.argv[2],
               batch_size=4, workers=1, progress=False)
"""


def test_a_killed_extraction_resumes_without_losing_or_repeating_entries(tmp_path: Path) -> None:
    write_clips(tmp_path / "clips", 40, seconds=0.2)
    utterances = utterances_in(tmp_path / "clips")
    store_root = tmp_path / "store"
    shards = FeatureStore.open(store_root, FrameEnergy.name, FrameEnergy().config()).directory / "shards"
    src = Path(__file__).resolve().parents[1] / "src"
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path / "clips"), str(store_root), str(Path(__file__).parent)],
        env=environment,
    )
    deadline = time.monotonic() + 120
    while len(list(shards.glob("[0-9]*.h5"))) < 3 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL, "the child finished (or died) before it could be killed"

    survived = FeatureStore.open(store_root, FrameEnergy.name, FrameEnergy().config()).ids()
    assert 12 <= len(survived) < 40
    extractor = FrameEnergy()
    summary = extract_corpus(utterances, [extractor], store_root, batch_size=4, progress=False)
    assert [(c.computed, c.cached) for c in summary.stores] == [(40 - len(survived), len(survived))]
    assert sum(extractor.calls) == 40 - len(survived)
    store = check_store(store_root, utterances)
    assert store.info()["entries"] == 40 and store.info()["shards"] == 0


def test_split_specs_keeps_list_values_inside_a_spec() -> None:
    assert features_cli.split_specs("egemaps,whisper-tiny") == ["egemaps", "whisper-tiny"]
    assert features_cli.split_specs("whisper-base:layers=3,4, minilm") == ["whisper-base:layers=3,4", "minilm"]
    assert features_cli.split_specs("hf:microsoft/wavlm-base:layers=1,2,3") == ["hf:microsoft/wavlm-base:layers=1,2,3"]


def test_features_info_lists_the_stores(tmp_path: Path) -> None:
    write_clips(tmp_path / "clips", 3)
    extract_corpus(utterances_in(tmp_path / "clips"), [FrameEnergy()], tmp_path / "store", progress=False)
    cli = typer.Typer()  # wired as cli/__init__.py wires it
    cli.add_typer(features_cli.app, name="features")
    runner = CliRunner()
    table = runner.invoke(cli, ["features", "info", str(tmp_path / "store")], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert "frame-energy v1" in table.output and '{"hop": 160}' in table.output
    listed = runner.invoke(cli, ["features", "info", str(tmp_path / "store"), "--json"])
    assert listed.exit_code == 0, listed.output
    [info] = json.loads(listed.output)
    assert (info["extractor"], info["entries"], info["dims"], info["layers"]) == ("frame-energy", 3, 2, [0])
    assert info["total_frames"] == 3 * 30 and info["frame_rate"] == 100.0


def test_extract_reports_a_bad_corpus_in_one_line(tmp_path: Path) -> None:
    cli = typer.Typer()
    cli.command("extract")(features_cli.extract)
    cli.add_typer(features_cli.app, name="features")
    result = CliRunner().invoke(
        cli, ["extract", "no-such-corpus", str(tmp_path), "--features", "egemaps", "--store", str(tmp_path / "s")]
    )
    assert result.exit_code == 1
    assert "error: corpus 'no-such-corpus': unknown; known: ravdess" in result.output


def test_extract_command_fills_a_store_from_a_manifest_then_does_no_work(tmp_path: Path) -> None:
    write_clips(tmp_path / "clips", 4, seconds=0.5)
    manifest = tmp_path / "corpus.jsonl"
    manifest.write_text(
        "".join(
            json.dumps({"key": f"clip{i:03d}", "wav": f"clips/clip{i:03d}.wav", "emo": emotion, "speaker": f"s{i}"})
            + "\n"
            for i, emotion in enumerate(["neu", "ang", "sad", "hap"])
        )
    )
    cli = typer.Typer()
    cli.command("extract")(features_cli.extract)
    cli.add_typer(features_cli.app, name="features")
    command = ["extract", "manifest", str(manifest), "--features", "egemaps", "--store", str(tmp_path / "store")]
    first = CliRunner().invoke(cli, command, env={"COLUMNS": "200"})
    assert first.exit_code == 0, first.output
    assert "extraction: 4 done, 0 skipped" in first.output
    [info] = json.loads(CliRunner().invoke(cli, ["features", "info", str(tmp_path / "store"), "--json"]).output)
    assert (info["extractor"], info["entries"], info["dims"], info["frame_rate"]) == ("egemaps", 4, 25, 100.0)
    compacted = Path(info["path"]) / "features.h5"
    written = compacted.stat().st_mtime_ns
    again = CliRunner().invoke(cli, command, env={"COLUMNS": "200"})
    assert again.exit_code == 0, again.output
    assert re.search(r"│ egemaps\s+│ 0\s+│ 4\s+│ 0\s+│", again.output), again.output  # computed, cached, skipped
    assert compacted.stat().st_mtime_ns == written and not list((compacted.parent / "shards").iterdir())
