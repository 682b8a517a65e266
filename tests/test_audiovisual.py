"""Videos predicted by an audio model, a face-video model and their fusion (issue 16, item 6):
on a real CREMA-D clip, and on clips built here with a real face (or none), with audio (or
none); through the Python API, ``emotrace predict`` and the service.

The models are tiny and untrained, built here: what is checked is that every stream gets
exactly what its model alone would give, that the fusion and the comparison are computed
from them, and that what could not be used is said.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from emotrace.api import load_audiovisual, load_model, predict_files
from emotrace.audio import SAMPLE_RATE, load_audio
from emotrace.checkpoint import Checkpoint, load_checkpoint
from emotrace.cli import app
from emotrace.errors import BatchReport, InputError
from emotrace.features.registry import get_extractor
from emotrace.features.transforms import InputSpec, model_frames
from emotrace.features.video.reader import VideoClip
from emotrace.inference.audiovisual import AudioVisualPredictor, late_fusion
from emotrace.inference.media import MissingStreamError
from emotrace.inference.plots import write_plot
from emotrace.inference.predictions import NO_SPEECH, AudioVisualPrediction, NoSpeech, RecordingPrediction
from emotrace.inference.predictor import Predictor
from emotrace.inference.roi_compare import AttentionCurve, compare_clip
from emotrace.inference.writers import OutputFormat, render
from emotrace.labels import CREMAD_6
from emotrace.models import build_model
from emotrace.protocols import SPEAKER_ADAPTIVE, UTTERANCE_LEVEL, ProtocolError
from emotrace.spans import Span
from test_predictor import save_roi
from test_video_reader import face_clip, scene, tone, write_video

pytestmark = pytest.mark.usefixtures("torch_single_thread")

LABELS = CREMAD_6.classes
AUDIO = InputSpec("logmel:bins=16", frame_pooling=4)  # 25 Hz
FACE = InputSpec("face:rate=15")  # 15 Hz: the tests track faces at half the default rate
NO_FACE = "no face found in 100 % of video frames (a face is needed in 50 %)"
runner = CliRunner()


def tiny(modalities: tuple[str, ...], seed: int, name: str = "roi_attention") -> torch.nn.Module:
    torch.manual_seed(seed)
    dims = {"audio": 16, "video": 39}
    sizes = (
        {"lstm_hidden": 8, "lstm_layers": 1, "attention_dim": 8, "projection_dim": 16}
        if name == "roi_attention"
        else {"projection_dim": 16, "num_heads": 2, "encoder_layers": 1, "decoder_layers": 1, "feedforward_dim": 32}
    )
    return build_model(
        name, num_classes=len(LABELS), input_dims={m: dims[m] for m in modalities}, modalities=modalities, **sizes
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """Method A on log-mel audio and on the face, its speaker-adaptive face twin, and method B on both."""
    root = tmp_path_factory.mktemp("models")
    Checkpoint(tiny(("audio",), 0), LABELS, {"audio": AUDIO}, UTTERANCE_LEVEL).save(root / "audio")
    Checkpoint(tiny(("audio",), 4), LABELS, {"audio": AUDIO}, SPEAKER_ADAPTIVE).save(root / "audio-adaptive")
    Checkpoint(tiny(("video",), 1), LABELS, {"video": FACE}, UTTERANCE_LEVEL).save(root / "video")
    Checkpoint(tiny(("video",), 2), LABELS, {"video": FACE}, SPEAKER_ADAPTIVE).save(root / "video-adaptive")
    Checkpoint(
        tiny(("audio", "video"), 3, "query_fusion"), LABELS, {"audio": AUDIO, "video": FACE}, UTTERANCE_LEVEL
    ).save(root / "fusion")
    return root


@pytest.fixture(scope="module")
def cremad(shared_data: Path) -> list[Path]:
    found = sorted((shared_data / "cremad-video").glob("*.flv"))
    if len(found) != 6:
        pytest.skip(f"the six CREMA-D clips are not in {shared_data / 'cremad-video'}")
    return found


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """1.6 s clips: the fixture face with a tone, a scene without a face, the face without an
    audio track, and the face missing from its first ten frames of forty. A tone holds no
    speech: where only the audio is read (no face), tests stand it for a voice with the
    speech check off."""
    root = tmp_path_factory.mktemp("clips")
    faceless, _ = scene(40, faces=())
    moving, _ = scene(40)
    return {
        "talking": face_clip(root / "talking.mp4", frames=40),
        "faceless": write_video(root / "faceless.mp4", faceless, 25, tone(1.6, 22050), 22050),
        "silent": write_video(root / "silent.mp4", moving, 25),
        "partly": face_clip(root / "partly.mp4", frames=40, blank=range(10)),
        "faceless_beep": write_video(root / "faceless_beep.mp4", faceless, 25, tone(1.6, 22050, 1000.0), 22050),
    }


def without_source(prediction) -> dict:
    document = prediction.to_dict()
    del document["source"]
    return document


def video_probabilities(checkpoint: Checkpoint, clip: VideoClip, moments=None) -> np.ndarray:
    """What the face model gives a clip, fed the way training feeds it."""
    (features,) = get_extractor(FACE.features).extract([clip])
    frames = torch.from_numpy(model_frames(features, checkpoint.inputs["video"], moments))
    with torch.no_grad():
        return checkpoint.model(video=frames, video_lengths=torch.tensor([frames.shape[1]])).probabilities[0].numpy()


def test_a_video_gets_the_audio_video_and_fused_results_and_their_comparison(models, cremad, tmp_path):
    clip = cremad[0]
    plots = tmp_path / "plots"
    done = runner.invoke(
        app,
        [
            "predict",
            str(clip),
            "-m",
            str(models / "audio"),
            "--video-model",
            str(models / "video"),
            "--format",
            "json",
            "--plot",
            str(plots),
        ],
    )
    assert done.exit_code == 0, done.output
    (result,) = json.loads(done.stdout)["predictions"]
    assert result["modalities"] == {"audio": True, "video": True} and result["notes"] == []

    # each stream is what its model alone gives
    assert result["audio"] == without_source(load_model(models / "audio").predict(clip))
    video = load_checkpoint(models / "video")
    expected = video_probabilities(video, VideoClip(str(clip)))
    assert [result["video"]["probabilities"][label] for label in LABELS] == pytest.approx(expected, abs=1e-5)
    assert result["video"]["modalities"] == {"video": True} and result["video"]["notes"] == []
    assert len(result["video"]["dynamics"]["times"]) == pytest.approx(result["duration"] * 15, abs=2)

    # late fusion: the renormalised product of the two posteriors, labelled as such
    product = np.array(
        [result["audio"]["probabilities"][label] * result["video"]["probabilities"][label] for label in LABELS]
    )
    assert result["fused"]["method"] == "late" and "product" in result["fused"]["description"]
    assert [result["probabilities"][label] for label in LABELS] == pytest.approx(product / product.sum(), abs=1e-4)
    assert result["fused"]["probabilities"] == result["probabilities"]
    assert result["label"] == max(result["probabilities"], key=result["probabilities"].get)

    # the comparison is roi_compare's, on the two models' attention
    comparison = result["roi_comparison"]
    curves = [
        AttentionCurve(np.array(result[s]["dynamics"]["attention"]), result[s]["dynamics"]["frame_rate"])
        for s in ("audio", "video")
    ]
    agreement = compare_clip(*curves)
    assert comparison["roi_iou"] == pytest.approx(agreement.roi_iou, abs=1e-3)
    assert comparison["pearson"] == pytest.approx(agreement.pearson, abs=1e-3)
    assert comparison["lag"] == pytest.approx(agreement.lag) and abs(comparison["lag"]) <= 0.5
    for start, end in comparison["audio_regions"] + comparison["video_regions"]:
        assert 0 <= start < end <= result["end"] + 1e-3

    stem = clip.stem
    assert sorted(path.name for path in plots.iterdir()) == [f"{stem}.png", f"{stem}.roi.png", f"{stem}.video.png"]
    assert all(path.stat().st_size > 10_000 for path in plots.iterdir())


def test_a_fusion_model_gives_the_fused_result(models, cremad):
    clip = cremad[1]
    batch = predict_files(clip, models / "audio", video_model=models / "video", fusion_model=models / "fusion")
    (result,) = batch.results
    assert isinstance(result, AudioVisualPrediction)
    alone = load_model(models / "fusion").predict(clip)  # the fusion model alone reads the file's video too
    assert alone.modalities == {"audio": True, "video": True} and alone.to_dict()["notes"] == []
    document = result.to_dict()
    assert document["fused"]["method"] == "model"
    assert document["fused"]["description"] == "the fusion model (query_fusion) over audio + video"
    assert {key: document["fused"][key] for key in ("label", "probabilities", "modalities", "segments")} == {
        key: alone.to_dict()[key] for key in ("label", "probabilities", "modalities", "segments")
    }
    assert result.label == alone.label and result.probabilities == alone.probabilities
    assert document["roi_comparison"] is not None  # the audio and video models still compared


def test_a_video_without_a_face_is_predicted_from_its_audio_and_says_so(models, clips):
    predictor = load_audiovisual(models / "audio", models / "video", models / "fusion", speech_check=False)
    result = predictor.predict_file(clips["faceless"])
    document = result.to_dict()
    assert document["modalities"] == {"audio": True, "video": False} and document["notes"] == [NO_FACE]
    assert document["video"] is None and document["roi_comparison"] is None
    assert document["audio"] == without_source(load_model(models / "audio").predict(clips["faceless"]))
    assert document["fused"]["modalities"] == {"audio": True, "video": False}  # method B went on without the face
    assert document["fused"]["description"] == "the fusion model (query_fusion) over audio"
    assert document["fused"]["notes"] == [NO_FACE]

    late = load_audiovisual(models / "audio", models / "video", speech_check=False).predict_file(clips["faceless"])
    assert late.fusion is None and late.label == late.audio.label and late.probabilities == late.audio.probabilities
    with pytest.raises(MissingStreamError, match=re.escape(f"faceless.mp4: the model needs video ({NO_FACE})")):
        load_model(models / "video").predict(clips["faceless"])


def test_a_beep_in_a_video_without_a_usable_face_is_no_speech(models, clips):
    """The face is found unusable only as a model reads it; what then reads only the beep
    (an audio model, method B without the face) must not label it an emotion."""
    for predictor in (
        load_audiovisual(models / "audio", models / "video", models / "fusion"),
        load_audiovisual(models / "audio", models / "video"),
        load_audiovisual(None, models / "video", models / "fusion"),
    ):
        for name in ("faceless_beep", "faceless"):
            result = predictor.predict_file(clips[name])
            assert isinstance(result, NoSpeech) and result.label == NO_SPEECH, (name, list(predictor.models))
            assert result.duration == pytest.approx(1.6, abs=0.1)
        talking = predictor.predict_file(clips["talking"])  # the same tone with a face: the face carries it
        assert isinstance(talking, AudioVisualPrediction) and talking.modalities["video"]
    batch = predict_files([clips["faceless_beep"]], models / "audio", video_model=models / "video")
    assert [r.label for r in batch.results] == [NO_SPEECH] and not batch.report.skipped
    unchecked = load_audiovisual(models / "audio", models / "video", speech_check=False)
    assert isinstance(unchecked.predict_file(clips["faceless_beep"]), AudioVisualPrediction)


def test_a_file_without_speech_adds_nothing_to_the_speakers_moments(models, clips, fixture_clips, tmp_path):
    beep = tmp_path / "beep.wav"
    sf.write(beep, tone(2.0, SAMPLE_RATE, 1000.0), SAMPLE_RATE)
    audio = load_model(models / "audio-adaptive")
    speech = audio.speaker_moments_for(fixture_clips[:2])["audio"]
    with_beep = audio.speaker_moments_for([fixture_clips[0], beep, fixture_clips[1], clips["faceless_beep"]])["audio"]
    assert with_beep.recordings == speech.recordings == 2 and with_beep.frames == speech.frames
    assert np.array_equal(with_beep.mean, speech.mean) and np.array_equal(with_beep.std, speech.std)
    unchecked = load_model(models / "audio-adaptive", speech_check=False)
    assert unchecked.speaker_moments_for([*fixture_clips[:2], beep])["audio"].recordings == 3
    predictor = load_audiovisual(models / "audio-adaptive", models / "video-adaptive", speech_check=False)
    assert [model.speech_check for model in predictor.models.values()] == [False, False]


def test_a_video_without_audio_is_predicted_from_its_face_and_says_so(models, clips, tmp_path):
    plots = tmp_path / "plots"
    done = runner.invoke(
        app,
        [
            "predict",
            str(clips["silent"]),
            "-m",
            str(models / "audio"),
            "--video-model",
            str(models / "video"),
            "--format",
            "json",
            "--plot",
            str(plots),
        ],
    )
    assert done.exit_code == 0, done.output
    (result,) = json.loads(done.stdout)["predictions"]
    assert result["modalities"] == {"audio": False, "video": True} and result["notes"] == ["no audio track"]
    assert result["audio"] is None and result["fused"] is None and result["roi_comparison"] is None
    assert result["label"] == result["video"]["label"] and result["probabilities"] == result["video"]["probabilities"]
    assert result["duration"] == pytest.approx(1.6, abs=0.05)
    assert "no plot for" in done.stderr and "no audio to draw them over" in done.stderr
    with pytest.raises(InputError, match=r"silent\.mp4: has no audio track"):
        load_model(models / "audio").predict(clips["silent"])


def test_an_audio_file_with_a_video_model_is_a_one_line_error(models, fixture_clips, tmp_path):
    clip = fixture_clips[0]
    done = runner.invoke(app, ["predict", str(clip), "-m", str(models / "video")])
    assert done.exit_code == 1 and "Traceback" not in done.output
    assert f"skipped {clip}: the model needs video (no video stream)" in " ".join(done.stderr.split())
    long = tmp_path / "long.wav"
    sf.write(long, np.tile(load_audio(clip), 12), SAMPLE_RATE)  # over 30 s: not cut into segments to fail one by one
    with pytest.raises(MissingStreamError, match=r"long\.wav: the model needs video \(no video stream\)"):
        load_model(models / "video").predict_file(long)
    # with an audio model beside it, the audio is predicted and the missing video said
    result = load_audiovisual(models / "audio", models / "video").predict_file(clip)
    assert result.modalities == {"audio": True, "video": False} and result.notes == ("no video stream",)


def test_a_model_set_folder_predicts_videos_with_its_models(models, clips, tmp_path):
    for role in ("audio", "video"):
        shutil.copytree(models / role, tmp_path / "set" / role)
    done = runner.invoke(app, ["predict", str(clips["talking"]), "-m", str(tmp_path / "set"), "--format", "json"])
    assert done.exit_code == 0, done.output
    (result,) = json.loads(done.stdout)["predictions"]
    assert result["fused"]["method"] == "late" and result["audio"] is not None and result["video"] is not None


def test_a_face_missing_from_some_frames_is_noted_and_the_video_used(models, clips):
    result = load_audiovisual(models / "audio", models / "video").predict_file(clips["partly"])
    assert result.modalities == {"audio": True, "video": True} and result.fusion == "late"
    (note,) = result.notes
    share = int(re.fullmatch(r"no face found in (\d+) % of video frames", note).group(1))
    assert 20 <= share <= 30  # ten of forty frames


def test_csv_and_table_name_each_stream_the_fusion_and_the_notes(models, clips):
    batch = predict_files(
        [clips["talking"], clips["faceless"]], models / "audio", video_model=models / "video", speech_check=False
    )
    rows = render(batch.results, batch.report, LABELS, OutputFormat.csv).splitlines()
    header = rows[0].split(",")
    assert header[-10:] == [
        "modalities",
        "fusion",
        "audio_label",
        "video_label",
        "audio_regions",
        "video_regions",
        "roi_iou",
        "pearson",
        "lag",
        "notes",
    ]
    talking, faceless = (dict(zip(header, row.split(","))) for row in rows[1:])
    assert (talking["modalities"], talking["fusion"], talking["notes"]) == ("audio+video", "late", "")
    assert talking["video_label"] in LABELS and float(talking["pearson"]) <= 1
    assert (faceless["modalities"], faceless["fusion"], faceless["video_label"]) == ("audio", "", "")
    assert faceless["notes"] == NO_FACE
    table = render(batch.results, batch.report, LABELS, OutputFormat.table)
    assert "voice" in table and "face" in table and "not used" in table
    assert "no face found in 100 %" in table and "product of the audio and video" in table


def test_long_videos_are_predicted_by_segment_with_each_segments_video(models, clips, tmp_path):
    predictor = load_audiovisual(models / "audio", models / "video")
    segments = [Span(0.0, 0.8), Span(0.8, 1.6)]
    recording = predictor.predict_recording(clips["talking"], segments=segments)
    assert isinstance(recording, RecordingPrediction) and len(recording.timeline) == 2
    for piece, segment in zip(recording.timeline, segments):
        assert isinstance(piece, AudioVisualPrediction) and piece.start == segment.start
        assert len(piece.video.attention) == pytest.approx(0.8 * 15, abs=1)  # the segment's video only
        assert segment.start < piece.video.frame_times[0] < piece.video.frame_times[-1] < segment.end
        assert piece.comparison is not None and piece.comparison.seconds == pytest.approx(0.8, abs=0.1)
    document = json.loads(json.dumps(recording.to_dict()))
    for piece, segment in zip(document["timeline"], segments):
        for start, end in piece["roi_comparison"]["video_regions"]:
            assert segment.start <= start < end <= segment.end + 1e-3  # in seconds of the file
    assert sum(recording.shares.values()) == pytest.approx(1.0)
    written = write_plot(recording, clips["talking"], tmp_path, LABELS, set(), None)
    assert written.name == "talking.timeline.png" and written.stat().st_size > 10_000


def test_a_speaker_adaptive_face_model_normalises_by_the_speakers_faces(models, clips):
    predictor = Predictor(load_checkpoint(models / "video-adaptive"))
    moments = predictor.speaker_moments_for(
        [clips["talking"], clips["partly"], clips["faceless"]], report=BatchReport()
    )
    assert set(moments) == {"video"} and moments["video"].recordings == 2  # the clip without a face adds nothing
    extractor = get_extractor(FACE.features)
    frames = sum(extractor.extract([VideoClip(str(clips[name]))])[0].data.shape[1] for name in ("talking", "partly"))
    assert moments["video"].frames == frames
    prediction = predictor.predict(clips["talking"], speaker_moments=moments)
    assert prediction.protocol == SPEAKER_ADAPTIVE
    expected = video_probabilities(
        predictor.checkpoints[SPEAKER_ADAPTIVE], VideoClip(str(clips["talking"])), moments["video"]
    )
    assert [prediction.probabilities[label] for label in LABELS] == pytest.approx(expected, abs=1e-5)


def test_audio_and_video_models_adapt_to_the_speaker_each_by_its_own_features(models, clips):
    predictor = load_audiovisual(models / "audio-adaptive", models / "video-adaptive", speech_check=False)
    assert predictor.protocols == (SPEAKER_ADAPTIVE,)
    recordings = [clips["talking"], clips["partly"]]
    batch = predict_files(recordings, predictor, adapt_speaker=True, speakers=dict.fromkeys(recordings, "anna"))
    assert [result.protocol for result in batch.results] == [SPEAKER_ADAPTIVE] * 2
    audio = load_model(models / "audio-adaptive", speech_check=False)
    moments = audio.speaker_moments_for(recordings)
    assert batch.results[0].audio.probabilities == pytest.approx(
        audio.predict(recordings[0], speaker_moments=moments).probabilities
    )
    with pytest.raises(ProtocolError, match="needs the speaker's moments"):
        predictor.predict(recordings[0])


def test_models_that_cannot_go_together_are_refused_in_one_line(models, tmp_path, fixture_clips):
    ravdess = save_roi(tmp_path / "ravdess")  # eight RAVDESS labels
    with pytest.raises(InputError, match="labels .* differ from the audio model's"):
        load_audiovisual(ravdess, models / "video")
    with pytest.raises(InputError, match="the video model does not read video and reads audio"):
        load_audiovisual(models / "audio", models / "audio")
    with pytest.raises(ValueError, match="two or three"):
        AudioVisualPredictor(load_model(models / "audio"))
    done = runner.invoke(
        app, ["predict", str(fixture_clips[0]), "-m", str(ravdess), "--video-model", str(models / "video")]
    )
    assert done.exit_code == 1 and "Traceback" not in done.output and "differ" in done.stderr


def test_late_fusion_is_the_renormalised_product_of_the_posteriors():
    audio = {"angry": 0.5, "happy": 0.3, "sad": 0.2}
    video = {"angry": 0.2, "happy": 0.6, "sad": 0.2}
    fused = late_fusion(audio, video)
    assert list(fused) == list(audio)
    assert fused == pytest.approx({"angry": 0.1 / 0.32, "happy": 0.18 / 0.32, "sad": 0.04 / 0.32})
    certain = late_fusion({"angry": 1.0, "happy": 0.0}, {"angry": 0.0, "happy": 1.0})  # no zero times zero
    assert np.isfinite(list(certain.values())).all() and sum(certain.values()) == pytest.approx(1.0)


def test_the_service_answers_a_video_with_every_stream(models, clips):
    from fastapi.testclient import TestClient

    from emotrace.service import create_app

    with TestClient(create_app(models / "audio", video_model=models / "video")) as client:
        health = client.get("/health").json()
        assert health["reads_video"] is True and health["video_model"] == str(models / "video")
        path = clips["talking"]
        response = client.post("/predict", files={"file": ("my talk.mp4", path.read_bytes())})
    assert response.status_code == 200, response.text
    (result,) = response.json()["predictions"]
    assert result["source"] == "my talk.mp4" and "emotrace-upload" not in response.text
    assert result["modalities"] == {"audio": True, "video": True}
    assert result["audio"]["label"] in LABELS and result["video"]["label"] in LABELS
    assert result["fused"]["method"] == "late" and result["roi_comparison"]["seconds"] > 1


def _luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(first: str, second: str) -> float:
    light, dark = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_the_page_shows_the_streams_the_fusion_and_the_comparison_legibly():
    from importlib.resources import files

    page = files("emotrace.service").joinpath("index.html").read_text(encoding="utf-8")
    for element in ("streams-section", "comparison-section", "comparison-figures", "video-player", "notes"):
        assert f'id="{element}"' in page, element
    for name in ("AUDIO_COLOUR", "VIDEO_COLOUR", "UNIFORM_COLOUR"):  # curves and bands on white: graphics, 3:1
        colour = re.search(rf'const {name} = "(#[0-9A-Fa-f]{{6}})"', page).group(1)
        assert contrast(colour, "#ffffff") >= 3, name
    notice = re.search(r"\.notice \{[^}]*background: (#[0-9a-f]{6})", page).group(1)
    ink = re.search(r"--ink: (#[0-9a-f]{6})", page).group(1)
    muted = re.search(r"--muted: (#[0-9a-f]{6})", page).group(1)
    assert contrast(ink, notice) >= 4.5 and contrast(muted, "#ffffff") >= 4.5  # text, 4.5:1
