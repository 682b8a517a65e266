"""The Ray engine: extraction and prediction on a local two-CPU Ray cluster give the
single-process results on real clips, survive a killed worker, and resume a killed job.

One cluster serves the whole module (Ray starts slowly); tests that need it skip where Ray
is not installed. Both paths run with one thread per process: a thread count can change
the last bit of a float, on one machine as on many.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits
from typer.testing import CliRunner

from emotrace.atomic import TEMP_PREFIX
from emotrace.checkpoint import Checkpoint
from emotrace.cli import app
from emotrace.corpora.manifest import write_manifest
from emotrace.corpora.records import Utterance
from emotrace.distributed.cluster import require_ray
from emotrace.distributed.extract import extract_corpus_on_ray
from emotrace.distributed.predict import predict_files_on_ray, prediction_job
from emotrace.distributed.results import (
    PARTS_SUFFIX,
    Item,
    ResultParts,
    file_state,
    no_speech_notices,
    write_results,
)
from emotrace.errors import BatchReport, EmotraceError
from emotrace.features.asr import WhisperASR
from emotrace.features.pipeline import extract_corpus, open_stores
from emotrace.features.store import SHARDS_DIR, FeatureStore
from emotrace.features.transforms import InputSpec
from emotrace.inference.batch import BatchPredictions, batch_summary
from emotrace.inference.predictions import NoSpeech
from emotrace.inference.writers import OutputFormat, render
from emotrace.labels import RAVDESS_8
from emotrace.models import build_model
from emotrace.protocols import SPEAKER_ADAPTIVE, UTTERANCE_LEVEL

STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
CLIPS_PER_ACTOR = 12


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    """A local Ray cluster of two CPUs for the module, and one thread per process here."""
    ray = pytest.importorskip("ray", reason="the Ray engine needs the ray extra: pip install 'emotrace[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)
    ray.shutdown()


@pytest.fixture(scope="module")
def clips(shared_data: Path) -> list[Path]:
    """24 RAVDESS clips: the first twelve of actors 1 and 2."""
    return [
        path
        for actor in ("Actor_01", "Actor_02")
        for path in sorted((shared_data / "ravdess" / actor).glob("*.flac"))[:CLIPS_PER_ACTOR]
    ]


def utterances(clips: list[Path], bad: Path) -> list[Utterance]:
    """The clips with their transcripts, a file that is not audio and one that is missing."""
    found = [
        Utterance(
            id=clip.stem,
            audio=str(clip),
            label="neutral",
            speaker=clip.parent.name,
            transcript=STATEMENTS[clip.stem.split("-")[4]],
        )
        for clip in clips
    ]
    return [
        *found[:5],
        Utterance(id="not-audio", audio=str(bad), label="neutral", speaker="x", transcript="a door"),
        *found[5:],
        Utterance(id="missing", audio=str(bad.parent / "missing.flac"), label="neutral", speaker="x"),
    ]


def not_audio(folder: Path) -> Path:
    path = folder / "not-audio.flac"
    path.write_bytes(b"this is not audio")
    return path


def assert_same_stores(expected_root: Path, actual_root: Path) -> None:
    """The same stores, each with the same entries: ids, keys, features and meta, and each
    entry once, compacted, without leftovers."""
    expected, actual = open_stores(expected_root), open_stores(actual_root)
    assert [store.directory.name for store in actual] == [store.directory.name for store in expected]
    for wanted, store in zip(expected, actual):
        assert store.ids() == wanted.ids()
        for utt_id in wanted.ids():
            if isinstance(store, FeatureStore):
                assert store.key(utt_id) == wanted.key(utt_id)
                assert np.array_equal(store.get(utt_id).data, wanted.get(utt_id).data), utt_id
                assert store.entry_meta(utt_id) == wanted.entry_meta(utt_id)
            else:  # transcripts
                assert store.get(utt_id).text == wanted.get(utt_id).text
        if isinstance(store, FeatureStore):
            assert not list((store.directory / SHARDS_DIR).iterdir())
            assert not list(store.directory.glob(f"{TEMP_PREFIX}*"))


def test_extraction_on_ray_gives_the_local_stores(cluster, clips, tmp_path):
    items = utterances(clips, not_audio(tmp_path))
    specs = ["logmel:bins=16", "glove-50d"]
    local_report, ray_report = BatchReport(), BatchReport()
    local = extract_corpus(items, specs, tmp_path / "local", batch_size=4, report=local_report, progress=False)
    distributed = extract_corpus_on_ray(
        items, specs, tmp_path / "ray", actors=2, batch_size=4, report=ray_report, progress=False
    )

    assert [count.line() for count in distributed.stores] == [count.line() for count in local.stores]
    assert [count.line() for count in local.stores] == [
        "logmel-e053df9b: 24 computed, 0 cached, 2 skipped",
        f"{local.stores[1].store}: 25 computed, 0 cached, 1 skipped",  # the bad file has a transcript
    ]
    assert ray_report.done == local_report.done == 24
    assert sorted(map(str, ray_report.skipped)) == sorted(map(str, local_report.skipped))
    assert_same_stores(tmp_path / "local", tmp_path / "ray")

    write_manifest(items, tmp_path / "corpus.jsonl", BatchReport())  # the clips; the bad files are left out
    command = [
        "extract",
        "manifest",
        str(tmp_path / "corpus.jsonl"),
        "--features",
        ",".join(specs),
        "--store",
        str(tmp_path / "ray"),
        "--engine",
        "ray",
        "--actors",
        "2",
    ]
    again = CliRunner().invoke(app, command, env={"COLUMNS": "200"})
    assert again.exit_code == 0, again.output
    for extractor in ("logmel", "glove-50d"):  # computed, cached, skipped
        assert re.search(rf"│ {extractor}\s+│ 0\s+│ 24\s+│ 0\s+│", again.output), again.output


def test_transcripts_made_on_ray_feed_the_text_features(cluster, clips, tmp_path):
    """With ASR, the actors transcribe (packaged Whisper tiny.en) and the text step reads
    what they wrote."""
    items = [Utterance(id=clip.stem, audio=str(clip), label="neutral", speaker=clip.parent.name) for clip in clips[:4]]
    local = extract_corpus(items, ["glove-50d"], tmp_path / "local", asr=WhisperASR(cpu_threads=1), progress=False)
    distributed = extract_corpus_on_ray(
        items, ["glove-50d"], tmp_path / "ray", asr=WhisperASR(), actors=2, progress=False
    )
    assert [count.line() for count in distributed.stores] == [count.line() for count in local.stores]
    assert [count.computed for count in local.stores] == [4, 4]  # glove vectors of the 4 transcripts, and those
    assert_same_stores(tmp_path / "local", tmp_path / "ray")


def actor_pids(kind: str) -> list[int]:
    """Processes of this test's Ray cluster running an actor of class ``kind`` (Ray titles a
    worker process ``ray::<actor>``), found among this process's descendants only."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if entry.name.isdigit() and title.startswith("ray::") and kind in title and descends_from_us(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def descends_from_us(pid: int) -> bool:
    while pid > 1:
        try:
            pid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return False
        if pid == os.getpid():
            return True
    return False


