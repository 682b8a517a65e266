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
speech segments by voice activity, one prediction each, read one segment at a time. A file
is decoded once per prediction: :meth:`Predictor.predict_file_with_audio` hands its waveform
on (to a plot). What a prediction shows beyond its label comes from the model's output
(:meth:`~emotrace.models.outputs.ModelOutput.explain`), whatever the method.

Probabilities are the checkpoint's calibrated ones (its logits over its ``temperature``).
With ``min_confidence`` a prediction whose top probability falls below it abstains: its
label is ``"uncertain"`` (:meth:`~emotrace.inference.predictions.Prediction.with_min_confidence`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from emotrace.audio import SAMPLE_RATE, AudioInfo, load_audio, probe
from emotrace.checkpoint import Checkpoint
from emotrace.errors import BatchReport, InputError
from emotrace.features.asr import WhisperASR
from emotrace.features.base import Extractor, Features
from emotrace.features.inputs import checked_waveforms
from emotrace.features.normalization import MomentAccumulator, Moments
from emotrace.features.registry import get_extractor, spec_for_layers
from emotrace.features.transforms import frame_rate, model_frames, select_layers
from emotrace.inference.predictions import Prediction, RecordingPrediction, Result, check_min_confidence
from emotrace.inference.segmentation import segment_audio, speech_segments
from emotrace.protocols import SPEAKER_ADAPTIVE, UTTERANCE_LEVEL, ProtocolError, check_protocol
from emotrace.spans import Span

#: seconds; longer audio is a recording, predicted by speech segments (models train on clips)
MAX_UTTERANCE_SECONDS = 30.0
ARRAY_SOURCE = "<array>"

#: a speaker's feature moments for each modality a speaker-adaptive model reads
SpeakerMoments = Mapping[str, Moments]


class Predictor:
    """Predictions from a checkpoint, and from its speaker-adaptive companion when given.

    ``checkpoint`` is utterance-level or speaker-adaptive; ``adaptive``, a speaker-adaptive
    checkpoint with the same labels, lets an utterance-level model also serve speakers whose
    moments are known. ``asr`` transcribes (Whisper, packaged tiny.en) when a model reads
    text and none is given. ``min_confidence`` (a probability, None for never) makes
    predictions less sure than it abstain. Extractors are built on first use and shared by
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
        self.checkpoints: dict[str, Checkpoint] = {
            c.protocol: c for c in (checkpoint, adaptive) if c is not None
        }
        self.labels: tuple[str, ...] = checkpoint.labels
        self.asr = asr
        self.max_duration = max_duration
        self.min_confidence = check_min_confidence(min_confidence)
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
        audio: str | Path | np.ndarray,
        text: str | None = None,
        *,
        speaker_moments: SpeakerMoments | None = None,
        source: str = ARRAY_SOURCE,
    ) -> Prediction:
        """One utterance: a file, or a 16 kHz mono float32 waveform (named ``source`` in
        results and errors), and optionally its text.

        With ``speaker_moments`` (from :meth:`speaker_moments_for`) the speaker-adaptive
        model runs, else the utterance-level one. Audio longer than ``max_duration`` is an
        InputError pointing to :meth:`predict_recording`.
        """
        if isinstance(audio, np.ndarray):
            try:
                (waveform,) = checked_waveforms([audio])
            except InputError as error:
                raise InputError(source, error.problem) from None
            self._check_length(source, len(waveform) / SAMPLE_RATE)
        else:
            info = probe(audio)
            source, waveform = info.path, self._decode_utterance(info)
        return self._predict(source, 0.0, waveform, text, speaker_moments)

    def predict_recording(
        self,
        path: str | Path,
        *,
        speaker_moments: SpeakerMoments | None = None,
        segments: Sequence[Span] | None = None,
        report: BatchReport | None = None,
    ) -> RecordingPrediction:
        """A recording of any length, by speech segments (voice activity unless ``segments``
        are given), each read and predicted on its own so memory stays bounded.

        Text models read each segment's ASR transcript when ``asr`` is on. A segment that
        fails goes to ``report`` (named by file and times) and is skipped; without a report
        it raises.
        """
        report = BatchReport(strict=True) if report is None else report
        info = probe(path)
        self.checkpoint_for(adaptive=speaker_moments is not None)  # fail before the VAD runs
        if segments is None:
            segments = speech_segments(path)
        if not segments:
            raise InputError(info.path, "no speech found")
        timeline = []
        for segment in segments:
            try:
                waveform = load_audio(path, segment.start, segment.end, max_duration=self.max_duration)
                timeline.append(self._predict(info.path, segment.start, waveform, None, speaker_moments))
            except InputError as error:
                report.skip(InputError(f"{info.path} [{segment.start:.2f}-{segment.end:.2f} s]", error.problem))
        if not timeline:
            raise InputError(info.path, "none of its speech segments could be predicted")
        weights = np.array([prediction.duration for prediction in timeline])
        probabilities = np.array([[p.probabilities[label] for label in self.labels] for p in timeline])
        shares = weights @ probabilities / weights.sum()
        recording = RecordingPrediction(
            source=info.path,
            duration=info.duration,
            protocol=timeline[0].protocol,
            timeline=tuple(timeline),
            shares=dict(zip(self.labels, shares.tolist())),
        )
        return recording if self.min_confidence is None else recording.with_min_confidence(self.min_confidence)

    def predict_file(
        self,
        path: str | Path,
        text: str | None = None,
        *,
        speaker_moments: SpeakerMoments | None = None,
        report: BatchReport | None = None,
    ) -> Result:
        """A file of any length: one utterance up to ``max_duration``, else a recording
        predicted by speech segments (whose bad segments go to ``report``)."""
        return self.predict_file_with_audio(path, text, speaker_moments=speaker_moments, report=report)[0]

    def predict_file_with_audio(
        self,
        path: str | Path,
        text: str | None = None,
        *,
        speaker_moments: SpeakerMoments | None = None,
        report: BatchReport | None = None,
    ) -> tuple[Result, np.ndarray | None]:
        """:meth:`predict_file`, and the utterance's waveform it decoded, for a plot to reuse
        (None for a recording, which is read one speech segment at a time)."""
        info = probe(path)
        if info.duration <= self.max_duration:
            waveform = self._decode_utterance(info)
            return self.predict(waveform, text, speaker_moments=speaker_moments, source=info.path), waveform
        if text is not None and self.reads("text"):
            raise InputError(
                path, f"is over {self.max_duration:g} s, so it is predicted by speech segments, which take "
                "no transcript: leave the text out (with ASR on, each segment is transcribed)"
            )
        return self.predict_recording(path, speaker_moments=speaker_moments, report=report), None

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
                for waveform, piece_text in self._pieces(path, text):
                    text_used, _ = self._text(checkpoint, waveform, piece_text)
                    features = self._features(checkpoint, str(path), waveform, text_used)
                    for modality, data in features.items():
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

    def _check_length(self, source: str, seconds: float) -> None:
        if seconds > self.max_duration:
            raise InputError(
                source,
                f"is {seconds:.1f} s long, over the {self.max_duration:g} s limit for one utterance; "
                "use predict_recording, which predicts its speech segments",
            )

    def _decode_utterance(self, info: AudioInfo) -> np.ndarray:
        """The whole file as one utterance, once its header shows it is not too long."""
        self._check_length(info.path, info.duration)
        return load_audio(info.path, max_duration=None)

    def _pieces(self, path: str | Path, text: str | None) -> Iterator[tuple[np.ndarray, str | None]]:
        """The waveforms of a recording the way predictions read them: whole, or by speech segments."""
        info = probe(path)
        if info.duration <= self.max_duration:
            yield self._decode_utterance(info), text
            return
        if text is not None:
            raise InputError(info.path, "a long recording takes no transcript (its segments use ASR)")
        for _, waveform in segment_audio(path, speech_segments(path)):
            yield waveform, None

    def _text(
        self, checkpoint: Checkpoint, waveform: np.ndarray, text: str | None
    ) -> tuple[str | None, str | None]:
        """The transcript a model reads and where it came from; ASR only for text models."""
        if "text" not in checkpoint.inputs:
            return None, None
        if text is not None:
            return text, "given"
        if not self.asr:
            return None, None
        if self._whisper is None:
            self._whisper = WhisperASR()
        return self._whisper.transcribe(waveform).text, "asr"

    def _features(
        self, checkpoint: Checkpoint, source: str, waveform: np.ndarray, text: str | None
    ) -> dict[str, Features]:
        """Extractor output for each input the model reads and the utterance has."""
        given: dict[str, np.ndarray | str | None] = {"audio": waveform, "text": text}
        missing = checkpoint.model.missing_modalities([m for m, value in given.items() if value is not None])
        if missing:
            needs = [
                "a transcript (give text, or turn on ASR)" if m == "text" else f"{m} input, which audio cannot give"
                for m in missing
            ]
            raise InputError(source, f"the model needs {' and '.join(needs)}")
        features = {}
        for modality, spec in checkpoint.inputs.items():
            if given.get(modality) is None:
                continue
            extractor_spec = spec_for_layers(spec.features, spec.layers)
            if extractor_spec not in self._extractors:
                self._extractors[extractor_spec] = get_extractor(extractor_spec)
            try:
                (features[modality],) = self._extractors[extractor_spec].extract([given[modality]])
            except InputError as error:
                raise InputError(source, error.problem) from None
        return features

    def _predict(
        self,
        source: str,
        start: float,
        waveform: np.ndarray,
        text: str | None,
        speaker_moments: SpeakerMoments | None,
    ) -> Prediction:
        checkpoint = self.checkpoint_for(adaptive=speaker_moments is not None)
        model = checkpoint.model
        text, text_source = self._text(checkpoint, waveform, text)
        device = next(model.parameters()).device
        inputs: dict[str, torch.Tensor] = {}
        rates: dict[str, float] = {}
        for modality, features in self._features(checkpoint, source, waveform, text).items():
            spec = checkpoint.inputs[modality]
            moments = None
            if speaker_moments is not None:
                if modality not in speaker_moments:
                    raise InputError(source, f"the speaker's moments have no {modality} features")
                moments = speaker_moments[modality]
            frames = torch.from_numpy(model_frames(features, spec, moments))
            stacked = model.config.layers_in(modality) > 1
            inputs[modality] = (frames if stacked else frames[0])[None].to(device)
            inputs[f"{modality}_lengths"] = torch.tensor([frames.shape[1]], device=device)
            rates[modality] = frame_rate(features, spec)
        with torch.inference_mode():
            output = model(**inputs)

        probabilities = output.probabilities_at(checkpoint.temperature)[0].float().cpu().numpy()
        explanation = output.explain(0, rates, offset=start)
        prediction = Prediction(
            source=source,
            start=start,
            duration=len(waveform) / SAMPLE_RATE,
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
        )
        return prediction if self.min_confidence is None else prediction.with_min_confidence(self.min_confidence)
