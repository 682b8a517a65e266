"""Voice and face together: an audio model, a face-video model, their fusion, and where they agree.

An :class:`AudioVisualPredictor` reads each file once, its audio and its video (as
:mod:`emotrace.inference.media` pieces), and gives one
:class:`~emotrace.inference.predictions.AudioVisualPrediction` per utterance (per speech
segment of a long recording) with

- ``audio``: the audio model's prediction (the voice; it may read a transcript too),
- ``video``: the face-video model's prediction,
- the fused label and probabilities: the fusion model's (method B over audio and video)
  when one is given, else **late fusion**, the product of the two models' posteriors
  renormalised, ``p(c) ∝ p_audio(c) · p_video(c)``: Bayes' rule for two streams that are
  independent given the emotion, from models trained on balanced classes,
- ``comparison``: where the audio and the video attention agree (region IoU, Pearson r,
  lag; :mod:`emotrace.inference.roi_compare`), when both models attend over time.

What could not be used is said, never dropped in silence: a file without an audio track
gets a video-only result, a video without a face or a file without a video stream an
audio-only one, and ``modalities`` and ``notes`` say so. Only a file that no model could
read anything from is an InputError.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from emotrace.errors import BatchReport, InputError
from emotrace.features.normalization import Moments
from emotrace.inference.media import MAX_UTTERANCE_SECONDS, Media, MediaPredictor, MissingStreamError, Piece
from emotrace.inference.predictions import (
    LATE_FUSION,
    MODEL_FUSION,
    AudioVisualPrediction,
    Prediction,
    check_min_confidence,
)
from emotrace.inference.predictor import Predictor
from emotrace.inference.roi_compare import AttentionCurve, compare_clip
from emotrace.models.registry import model_name

#: the models of an audio-visual prediction, in the order they read a piece
ROLES: tuple[str, ...] = ("audio", "video", "fusion")
#: what each role's model must read, and must not
_READS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "audio": (("audio",), ("video",)),
    "video": (("video",), ("audio",)),
    "fusion": (("audio", "video"), ()),
}
LATE_FUSION_DESCRIPTION = "product of the audio and video models' posteriors, renormalised"


class AudioVisualPredictor(MediaPredictor):
    """An audio model, a face-video model and a fusion model, any two or all three.

    ``audio`` reads audio (and perhaps text), not video; ``video`` reads the face video,
    not audio; ``fusion`` reads both. All must have the same labels. A ValueError says
    which model breaks which rule. ``min_confidence`` (a probability, None for never) makes
    utterances whose fused result is less sure than it abstain. ``speech_check`` off predicts
    an emotion even for a file without speech or a face to read it from.
    """

    def __init__(
        self,
        audio: Predictor | None = None,
        video: Predictor | None = None,
        fusion: Predictor | None = None,
        *,
        max_duration: float = MAX_UTTERANCE_SECONDS,
        min_confidence: float | None = None,
        speech_check: bool = True,
    ):
        self.models: dict[str, Predictor] = {
            role: model for role, model in zip(ROLES, (audio, video, fusion)) if model is not None
        }
        if len(self.models) < 2:
            raise ValueError("audio-visual prediction takes two or three of an audio, a video and a fusion model")
        first, *others = self.models
        for role, model in self.models.items():
            needs, refuses = _READS[role]
            wrong = [f"does not read {m}" for m in needs if not model.reads(m)]
            wrong += [f"reads {m}" for m in refuses if model.reads(m)]
            if wrong:
                raise ValueError(f"the {role} model {' and '.join(wrong)}")
        for role in others:
            if self.models[role].labels != self.models[first].labels:
                raise ValueError(
                    f"the {role} model's labels ({', '.join(self.models[role].labels)}) differ from the {first} "
                    f"model's ({', '.join(self.models[first].labels)}): fusing them needs the same labels"
                )
        self.labels = self.models[first].labels
        self.max_duration = max_duration
        self.min_confidence = check_min_confidence(min_confidence)
        self.speech_check = speech_check

    @property
    def protocols(self) -> tuple[str, ...]:
        """The protocols every one of its models can run."""
        models = list(self.models.values())
        return tuple(p for p in models[0].protocols if all(p in model.protocols for model in models))

    def reads(self, modality: str) -> bool:
        return any(model.reads(modality) for model in self.models.values())

    def require_protocol(self, adaptive: bool) -> None:
        for model in self.models.values():
            model.require_protocol(adaptive)

    def check_streams(self, media: Media, adaptive: bool) -> None:
        """Nothing: what one model lacks, another may have (the probe refuses a file with neither stream)."""

    def encode_ahead(self, pieces: Sequence[Piece]) -> None:
        """Each model's audio features ahead (:meth:`Predictor.encode_ahead`); the face video is
        read piece by piece, as its tracker follows the face from frame to frame."""
        for model in self.models.values():
            model.encode_ahead(pieces)

    def speaker_moments_for(
        self,
        paths: Sequence[str | Path],
        texts: Sequence[str | None] | None = None,
        *,
        report: BatchReport | None = None,
    ) -> dict[str, dict[str, Moments]]:
        """Each model's speaker moments (its own features), by role; unreadable files go to
        ``report`` once, from the first model."""
        moments = {}
        for number, (role, model) in enumerate(self.models.items()):
            quiet = report if number == 0 else BatchReport(strict=report is None)
            moments[role] = model.speaker_moments_for(paths, texts, report=quiet)
        return moments

    def predict_piece(
        self, piece: Piece, speaker_moments: Mapping[str, Mapping[str, Moments]] | None = None
    ) -> AudioVisualPrediction:
        """Each model's prediction of ``piece`` (those that lack a stream are left out, the
        piece's notes saying why), the fused result, and the comparison of their attention."""
        streams: dict[str, Prediction] = {}
        for role, model in self.models.items():
            moments = None if speaker_moments is None else speaker_moments[role]
            try:
                streams[role] = model.predict_piece(piece, moments)
            except MissingStreamError:
                continue
        if not streams:
            raise InputError(piece.source, "; ".join(dict.fromkeys(piece.notes.values())) or "nothing could be read")
        audio, video, fused = (streams.get(role) for role in ROLES)
        fusion = description = None
        if fused is not None:
            label, probabilities = fused.top_label, fused.probabilities
            read = " + ".join(m for m, used in fused.modalities.items() if used)
            method = model_name(self.models["fusion"].checkpoint_for(speaker_moments is not None).model.config)
            fusion, description = MODEL_FUSION, f"the fusion model ({method}) over {read}"
        elif audio is not None and video is not None:
            probabilities = late_fusion(audio.probabilities, video.probabilities)
            label = max(probabilities, key=probabilities.__getitem__)
            fusion, description = LATE_FUSION, LATE_FUSION_DESCRIPTION
        else:
            (alone,) = [p for p in (audio, video) if p is not None]
            label, probabilities = alone.top_label, alone.probabilities
        comparison = None
        if audio is not None and video is not None and audio.attention is not None and video.attention is not None:
            comparison = compare_clip(attention_curve(audio), attention_curve(video))
        prediction = AudioVisualPrediction(
            source=piece.source,
            start=piece.start,
            duration=piece.duration,
            label=label,
            probabilities=probabilities,
            protocol=next(iter(streams.values())).protocol,
            modalities={m: any(p.modalities.get(m, False) for p in streams.values()) for m in ("audio", "video")},
            notes=tuple(dict.fromkeys(piece.notes.values())),
            audio=audio,
            video=video,
            fusion=fusion,
            fusion_description=description,
            fused=fused,
            comparison=comparison,
        )
        return prediction if self.min_confidence is None else prediction.with_min_confidence(self.min_confidence)


def late_fusion(*posteriors: Mapping[str, float]) -> dict[str, float]:
    """The product of posteriors over the same labels, renormalised; summed in logs, so that
    no class underflows to zero."""
    labels = list(posteriors[0])
    logs = np.sum([np.log(np.clip([p[label] for label in labels], 1e-30, None)) for p in posteriors], axis=0)
    fused = np.exp(logs - logs.max())
    return dict(zip(labels, (fused / fused.sum()).tolist()))


def attention_curve(prediction: Prediction) -> AttentionCurve:
    """A prediction's attention over its stream, on its own time axis (0 at its start)."""
    if prediction.attention is None or prediction.frame_rate is None:
        raise ValueError(f"the prediction of {prediction.source} has no attention over time")
    return AttentionCurve(prediction.attention, prediction.frame_rate)