class WorkerKiller(threading.Thread):
    """Kills one actor of class ``kind`` with SIGKILL once ``progress()`` says some but not all
    of the ``total`` items are done: a worker dying mid-run."""

    def __init__(self, kind: str, progress: Callable[[], int], total: int):
        super().__init__(daemon=True)
        self.kind, self.progress, self.total = kind, progress, total
        self.killed: tuple[int, int] | None = None  # (pid, items done when it was killed)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and self.killed is None:
            done = self.progress()
            pids = actor_pids(self.kind)
            if 0 < done < self.total and pids:
                os.kill(pids[0], signal.SIGKILL)
                self.killed = (pids[0], done)
            time.sleep(0.02)

    def __enter__(self) -> WorkerKiller:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self.join()


def test_extraction_survives_a_killed_worker(cluster, clips, tmp_path):
    items = utterances(clips, not_audio(tmp_path))
    extract_corpus(items, ["egemaps"], tmp_path / "local", batch_size=2, progress=False)
    (shards,) = (store.directory / SHARDS_DIR for store in open_stores(tmp_path / "local"))

    def stored() -> int:
        folder = tmp_path / "ray" / shards.parent.name / SHARDS_DIR
        return len(list(folder.glob("[!.]*.h5"))) if folder.is_dir() else 0

    report = BatchReport()
    with WorkerKiller("_AudioWorker", stored, total=12) as killer:
        summary = extract_corpus_on_ray(
            items, ["egemaps"], tmp_path / "ray", actors=2, batch_size=2, report=report, progress=False
        )
    assert killer.killed is not None, "the run ended before a worker could be killed"
    assert summary.stores[0].line().endswith("24 computed, 0 cached, 2 skipped")
    assert report.done == 24
    assert_same_stores(tmp_path / "local", tmp_path / "ray")


