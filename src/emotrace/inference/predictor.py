"""Predict and explain: a label, its probabilities, the regions of interest that decided
it, the emotion dynamics over time and the utterance's emotion mixture, with the protocol
that produced them.

A :class:`Predictor` feeds a checkpoint exactly as training did: the extractor its
:class:`~emotrace.features.transforms.InputSpec` names, then
:func:`~emotrace.features.transforms.model_frames` (layers, speaker normalisation, frame
pooling), then the model's input convention. The two protocols are never mixed up: an
utterance-level checkpoint runs when no speaker moments are given, a speaker-adaptive
one when they are, and each prediction says which ran. A model may come as a pair (the
packaged default ships ``<name>`` and ``<name>-adaptive``) so one predictor serves both.

Utterances longer than ``max_duration`` go through :meth:`Predictor.predict_recording`:
speech segments by voice activity, one prediction each, read one segment at a time (the
way from files to pieces is :class:`~emotrace.inference.media.MediaPredictor`'s). A file
is decoded once per prediction: :meth:`Predictor.predict_file_with_audio` hands its waveform
on (to a plot). What a prediction shows beyond its label comes from the model's output
(:meth:`~emotrace.models.outputs.ModelOutput.explain`), whatever the method.

A model that reads face video gets the file's video clip (the segment's seconds of it, in
a recording) through its extractor, like any input. A file without a video stream, or a
clip without a face, is noted; a model that cannot do without the video then says so in
one line (:class:`~emotrace.inference.media.MissingStreamError`).

The one departure from training's features is the encoder's precision: by default
(``precision="auto"``) Whisper's matrix products run in bfloat16 on a CPU that computes it
natively, faster than the float32 that training's features were computed in (see
:mod:`emotrace.features.precision`); on the default model's validation speakers 99.4 % of
labels are the same and the probabilities move by 0.004 on average
(``benchmarks/precision.py``). ``precision="float32"`` computes as training did.

Probabilities are the checkpoint's calibrated ones (its logits over its ``temperature``).
With ``min_confidence`` a prediction whose top probability falls below it abstains: its
label is ``"uncertain"`` (:meth:`~emotrace.inference.predictions.Prediction.with_min_confidence`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from emotrace.audio import SAMPLE_RATE
from emotrace.checkpoint import Checkpoint
from emotrace.errors import BatchReport, InputError
from emotrace.features.asr import WhisperASR
from emotrace.features.base import Extractor, Features
from emotrace.features.inputs import checked_waveforms
from emotrace.features.normalization import MomentAccumulator, Moments
from emotrace.features.precision import AUTO_PRECISION, resolve_precision
from emotrace.features.registry import get_extractor, spec_for_layers, spec_with_precision
from emotrace.features.transforms import InputSpec, frame_rate, model_frames, select_layers
from emotrace.inference.media import (
    MAX_UTTERANCE_SECONDS,
    Media,
    MediaPredictor,
    MissingStreamError,
    Piece,
)
from emotrace.inference.predictions import Prediction, RecordingPrediction, check_min_confidence
from emotrace.protocols import SPEAKER_ADAPTIVE, UTTERANCE_LEVEL, ProtocolError, check_protocol

__all__ = ["Prediction", "Predictor", "RecordingPrediction", "SpeakerMoments"]

ARRAY_SOURCE = "<array>"

#: a speaker's feature moments for each modality a speaker-adaptive model reads
SpeakerMoments = Mapping[str, Moments]


class Predictor(MediaPredictor):
    """Predictions from a checkpoint, and from its speaker-adaptive companion when given.

    ``checkpoint`` is utterance-level or speaker-adaptive; ``adaptive``, a speaker-adaptive
    checkpoint with the same labels, lets an utterance-level model also serve speakers whose
    moments are known. ``asr`` transcribes (Whisper, packaged tiny.en) when a model reads
    text and none is given. ``min_confidence`` (a probability, None for never) makes
    predictions less sure than it abstain. ``speech_check`` off predicts an emotion even
    for a file without speech (see :class:`~emotrace.inference.media.MediaPredictor`).
    ``precision`` is the encoders' (``"auto"``, ``"float32"`` or ``"bfloat16"``; see
    :mod:`emotrace.features.precision`). Extractors are built on first use and shared by
    both models.
    """

    def __init__(
        self,
        checkpoint: Checkpoint,
        adaptive: Checkpoint | None = None,
        *,
        asr: bool = False,
        max_duration: float = MAX_UTTERANCE_SECONDS,
        min_confidence: float | None = None,
        speech_check: bool = True,
        precision: str = AUTO_PRECISION,
    ):
        check_protocol(checkpoint.protocol)
        if adaptive is not None:
            if (checkpoint.protocol, adaptive.protocol) != (UTTERANCE_LEVEL, SPEAKER_ADAPTIVE):
                raise ValueError(
                    "a companion pairs an utterance-level checkpoint with a speaker-adaptive one, "
                    f"got {checkpoint.protocol} and {adaptive.protocol}"
                )
            if adaptive.labels != checkpoint.labels:
                raise ValueError(f"companion labels {adaptive.labels} differ from {checkpoint.labels}")
        self.checkpoints: dict[str, Checkpoint] = {c.protocol: c for c in (checkpoint, adaptive) if c is not None}
        self.labels: tuple[str, ...] = checkpoint.labels
        self.asr = asr
        self.max_duration = max_duration
        self.min_confidence = check_min_confidence(min_confidence)
        self.speech_check = speech_check
        self.precision = resolve_precision(precision)
        self._extractors: dict[str, Extractor] = {}
        self._whisper: WhisperASR | None = None

    @property
    def protocols(self) -> tuple[str, ...]:
        """The protocols this predictor can run."""
        return tuple(self.checkpoints)

    def reads(self, modality: str) -> bool:
        """Whether any of its models reads ``modality`` (e.g. whether a transcript matters)."""
        return any(modality in c.inputs for c in self.checkpoints.values())

    def predict(
        self,
        audio: str | Path | np.ndarray | Piece,
        text: str | None = None,
        *,
        speaker_moments: SpeakerMoments | None = None,
        source: str = ARRAY_SOURCE,
    ) -> Prediction:
        """One utterance: a file, or a 16 kHz mono float32 waveform (named ``source`` in
        results and errors), and optionally its text (or a piece already read).

        With ``speaker_moments`` (from :meth:`speaker_moments_for`) the speaker-adaptive
        model runs, else the utterance-level one. Audio longer than ``max_duration`` is an
        InputError pointing to :meth:`predict_recording`.
        """
        if not isinstance(audio, np.ndarray):
            return cast(Prediction, super().predict(audio, text, speaker_moments=speaker_moments))
        try:
            (waveform,) = checked_waveforms([audio])
        except InputError as error:
            raise InputError(source, error.problem) from None
        self.check_length(source, len(waveform) / SAMPLE_RATE)
        piece = Piece(source, 0.0, len(waveform) / SAMPLE_RATE, waveform, text=text)
        return cast(Prediction, super().predict(piece, speaker_moments=speaker_moments))

    def speaker_moments_for(
        self,
        paths: Sequence[str | Path],
        texts: Sequence[str | None] | None = None,
        *,
        report: BatchReport | None = None,
    ) -> dict[str, Moments]:
        """One speaker's moments, per modality the speaker-adaptive model reads.

        Pooled over all frames of all ``paths`` (the speaker's recordings; long ones by
        their speech segments), extracted and layer-selected as the model's inputs are,
        before pooling, as in training. Text moments come from ``texts`` (one per path, or
        None) or ASR. Unreadable files go to ``report``; without one they raise.
        """
        checkpoint = self.checkpoint_for(adaptive=True)
        report = BatchReport(strict=True) if report is None else report
        texts = [None] * len(paths) if texts is None else list(texts)
        if len(texts) != len(paths):
            raise ValueError(f"{len(texts)} texts for {len(paths)} recordings")
        accumulators = {modality: MomentAccumulator() for modality in checkpoint.inputs}
        for path, text in zip(paths, texts):
            try:
                for piece in self.pieces(path, text):
                    text_used, _ = self._text(checkpoint, piece.waveform, piece.text)
                    for modality, data in self._features(checkpoint, piece, text_used).items():
                        accumulators[modality].add(select_layers(data, checkpoint.inputs[modality].layers))
            except InputError as error:
                report.skip(error)
        moments = {modality: acc.moments() for modality, acc in accumulators.items() if acc.count}
        if not moments:
            more = f" and {len(paths) - 1} more" if len(paths) > 1 else ""
            raise InputError(
                f"{paths[0] if paths else 'no recordings'}{more}",
                "no recording of the speaker could be read to estimate speaker moments from",
            )
        return moments

    def require_protocol(self, adaptive: bool) -> None:
        self.checkpoint_for(adaptive)

    def check_streams(self, media: Media, adaptive: bool) -> None:
        has = [m for m, info in (("audio", media.audio), ("video", media.video)) if info is not None]
        missing = self.checkpoint_for(adaptive).model.missing_modalities([*has, "text"])
        if missing:
            needs = " and ".join(f"{m} ({media.notes.get(m, 'absent')})" for m in missing)
            raise MissingStreamError(media.path, f"the model needs {needs}")

    def checkpoint_for(self, adaptive: bool) -> Checkpoint:
        """The speaker-adaptive model, or the utterance-level one; a ProtocolError when
        this predictor has no model for that protocol."""
        protocol = SPEAKER_ADAPTIVE if adaptive else UTTERANCE_LEVEL
        if protocol in self.checkpoints:
            return self.checkpoints[protocol]
        if protocol == SPEAKER_ADAPTIVE:
            raise ProtocolError(
                "this model is utterance-level only: it has no speaker-adaptive variant to use "
                "speaker moments with (pass one as adaptive=)"
            )
        raise ProtocolError(
            "this model is speaker-adaptive: it needs the speaker's moments from several of the "
            "speaker's recordings (speaker_moments_for, or --adapt-speaker on the command line)"
        )

    def predict_piece(self, piece: Piece, speaker_moments: SpeakerMoments | None = None) -> Prediction:
        """One utterance as the model reads it; speaker-adaptive with ``speaker_moments``."""
        checkpoint = self.checkpoint_for(adaptive=speaker_moments is not None)
        model = checkpoint.model
        text, text_source = self._text(checkpoint, piece.waveform, piece.text)
        device = next(model.parameters()).device
        inputs: dict[str, torch.Tensor] = {}
        rates: dict[str, float] = {}
        for modality, features in self._features(checkpoint, piece, text).items():
            spec = checkpoint.inputs[modality]
            moments = None
            if speaker_moments is not None:
                if modality not in speaker_moments:
                    raise InputError(piece.source, f"the speaker's moments have no {modality} features")
                moments = speaker_moments[modality]
            frames = torch.from_numpy(model_frames(features, spec, moments))
            stacked = model.config.layers_in(modality) > 1
            inputs[modality] = (frames if stacked else frames[0])[None].to(device)
            inputs[f"{modality}_lengths"] = torch.tensor([frames.shape[1]], device=device)
            rates[modality] = frame_rate(features, spec) / model.input_frames_per_output(modality)
        with torch.inference_mode():
            output = model(**inputs)

        probabilities = output.probabilities_at(checkpoint.temperature)[0].float().cpu().numpy()
        explanation = output.explain(0, rates, offset=piece.start)
        prediction = Prediction(
            source=piece.source,
            start=piece.start,
            duration=piece.duration,
            label=self.labels[int(probabilities.argmax())],
            probabilities=dict(zip(self.labels, probabilities.tolist())),
            protocol=checkpoint.protocol,
            modalities={m: explanation.modalities.get(m, False) for m in checkpoint.inputs},
            transcript=text,
            transcript_source=text_source,
            mixture=None if explanation.mixture is None else dict(zip(self.labels, explanation.mixture.tolist())),
            segments=explanation.regions,
            frame_rate=explanation.frame_rate,
            frame_times=explanation.frame_times,
            attention=explanation.attention,
            frame_posteriors=explanation.frame_posteriors,
            notes=tuple(piece.notes[m] for m in checkpoint.inputs if m in piece.notes),
        )
        return prediction if self.min_confidence is None else prediction.with_min_confidence(self.min_confidence)

    def _text(
        self, checkpoint: Checkpoint, waveform: np.ndarray | None, text: str | None
    ) -> tuple[str | None, str | None]:
        """The transcript a model reads and where it came from; ASR only for text models."""
        if "text" not in checkpoint.inputs:
            return None, None
        if text is not None:
            return text, "given"
        if not self.asr or waveform is None:
            return None, None
        if self._whisper is None:
            self._whisper = WhisperASR()
        return self._whisper.transcribe(waveform).text, "asr"

    def _features(self, checkpoint: Checkpoint, piece: Piece, text: str | None) -> dict[str, Features]:
        """Extractor output for each input the model reads and the piece has. The video is
        read first: a clip without a face is left out before the model's needs are checked."""
        if "video" in checkpoint.inputs and piece.clip is not None:
            try:
                piece.check_face(self._extract(checkpoint.inputs["video"], piece, "video", piece.clip))
            except InputError as error:  # a video stream that cannot be decoded counts as none
                piece.leave_out_video(f"video not read: {error.problem}")
        given: dict[str, Any] = {"audio": piece.waveform, "text": text, "video": piece.clip}
        missing = checkpoint.model.missing_modalities([m for m, value in given.items() if value is not None])
        if missing:
            needs = [
                "a transcript (give text, or turn on ASR)"
                if m == "text"
                else f"{m} ({piece.notes[m]})"
                if m in piece.notes
                else f"{m} input, which audio cannot give"
                for m in missing
            ]
            error = MissingStreamError if all(m in piece.notes for m in missing) else InputError
            raise error(piece.source, f"the model needs {' and '.join(needs)}")
        return {
            modality: self._extract(spec, piece, modality, given[modality])
            for modality, spec in checkpoint.inputs.items()
            if given.get(modality) is not None
        }

    def _extract(self, spec: InputSpec, piece: Piece, modality: str, value: Any) -> Features:
        """The features ``spec`` names of one input of ``piece``; audio and video ones are kept
        on the piece for the next model that reads them (text may differ by model: ASR)."""
        extractor_spec = spec_for_layers(spec.features, spec.layers)
        key = (modality, extractor_spec)
        if key in piece.features:
            return piece.features[key]
        try:
            (features,) = self._extractor(extractor_spec).extract([value])
        except InputError as error:
            raise InputError(piece.source, error.problem) from None
        if modality != "text":
            piece.features[key] = features
        return features

    def encode_ahead(self, pieces: Sequence[Piece]) -> None:
        """The audio features of ``pieces`` in one call per extractor, kept on them for
        :meth:`predict_piece`: an encoder runs several times faster on a batch than clip by
        clip, for the same numbers (padding is masked). A batch that fails leaves the pieces
        as they were, and each meets its problem on its own."""
        specs = {
            spec_for_layers(spec.features, spec.layers)
            for checkpoint in self.checkpoints.values()
            for modality, spec in checkpoint.inputs.items()
            if modality == "audio"
        }
        for extractor_spec in sorted(specs):
            key = ("audio", extractor_spec)
            todo = [piece for piece in pieces if piece.waveform is not None and key not in piece.features]
            if len(todo) < 2:
                continue  # nothing to gain: the piece is encoded when predicted
            try:
                features = self._extractor(extractor_spec).extract([piece.waveform for piece in todo])
            except InputError:
                continue
            for piece, value in zip(todo, features):
                piece.features[key] = value

    def _extractor(self, extractor_spec: str) -> Extractor:
        """The extractor ``extractor_spec`` names, built on first use and shared by both models."""
        if extractor_spec not in self._extractors:
            self._extractors[extractor_spec] = get_extractor(spec_with_precision(extractor_spec, self.precision))
        return self._extractors[extractor_spec]
