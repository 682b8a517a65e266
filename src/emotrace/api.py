"""``emotrace.load_model``: a packaged model by name, or any checkpoint or training run folder;
:func:`load_audiovisual`: an audio model, a face-video model and their fusion together (or a
model set, a folder of them: :func:`model_set`);
:func:`predict_files`: a batch of files, folders and globs, as ``emotrace predict`` runs it.

Packaged models are checkpoint folders in ``emotrace/pretrained/<name>/`` (package data,
so they work offline right after installation). A model trained with the
speaker-adaptive protocol ships beside its utterance-level twin as ``<name>-adaptive``,
and loading ``<name>`` brings both, so the same predictor serves single clips and
speakers with several recordings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emotrace.checkpoint import (
    CONFIG_FILE,
    Checkpoint,
    is_checkpoint,
    load_checkpoint,
)
from emotrace.errors import InputError
from emotrace.features.precision import AUTO_PRECISION
from emotrace.inference.audiovisual import ROLES, AudioVisualPredictor
from emotrace.inference.batch import BatchPredictions, BatchProgress, predict_batch
from emotrace.inference.media import MediaPredictor
from emotrace.inference.predictor import Predictor

PRETRAINED = Path(__file__).resolve().parent / "pretrained"
DEFAULT_MODEL = "multicorpus-whisper-base"
ADAPTIVE_SUFFIX = "-adaptive"


@dataclass(frozen=True)
class ModelInfo:
    """A packaged model as ``emotrace models list`` shows it, read without loading weights.

    ``ua``/``wa`` (percent) come from the checkpoint's info: ``info["metrics"]`` (the fold
    means ``ua_mean`` of a cross-validation, or single figures ``ua``), else ``info["test"]``
    (a fold model's test figures).
    """

    name: str
    path: Path
    labels: tuple[str, ...]
    protocol: str
    ua: float | None
    wa: float | None
    size: int  # bytes on disk


def available_models() -> list[ModelInfo]:
    """The packaged pretrained models, by name."""
    if not PRETRAINED.is_dir():
        return []
    return [_info(folder) for folder in sorted(PRETRAINED.iterdir()) if is_checkpoint(folder)]


def resolve_model(name_or_dir: str | Path) -> Path:
    """The checkpoint folder behind a packaged model name, a checkpoint folder or a run folder.

    A training run folder gives ``RUN/model`` (the final model, trained on all training
    data) when it exists, else the fold model ``RUN/folds/<fold>/model`` whose fold has the
    best UA in ``RUN/folds/<fold>/metrics.json``.
    """
    path = Path(name_or_dir)
    if path.is_dir():
        return path if is_checkpoint(path) else _run_model(path)
    if is_checkpoint(PRETRAINED / str(name_or_dir)):
        return PRETRAINED / str(name_or_dir)
    names = ", ".join(info.name for info in available_models()) or "none installed"
    raise InputError(str(name_or_dir), f"is neither a packaged model (available: {names}) nor a model or run folder")


def load_model(
    name_or_dir: str | Path = DEFAULT_MODEL,
    *,
    adaptive: str | Path | None = None,
    asr: bool = False,
    min_confidence: float | None = None,
    speech_check: bool = True,
    precision: str = AUTO_PRECISION,
) -> Predictor:
    """A :class:`~emotrace.inference.predictor.Predictor` for a model name or folder.

    ``adaptive`` names a speaker-adaptive companion (name or folder); by default a packaged
    model brings its ``<name>-adaptive`` twin when one is packaged. ``asr`` transcribes
    audio for text models when no transcript is given. With ``min_confidence`` a
    prediction whose top probability is below it is labelled ``"uncertain"``. A file
    without speech gets a ``"no speech"`` result, unless ``speech_check`` is off.
    ``precision`` is the encoder's: ``"auto"`` (bfloat16 on a CPU that computes it natively,
    float32 elsewhere), ``"float32"`` (as training computed the features) or ``"bfloat16"``.
    """
    path = resolve_model(name_or_dir)
    twin = PRETRAINED / f"{path.name}{ADAPTIVE_SUFFIX}"
    if adaptive is None and path.parent == PRETRAINED and is_checkpoint(twin):
        adaptive = twin
    companion = None if adaptive is None else _load(resolve_model(adaptive))
    return Predictor(
        _load(path),
        companion,
        asr=asr,
        min_confidence=min_confidence,
        speech_check=speech_check,
        precision=precision,
    )


def load_audiovisual(
    audio: str | Path | None = None,
    video: str | Path | None = None,
    fusion: str | Path | None = None,
    *,
    asr: bool = False,
    min_confidence: float | None = None,
    speech_check: bool = True,
    precision: str = AUTO_PRECISION,
) -> AudioVisualPredictor:
    """Two or three models (names or folders) that predict a video together: ``audio`` reads
    the voice (and a transcript, with ``asr`` transcribed when none is given), ``video`` the
    face, ``fusion`` both (method B); see :mod:`emotrace.inference.audiovisual`. With
    ``min_confidence`` an utterance whose fused top probability is below it is ``"uncertain"``;
    ``speech_check`` and ``precision`` as in :func:`load_model`."""
    models = {
        role: load_model(name, asr=asr, speech_check=speech_check, precision=precision)
        for role, name in (("audio", audio), ("video", video), ("fusion", fusion))
        if name is not None
    }
    try:
        return AudioVisualPredictor(**models, min_confidence=min_confidence, speech_check=speech_check)
    except ValueError as error:
        names = ", ".join(
            f"{role} {name}"
            for role, name in (("audio", audio), ("video", video), ("fusion", fusion))
            if name is not None
        )
        raise InputError(names or "no models", str(error)) from None


def load_predictor(
    model: str | Path | None = None,
    video_model: str | Path | None = None,
    fusion_model: str | Path | None = None,
    *,
    asr: bool = False,
    min_confidence: float | None = None,
    speech_check: bool = True,
    precision: str = AUTO_PRECISION,
) -> MediaPredictor:
    """What ``emotrace predict``, ``emotrace serve`` and :func:`predict_files` run: ``model``
    alone (the default model when none is named; one that reads face video gets it), or with
    a ``video_model`` and/or a ``fusion_model`` all of them together (:func:`load_audiovisual`,
    ``model`` then being the audio model, if any). ``model`` may also be a model set
    (:func:`model_set`). ``min_confidence`` makes less sure predictions abstain; without
    ``speech_check`` a file without speech is predicted all the same; ``precision`` as in
    :func:`load_model`."""
    options: dict[str, Any] = {
        "asr": asr,
        "min_confidence": min_confidence,
        "speech_check": speech_check,
        "precision": precision,
    }
    if video_model is None and fusion_model is None:
        roles = None if model is None else model_set(model)
        if roles is not None:
            return load_audiovisual(**roles, **options)
        return load_model(DEFAULT_MODEL if model is None else model, **options)
    return load_audiovisual(model, video_model, fusion_model, **options)


def model_set(name_or_dir: str | Path) -> dict[str, Path] | None:
    """The models of a model set, by role: a folder (or a packaged name) holding two or three
    of ``audio/``, ``video/`` and ``fusion/``, each a checkpoint or training run folder, that
    predict videos together; None for anything else."""
    path = Path(name_or_dir)
    if not path.is_dir():
        path = PRETRAINED / str(name_or_dir)
    if not path.is_dir() or is_checkpoint(path):
        return None
    roles = {role: path / role for role in ROLES if (path / role).is_dir()}
    return roles if len(roles) >= 2 else None


def predict_files(
    inputs: str | Path | Sequence[str | Path],
    model: str | Path | MediaPredictor | None = DEFAULT_MODEL,
    *,
    video_model: str | Path | None = None,
    fusion_model: str | Path | None = None,
    text: str | None = None,
    transcripts: Mapping[str | Path, str] | None = None,
    adapt_speaker: bool = False,
    speakers: Mapping[str | Path, str] | None = None,
    plot: str | Path | None = None,
    progress: BatchProgress | None = None,
    min_confidence: float | None = None,
    speech_check: bool = True,
) -> BatchPredictions:
    """Predict every file that ``inputs`` name (files, folders searched recursively, globs).

    ``model`` is a name or folder for :func:`load_model`, or a predictor already loaded
    (``load_model(name, asr=True)`` transcribes for models that read text). With a
    ``video_model`` or a ``fusion_model``, ``model`` (may be None) is the audio model and
    each video gets the audio, video and fused predictions and their ROI comparison
    (:func:`load_predictor`).
    ``text`` is the transcript of every file, or ``transcripts`` one per file path. With
    ``adapt_speaker`` each speaker's recordings are normalised together (speaker-adaptive
    protocol); ``speakers`` maps file paths to speakers, else a file's folder names its
    speaker. ``plot`` is a folder for a PNG per result. With ``min_confidence`` (a
    probability) a prediction whose top probability is below it is labelled
    ``"uncertain"`` and says ``"abstained": true``. A file without speech (a beep, silence)
    gets a ``"no speech"`` result (:class:`~emotrace.inference.predictions.NoSpeech`), not an
    emotion, unless ``speech_check`` is off (for a predictor passed in, load it so:
    ``load_model(name, speech_check=False)``). The encoder runs at ``precision="auto"``; pass
    ``load_model(name, precision="float32")`` for another. Bad files are skipped and listed in the
    result's ``report``; ``result.to_dict()`` is ``emotrace predict``'s JSON.
    """
    if isinstance(model, MediaPredictor):
        if not speech_check and model.speech_check:
            raise ValueError("for speech_check=False, load the predictor with it (load_model, load_predictor)")
        predictor = model
    else:
        predictor = load_predictor(model, video_model, fusion_model, speech_check=speech_check)
    return predict_batch(
        predictor,
        [inputs] if isinstance(inputs, (str, Path)) else inputs,
        text=text,
        transcripts=None if transcripts is None else _resolved(transcripts),
        adapt_speaker=adapt_speaker,
        speakers=None if speakers is None else _resolved(speakers),
        plot=None if plot is None else Path(plot),
        progress=progress,
        min_confidence=min_confidence,
    )


def _resolved(by_path: Mapping[str | Path, str]) -> dict[Path, str]:
    return {Path(path).resolve(): value for path, value in by_path.items()}


def _load(path: Path) -> Checkpoint:
    try:
        return load_checkpoint(path)
    except InputError:
        raise
    except (ValueError, KeyError, TypeError) as error:
        raise InputError(path, f"is not a usable checkpoint ({error})") from None


def _run_model(run: Path) -> Path:
    if is_checkpoint(run / "model"):
        return run / "model"
    scored = []
    for fold in sorted((run / "folds").glob("*")):
        metrics_file = fold / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        if is_checkpoint(fold / "model") and "ua" in metrics:
            scored.append((float(metrics["ua"]), fold.name, fold / "model"))
    if not scored:
        raise InputError(
            run,
            "is not a model: no checkpoint (config.json + model.safetensors) here, in model/, "
            "or in folds/<fold>/model/ beside a metrics.json with its test UA",
        )
    return max(scored)[2]


def _info(folder: Path) -> ModelInfo:
    config = json.loads((folder / CONFIG_FILE).read_text())
    info = config.get("info", {})
    metrics = info.get("metrics") or info.get("test") or {}
    return ModelInfo(
        name=folder.name,
        path=folder,
        labels=tuple(config["labels"]),
        protocol=config["protocol"],
        ua=_headline(metrics, "ua"),
        wa=_headline(metrics, "wa"),
        size=sum(file.stat().st_size for file in folder.rglob("*") if file.is_file()),
    )


def _headline(metrics: dict[str, Any], name: str) -> float | None:
    value = metrics.get(f"{name}_mean", metrics.get(name))
    return None if value is None else float(value)