def save_model(directory: Path, features: str, dims: int, protocol: str = UTTERANCE_LEVEL) -> Path:
    """A tiny ROI-attention checkpoint reading ``features`` (``dims`` wide) pooled by 4."""
    torch.manual_seed(0)
    model = build_model(
        "roi_attention",
        num_classes=len(RAVDESS_8.classes),
        input_dims={"audio": dims},
        lstm_hidden=8,
        lstm_layers=1,
        attention_dim=8,
        projection_dim=16,
    )
    inputs = {"audio": InputSpec(features, frame_pooling=4)}
    return Checkpoint(model, RAVDESS_8.classes, inputs, protocol).save(directory)


def predict_command(inputs: list[Path], model: Path, output: Path, *options: str) -> str:
    result = CliRunner().invoke(
        app, ["predict", *map(str, inputs), "--model", str(model), "-o", str(output), "--format", "json", *options]
    )
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("protocol", [UTTERANCE_LEVEL, SPEAKER_ADAPTIVE])
def test_prediction_on_ray_writes_the_local_document(cluster, clips, tmp_path, protocol):
    model = save_model(tmp_path / "model", "logmel:bins=16", 16, protocol)
    inputs = [*clips[:4], not_audio(tmp_path), *clips[4:], tmp_path / "missing.flac"]
    adapt = ["--adapt-speaker"] if protocol == SPEAKER_ADAPTIVE else []
    predict_command(inputs, model, tmp_path / "local.json", *adapt)
    said = predict_command(inputs, model, tmp_path / "ray.json", *adapt, "--engine", "ray", "--actors", "2")

    assert (tmp_path / "ray.json").read_bytes() == (tmp_path / "local.json").read_bytes()
    document = json.loads((tmp_path / "ray.json").read_text())
    assert len(document["predictions"]) == 24
    assert {p["protocol"] for p in document["predictions"]} == {protocol}
    assert "24 done, 2 skipped" in said
    assert not (tmp_path / f"ray.json{PARTS_SUFFIX}").exists()


def test_prediction_survives_a_killed_worker(cluster, clips, tmp_path):
    model = save_model(tmp_path / "model", "egemaps", 25)  # eGeMAPS: slow enough to be killed midway
    inputs = [*clips, not_audio(tmp_path)]
    predict_command(inputs, model, tmp_path / "local.json")
    parts = tmp_path / f"ray.json{PARTS_SUFFIX}"

    def predicted() -> int:
        return len(list(parts.glob("[!.]*.json"))) - 1 if parts.is_dir() else 0  # less job.json

    with WorkerKiller("_PredictWorker", predicted, total=len(inputs)) as killer:
        report = BatchReport()
        count = predict_files_on_ray(
            str(model), {None: inputs}, tmp_path / "ray.json", report=report, actors=2, batch_size=2, progress=False
        )
    assert killer.killed is not None, "the run ended before a worker could be killed"
    assert count == 24 and report.done == 24 and len(report.skipped) == 1
    assert (tmp_path / "ray.json").read_bytes() == (tmp_path / "local.json").read_bytes()
    assert not parts.exists()


