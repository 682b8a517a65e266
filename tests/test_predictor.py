"""Predictor and load_model: tiny checkpoints on real extractors, fed the way training feeds."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from emotrace import api
from emotrace.api import available_models, load_model, predict_files, resolve_model
from emotrace.audio import SAMPLE_RATE, load_audio
from emotrace.checkpoint import Checkpoint, load_checkpoint
from emotrace.errors import BatchReport, InputError
from emotrace.features.base import Features
from emotrace.features.registry import get_extractor
from emotrace.features.transforms import InputSpec, model_frames, select_layers
from emotrace.inference import predictor as predictor_module
from emotrace.inference.batch import predict_batch
from emotrace.inference.predictor import (
    Prediction,
    Predictor,
    RecordingPrediction,
)
from emotrace.labels import RAVDESS_8
from emotrace.models import build_model
from emotrace.protocols import SPEAKER_ADAPTIVE, UTTERANCE_LEVEL, ProtocolError
from emotrace.training.data import collate

pytestmark = pytest.mark.usefixtures("torch_single_thread")

LABELS = RAVDESS_8.classes
AUDIO = "logmel:bins=16"  # 100 Hz, no weights to load
POOLING = 4  # -> 25 Hz
GAPS = (1.5, 2.0, 3.0, 1.5)  # silences of the long recording: before, between and after clips
REPEATS = 8  # the three clips, eight times over: about two and a half minutes
TOLERANCE = 0.4  # seconds between a speech segment's boundary and its clip's edge


def save_roi(directory: Path, protocol: str = UTTERANCE_LEVEL, seed: int = 0, **spec) -> Path:
    """A tiny ROI-attention checkpoint reading 16 log-mel bins pooled to 25 Hz."""
    torch.manual_seed(seed)
    layers = len(spec.get("layers") or (0,))
    model = build_model(
        "roi_attention",
        num_classes=len(LABELS),
        input_dims={"audio": 16},
        num_layers_in={"audio": layers},
        lstm_hidden=8,
        lstm_layers=1,
        attention_dim=8,
        projection_dim=16,
    )
    inputs = {"audio": InputSpec(spec.pop("features", AUDIO), frame_pooling=POOLING, **spec)}
    return Checkpoint(model, LABELS, inputs, protocol).save(directory)


def save_fusion(directory: Path, name: str = "query_fusion") -> Path:
    """A tiny two-modality checkpoint: log-mel audio and GloVe 50-d words."""
    torch.manual_seed(0)
    if name == "query_fusion":
        sizes = {"projection_dim": 16, "num_heads": 2, "encoder_layers": 1, "decoder_layers": 1, "feedforward_dim": 32}
    else:
        sizes = {"lstm_hidden": 8, "lstm_layers": 1, "projection_dim": 16}
    model = build_model(name, num_classes=len(LABELS), input_dims={"audio": 16, "text": 50}, **sizes)
    inputs = {"audio": InputSpec(AUDIO, frame_pooling=POOLING), "text": InputSpec("glove-50d")}
    return Checkpoint(model, LABELS, inputs, UTTERANCE_LEVEL).save(directory)


def speech_span(audio: np.ndarray) -> tuple[float, float]:
    """Where a clip's speech lies (seconds), by energy: 20 ms frames within 35 dB of the loudest."""
    frames = audio[: len(audio) // 320 * 320].reshape(-1, 320)
    level = 10 * np.log10((frames**2).mean(1) + 1e-12)
    loud = np.flatnonzero(level > level.max() - 35)
    return loud[0] * 0.02, (loud[-1] + 1) * 0.02


def long_recording(clips: list[Path], path: Path) -> list[tuple[float, float]]:
    """Write the clips, ``REPEATS`` times over, with silences between them over faint noise;
    return where each clip's speech lies (seconds)."""
    placed, pieces, position = [], [], 0.0
    audios = [load_audio(clip) for clip in clips] * REPEATS
    gaps = [GAPS[0]] + [GAPS[1 + i % 2] for i in range(len(audios) - 1)] + [GAPS[-1]]
    for gap, audio in zip(gaps, audios):
        pieces += [np.zeros(round(gap * SAMPLE_RATE), np.float32), audio]
        position += gap
        start, end = speech_span(audio)
        placed.append((position + start, position + end))
        position += len(audio) / SAMPLE_RATE
    pieces.append(np.zeros(round(gaps[-1] * SAMPLE_RATE), np.float32))
    audio = np.concatenate(pieces)
    audio += 1e-4 * np.random.default_rng(0).standard_normal(len(audio)).astype(np.float32)
    sf.write(path, audio, SAMPLE_RATE)
    return placed


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    save_roi(root / "roi")
    save_roi(root / "roi-adaptive", SPEAKER_ADAPTIVE, seed=1)
    save_fusion(root / "fusion")
    return root


@pytest.fixture(scope="module")
def roi(models) -> Predictor:
    return load_model(models / "roi")


def training_probabilities(checkpoint: Checkpoint, features: Features, moments=None) -> np.ndarray:
    """What the training code's batches give the model for one utterance."""
    spec = checkpoint.inputs["audio"]
    frames = torch.from_numpy(model_frames(features, spec, moments))
    batch = collate([{"audio": frames, "label": 0}], {"audio": checkpoint.model.config.layers_in("audio") > 1})
    batch.pop("labels")
    with torch.no_grad():
        return checkpoint.model(**batch).probabilities[0].numpy()


def test_prediction_of_a_file_is_complete_and_consistent(roi, fixture_clips):
    for clip in fixture_clips:
        prediction = roi.predict(clip)
        assert isinstance(prediction, Prediction)
        assert prediction.source == str(clip) and prediction.start == 0.0
        assert prediction.duration == pytest.approx(sf.info(clip).duration, abs=1e-3)
        assert list(prediction.probabilities) == list(LABELS)
        assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert prediction.label == max(prediction.probabilities, key=prediction.probabilities.get)
        assert prediction.protocol == UTTERANCE_LEVEL and prediction.modalities == {"audio": True}
        assert prediction.transcript is None and prediction.transcript_source is None

        frames = math.ceil((1 + len(load_audio(clip)) // 160) / POOLING)
        assert prediction.frame_rate == 100 / POOLING
        assert prediction.attention.shape == (frames,)
        assert prediction.attention.sum() == pytest.approx(1.0, abs=1e-5)
        assert prediction.frame_posteriors.shape == (frames, len(LABELS))
        np.testing.assert_allclose(prediction.frame_posteriors.sum(1), 1.0, atol=1e-5)
        np.testing.assert_allclose(prediction.frame_times, (np.arange(frames) + 0.5) / 25)
        assert sum(prediction.mixture.values()) == pytest.approx(1.0, abs=1e-5)
        assert prediction.segments
        for region in prediction.segments:
            assert 0.0 <= region.start < region.end <= frames / 25 and 0.0 < region.mass <= 1.0

        document = json.loads(json.dumps(prediction.to_dict()))
        assert document["label"] == prediction.label and document["protocol"] == UTTERANCE_LEVEL
        assert len(document["dynamics"]["frame_posteriors"]) == frames
        assert len(document["segments"]) == len(prediction.segments)


def test_an_array_gives_what_its_file_gives(roi, fixture_clips):
    from_file = roi.predict(fixture_clips[0])
    from_array = roi.predict(load_audio(fixture_clips[0]))
    assert from_array.source == "<array>"
    assert from_array.probabilities == pytest.approx(from_file.probabilities)
    np.testing.assert_allclose(from_array.attention, from_file.attention)


def test_inputs_match_the_training_batches(roi, fixture_clips):
    checkpoint = roi.checkpoints[UTTERANCE_LEVEL]
    (features,) = get_extractor(AUDIO).extract([load_audio(fixture_clips[1])])
    expected = training_probabilities(checkpoint, features)
    predicted = roi.predict(fixture_clips[1]).probabilities
    np.testing.assert_allclose([predicted[label] for label in LABELS], expected, atol=1e-6)


class TwoLayers:
    """Log-mel frames as two 'encoder layers' (the second halved): the stacked input path."""

    def __init__(self) -> None:
        self.logmel = get_extractor(AUDIO)

    def extract(self, inputs):
        return [
            Features(np.concatenate([f.data, 0.5 * f.data]), f.frame_rate, layers=(0, 1))
            for f in self.logmel.extract(inputs)
        ]


def test_stacked_layers_reach_the_model_as_layers(tmp_path, monkeypatch, fixture_clips):
    checkpoint = load_checkpoint(save_roi(tmp_path / "stacked", features="two-layers", layers=(0, 1)))
    monkeypatch.setattr(predictor_module, "get_extractor", lambda spec: TwoLayers())
    prediction = Predictor(checkpoint).predict(fixture_clips[0])
    (features,) = TwoLayers().extract([load_audio(fixture_clips[0])])
    expected = training_probabilities(checkpoint, features)
    np.testing.assert_allclose([prediction.probabilities[label] for label in LABELS], expected, atol=1e-6)


@pytest.mark.parametrize(
    "precision, native, runs",
    [
        ("auto", True, "bfloat16"),
        ("auto", False, "float32"),
        ("float32", True, "float32"),
        ("bfloat16", False, "bfloat16"),
    ],
)
def test_the_encoder_runs_at_the_precision_asked_for(tmp_path, monkeypatch, fixture_clips, precision, native, runs):
    from emotrace.features import precision as precision_module

    folder = save_roi(tmp_path / "whisper", features="whisper-base", layers=(0, 1))
    built = []
    monkeypatch.setattr(precision_module, "native_bfloat16", lambda: native)
    monkeypatch.setattr(predictor_module, "get_extractor", lambda spec: built.append(spec) or TwoLayers())
    load_model(folder, precision=precision).predict(fixture_clips[0])
    assert built == [f"whisper-base:layers=0,1:precision={runs}"]


def test_an_unknown_precision_is_refused_before_any_work(models):
    with pytest.raises(ValueError, match="precision must be one of auto, float32, bfloat16"):
        load_model(models / "roi", precision="half")


def test_extractors_are_built_once(models, monkeypatch, fixture_clips):
    built = []
    monkeypatch.setattr(predictor_module, "get_extractor", lambda spec: built.append(spec) or get_extractor(spec))
    predictor = load_model(models / "roi", adaptive=models / "roi-adaptive")
    assert built == []  # lazily
    moments = predictor.speaker_moments_for(fixture_clips[:2])
    predictor.predict(fixture_clips[0])
    predictor.predict(fixture_clips[0], speaker_moments=moments)
    assert built == [AUDIO]


def test_bad_and_long_inputs_are_one_line_errors(roi, tmp_path, write_tone):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really audio")
    with pytest.raises(InputError, match=r"broken\.wav"):
        roi.predict(broken)
    with pytest.raises(InputError, match=r"long\.wav: is 31\.0 s long.*predict_recording"):
        roi.predict(write_tone("long.wav", seconds=31.0))
    with pytest.raises(InputError, match=r"<array>: is 31\.0 s long"):
        roi.predict(np.full(31 * SAMPLE_RATE, 0.1, np.float32))
    with pytest.raises(InputError, match="<array>: expected a mono waveform"):
        roi.predict(np.zeros((2, SAMPLE_RATE), np.float32))


def test_speaker_adaptation_uses_the_adaptive_model_and_says_so(models, fixture_clips):
    predictor = load_model(models / "roi", adaptive=models / "roi-adaptive")
    assert predictor.protocols == (UTTERANCE_LEVEL, SPEAKER_ADAPTIVE)
    moments = predictor.speaker_moments_for(fixture_clips)
    extractor = get_extractor(AUDIO)
    frames = [extractor.extract([load_audio(clip)])[0] for clip in fixture_clips]
    assert set(moments) == {"audio"} and moments["audio"].recordings == 3
    assert moments["audio"].frames == sum(f.data.shape[1] for f in frames)  # unpooled, as in training
    every_frame = np.concatenate([select_layers(f, None)[0] for f in frames])
    np.testing.assert_allclose(moments["audio"].mean[0], every_frame.mean(0), rtol=1e-4)

    adapted = predictor.predict(fixture_clips[0], speaker_moments=moments)
    plain = predictor.predict(fixture_clips[0])
    assert (adapted.protocol, plain.protocol) == (SPEAKER_ADAPTIVE, UTTERANCE_LEVEL)
    expected = training_probabilities(predictor.checkpoints[SPEAKER_ADAPTIVE], frames[0], moments["audio"])
    np.testing.assert_allclose([adapted.probabilities[label] for label in LABELS], expected, atol=1e-6)

    one_speaker = {clip: "anna" for clip in fixture_clips}
    predictions = predict_files(fixture_clips, predictor, adapt_speaker=True, speakers=one_speaker).results
    assert [p.protocol for p in predictions] == [SPEAKER_ADAPTIVE] * 3
    assert predictions[0].probabilities == pytest.approx(adapted.probabilities)


def test_protocol_mismatches_are_clear(models, fixture_clips):
    utterance_only = load_model(models / "roi")
    with pytest.raises(ProtocolError, match="no speaker-adaptive variant"):
        utterance_only.speaker_moments_for(fixture_clips)
    adaptive_only = load_model(models / "roi-adaptive")
    with pytest.raises(ProtocolError, match="needs the speaker's moments"):
        adaptive_only.predict(fixture_clips[0])
    with pytest.raises(ValueError, match="companion"):
        load_model(models / "roi-adaptive", adaptive=models / "roi-adaptive")


def test_a_bad_recording_of_a_speaker_is_reported_once(models, fixture_clips, tmp_path):
    broken = tmp_path / "broken.flac"
    broken.write_bytes(b"fLaC but no more")
    predictor = load_model(models / "roi-adaptive")
    one_speaker = {path.resolve(): "anna" for path in [*fixture_clips, broken]}
    report = BatchReport()
    batch = predict_batch(
        predictor, [*fixture_clips[:2], broken], adapt_speaker=True, speakers=one_speaker, report=report
    )
    assert len(batch.results) == 2 and report.done == 2
    assert [error.source for error in report.skipped] == [str(broken)]
    with pytest.raises(InputError, match=r"broken\.flac"):
        predict_batch(
            predictor,
            [fixture_clips[0], broken],
            adapt_speaker=True,
            speakers=one_speaker,
            report=BatchReport(strict=True),
        )


def test_query_fusion_reads_text_when_there_is_some(models, fixture_clips):
    predictor = load_model(models / "fusion")
    with_text = predictor.predict(fixture_clips[0], "Kids are talking by the door")
    assert with_text.modalities == {"audio": True, "text": True}
    assert (with_text.transcript, with_text.transcript_source) == ("Kids are talking by the door", "given")
    without = predictor.predict(fixture_clips[0])
    assert without.modalities == {"audio": True, "text": False} and without.transcript is None
    assert without.probabilities != pytest.approx(with_text.probabilities)
    for prediction in (with_text, without):  # the predicted class's query over the audio
        assert prediction.mixture is None and prediction.frame_posteriors is None
        assert prediction.attention.sum() == pytest.approx(1.0, abs=1e-5)
        assert all(0 <= r.start < r.end <= prediction.duration + 0.05 for r in prediction.segments)


def test_asr_supplies_the_transcript(models, fixture_clips):
    predictor = load_model(models / "fusion", asr=True)
    prediction = predictor.predict(fixture_clips[0])
    assert prediction.transcript_source == "asr" and "door" in prediction.transcript.lower()
    assert prediction.modalities == {"audio": True, "text": True}
    audio_only = load_model(models / "roi", asr=True).predict(fixture_clips[0])
    assert audio_only.transcript is None  # a model that reads no text is not given one


def test_a_model_that_needs_text_says_so(tmp_path, fixture_clips):
    predictor = Predictor(load_checkpoint(save_fusion(tmp_path / "late", "late_fusion")))
    with pytest.raises(InputError, match="needs a transcript"):
        predictor.predict(fixture_clips[0])
    assert predictor.predict(fixture_clips[0], "Dogs are sitting by the door").modalities == {
        "audio": True,
        "text": True,
    }


def test_long_recordings_are_predicted_by_speech_segment(roi, fixture_clips, tmp_path):
    path = tmp_path / "recording.flac"
    placed = long_recording(fixture_clips, path)
    recording = roi.predict_recording(path)
    assert isinstance(recording, RecordingPrediction)
    assert recording.duration == pytest.approx(sf.info(path).duration)
    assert len(recording.timeline) == len(placed)
    for segment, (start, end) in zip(recording.timeline, placed):
        assert segment.start == pytest.approx(start, abs=TOLERANCE)
        assert segment.end == pytest.approx(end, abs=TOLERANCE)
        assert segment.source == str(path) and segment.protocol == UTTERANCE_LEVEL
        assert segment.start <= segment.frame_times[0] < segment.frame_times[-1] <= segment.end + 0.04
        assert all(segment.start <= r.start < r.end <= segment.end + 0.05 for r in segment.segments)
    assert sum(recording.shares.values()) == pytest.approx(1.0)
    assert recording.label == max(recording.shares, key=recording.shares.get)
    document = json.loads(json.dumps(recording.to_dict()))
    assert len(document["timeline"]) == len(placed) and document["protocol"] == UTTERANCE_LEVEL


def test_load_model_by_name_brings_the_adaptive_twin(models, monkeypatch, tmp_path):
    monkeypatch.setattr(api, "PRETRAINED", models)
    predictor = load_model("roi")
    assert predictor.protocols == (UTTERANCE_LEVEL, SPEAKER_ADAPTIVE)
    assert load_model("fusion").protocols == (UTTERANCE_LEVEL,)
    assert [info.name for info in available_models()] == ["fusion", "roi", "roi-adaptive"]
    with pytest.raises(InputError, match=r"no-such-model: .*available: fusion, roi, roi-adaptive"):
        load_model("no-such-model")
    monkeypatch.setattr(api, "PRETRAINED", tmp_path / "none")
    with pytest.raises(InputError, match="none installed"):
        load_model()


def test_a_run_folder_gives_its_final_model_else_its_best_fold(models, tmp_path):
    run = tmp_path / "run"
    for fold, ua in (("fold1", 40.0), ("fold2", 55.5), ("fold3", 50.0)):
        save_roi(run / "folds" / fold / "model", seed=int(ua))
        (run / "folds" / fold / "metrics.json").write_text(json.dumps({"ua": ua, "wa": ua + 1}))
    assert resolve_model(run) == run / "folds" / "fold2" / "model"
    save_roi(run / "model")
    assert resolve_model(run) == run / "model"
    assert load_model(run).protocols == (UTTERANCE_LEVEL,)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: is not a model"):
        load_model(tmp_path / "empty")


def test_load_model_is_exported_without_making_import_emotrace_heavy():
    import emotrace

    assert emotrace.load_model is load_model
    subprocess.run([sys.executable, "-c", "import sys, emotrace; assert 'torch' not in sys.modules"], check=True)