def test_a_restarted_prediction_keeps_finished_parts(cluster, clips, tmp_path):
    """Parts left by a killed job are used as they are; a part whose file changed since is redone."""
    import pyarrow.parquet as pq

    model = save_model(tmp_path / "model", "logmel:bins=16", 16)
    inputs = [tmp_path / clip.name for clip in clips[:6]]
    for clip, copy in zip(clips, inputs):
        copy.write_bytes(clip.read_bytes())
    output = tmp_path / "results.parquet"
    predict_command(inputs, model, tmp_path / "local.json")
    local = json.loads((tmp_path / "local.json").read_text())["predictions"]

    parts = ResultParts.for_job(output, prediction_job(str(model), asr=False))
    kept, stale = (Item(index, str(path), None, None) for index, path in enumerate(inputs[:2]))
    parts.write(kept, file_state(kept.path), {**local[0], "label": "kept"}, [])
    parts.write(stale, file_state(stale.path), {**local[1], "label": "stale"}, [])
    os.utime(stale.path, ns=(time.time_ns(), time.time_ns()))  # the file changed after its part was written

    report = BatchReport()
    count = predict_files_on_ray(
        str(model), {None: inputs}, output, output_format="parquet", report=report, actors=1, progress=False
    )
    table = pq.read_table(output)
    rows = table.to_pylist()
    assert count == len(rows) == 6 and report.done == 6
    assert [row["source"] for row in rows] == [str(path) for path in inputs]
    assert [row["label"] for row in rows] == ["kept", *(p["label"] for p in local[1:])]
    assert dict(rows[2]["probabilities"]) == local[2]["probabilities"]
    assert rows[2]["dynamics"]["attention"] == local[2]["dynamics"]["attention"]
    assert json.loads(pq.read_metadata(output).metadata[b"emotrace.skipped"]) == []
    assert not parts.directory.exists()


def test_parts_of_another_job_are_not_mixed_in(tmp_path):
    ResultParts.for_job(tmp_path / "out.json", {"model": "a"})
    with pytest.raises(EmotraceError, match="another job"):
        ResultParts.for_job(tmp_path / "out.json", {"model": "b"})


def test_missing_ray_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(EmotraceError, match=r"pip install 'emotrace\[ray\]'"):
        require_ray()


def test_parts_without_speech_assemble_as_the_local_document_and_a_parquet_row(tmp_path):
    """A no-speech result needs no cluster to check: its part becomes the local JSON (strict) and a row."""
    import pyarrow.parquet as pq

    beep = tmp_path / "beep.wav"
    beep.write_bytes(b"a beep")
    silent = NoSpeech(str(beep), 2.0, 0.0, 0.25)
    item = Item(0, str(beep), None, None)
    for output_format in ("json", "parquet"):
        output = tmp_path / f"out.{output_format}"
        parts = ResultParts.for_job(output, {"model": "m"})
        parts.write(item, file_state(item.path), silent.to_dict(), [])
        assert write_results(output, output_format, parts, [item], BatchReport()) == 1
    local = render([silent], BatchReport(), RAVDESS_8, OutputFormat.json)
    assert (tmp_path / "out.json").read_text() == local
    report = BatchReport()
    report.done = 1
    summary = batch_summary(report, no_speech_notices(parts, [item]))  # as `--engine ray` prints it
    assert summary == BatchPredictions([silent], report).summary()
    assert summary.endswith(f"{beep}: {silent.describe()}")
    (row,) = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert (row["source"], row["label"], row["probabilities"], row["protocol"]) == (str(beep), "no speech", None, None)

    output = tmp_path / "nan.json"
    parts = ResultParts.for_job(output, {"model": "m"})
    parts.write(item, file_state(item.path), {**silent.to_dict(), "duration": float("nan")}, [])
    with pytest.raises(EmotraceError, match=rf"^{re.escape(str(beep))}: .*NaN.*nothing was written$") as raised:
        write_results(output, "json", parts, [item], BatchReport())
    assert "\n" not in str(raised.value)
    assert not output.exists()
