"""What a prediction is: one utterance's :class:`Prediction`, or a long recording's
:class:`RecordingPrediction` made of them, each with the protocol that produced it, and
their JSON form (the same for the command line, the Python API and the service).

Where face video is involved, an utterance can also be an :class:`AudioVisualPrediction`:
the audio model's and the video model's predictions, their fusion, and where the two
streams' attention agrees. JSON keys about video appear only where video is involved, so
the output of audio models stays what it always was.

A prediction may abstain: asked for a ``min_confidence``, one whose top probability (a
recording's top share) falls below it is labelled :data:`UNCERTAIN` instead of a class,
its probabilities still given, and its JSON gains ``"abstained"``. Without a threshold
there is no ``"abstained"`` key, so the document is what it always was.

A file may hold no speech at all (a beep, a door, silence): its result is :class:`NoSpeech`,
labelled :data:`NO_SPEECH`, with no probabilities, since a model would label anything it is
given as some emotion. It is a result, not an error, and has no utterances.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from numbers import Real
from typing import TYPE_CHECKING, Any

import numpy as np

from emotrace.errors import printable
from emotrace.spans import Span

if TYPE_CHECKING:
    from emotrace.inference.roi_compare import ClipAgreement

#: how an audio-visual prediction's label was made: the two streams' posteriors multiplied, or a fusion model
LATE_FUSION = "late"
MODEL_FUSION = "model"
#: the label of a prediction that abstains: its top probability is below the threshold asked for
UNCERTAIN = "uncertain"
#: the label of a result without speech to read an emotion from
NO_SPEECH = "no speech"


def check_min_confidence(value: float | None, name: str = "min_confidence") -> float | None:
    """``value`` itself when it is None (no abstention) or a probability in [0, 1]; a one-line
    ValueError naming it as ``name`` (e.g. the command line's option) otherwise."""
    if value is not None and not (isinstance(value, Real) and math.isfinite(value) and 0 <= value <= 1):
        raise ValueError(f"{name} must be a probability between 0 and 1, got {value!r}")
    return value


class _Scored:
    """What an utterance's prediction derives from its times and probabilities."""

    start: float
    duration: float
    probabilities: dict[str, float]

    @property
    def end(self) -> float:
        return self.start + self.duration

    @property
    def top_label(self) -> str:
        """The most probable class (the fused one for audio and video), whether or not the
        prediction abstains."""
        return max(self.probabilities, key=self.probabilities.__getitem__)


@dataclass(frozen=True, eq=False)
class Prediction(_Scored):
    """What a model made of one utterance. Every time is in seconds of ``source``.

    ``mixture`` is the attention-weighted mixture of frame posteriors (ROI models; else
    None). ``attention (T,)`` sums to 1 over the frames at ``frame_times (T,)`` (frame
    centres, ``frame_rate`` per second): ROI attention, or for query fusion the predicted
    class's query attention over the audio. ``segments`` are its regions of interest, each
    with its share of the attention as ``mass``. ``frame_posteriors (T, C)`` are the
    frame-level dynamics (ROI models). ``modalities`` says which inputs the model read;
    ``transcript`` is the text it read and ``transcript_source`` ``"given"`` or ``"asr"``.
    ``notes`` say why an input the model reads was not used, or only in part (no video
    stream, no face in most frames); the JSON has them for models that read video.
    ``label`` is the most probable class, or :data:`UNCERTAIN` when ``abstained`` (None:
    no abstention threshold was asked for).
    """

    source: str
    start: float
    duration: float
    label: str
    probabilities: dict[str, float]
    protocol: str
    modalities: dict[str, bool]
    transcript: str | None = None
    transcript_source: str | None = None
    mixture: dict[str, float] | None = None
    segments: tuple[Span, ...] = ()
    frame_rate: float | None = None
    frame_times: np.ndarray | None = None
    attention: np.ndarray | None = None
    frame_posteriors: np.ndarray | None = None
    notes: tuple[str, ...] = ()
    abstained: bool | None = None

    def with_min_confidence(self, min_confidence: float | None) -> Prediction:
        """This prediction under an abstention threshold (None: none, the top class is the label)."""
        abstained = _abstains(self.probabilities, min_confidence)
        return replace(self, label=UNCERTAIN if abstained else self.top_label, abstained=abstained)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: arrays become lists, numbers are rounded to what they can show."""
        document = self._document()
        if "video" in self.modalities:
            document["notes"] = list(self.notes)
        return document

    def _document(self) -> dict[str, Any]:
        dynamics = None
        if self.attention is not None:
            dynamics = {
                "frame_rate": self.frame_rate,
                "times": _rounded(self.frame_times, 3),
                "attention": _rounded(self.attention, 5),
                "frame_posteriors": _rounded(self.frame_posteriors, 5),
            }
        return {
            "source": printable(self.source),
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "duration": round(self.duration, 3),
            "label": self.label,
            **_abstention(self.abstained),
            "probabilities": _rounded(self.probabilities, 5),
            "protocol": self.protocol,
            "modalities": dict(self.modalities),
            "transcript": self.transcript,
            "transcript_source": self.transcript_source,
            "mixture": _rounded(self.mixture, 5),
            "segments": [_rounded(asdict(span), 3) for span in self.segments],
            "dynamics": dynamics,
        }


@dataclass(frozen=True, eq=False)
class AudioVisualPrediction(_Scored):
    """What an audio model, a face-video model and their fusion made of one utterance.

    ``label`` and ``probabilities`` are the fused result: ``fused``, the fusion model's own
    prediction, when ``fusion`` is :data:`MODEL_FUSION`; the product of ``audio``'s and
    ``video``'s posteriors, renormalised, when it is :data:`LATE_FUSION`; the one stream's
    prediction when only one could be used (``fusion`` None). ``modalities`` says which
    streams were used and ``notes`` why one was not, or only in part; ``label`` is
    :data:`UNCERTAIN` when ``abstained``. ``comparison`` is
    where the audio and the video attention agree (:mod:`emotrace.inference.roi_compare`),
    when both models attend over time; its times are seconds from ``start``.
    """

    source: str
    start: float
    duration: float
    label: str
    probabilities: dict[str, float]
    protocol: str
    modalities: dict[str, bool]
    notes: tuple[str, ...] = ()
    audio: Prediction | None = None
    video: Prediction | None = None
    fusion: str | None = None
    fusion_description: str | None = None
    fused: Prediction | None = None
    comparison: ClipAgreement | None = None
    abstained: bool | None = None

    def with_min_confidence(self, min_confidence: float | None) -> AudioVisualPrediction:
        """This prediction and each stream's under an abstention threshold (None: none); the
        fused probabilities decide whether the utterance abstains."""
        abstained = _abstains(self.probabilities, min_confidence)
        streams = {
            name: None if stream is None else stream.with_min_confidence(min_confidence)
            for name, stream in (("audio", self.audio), ("video", self.video), ("fused", self.fused))
        }
        return replace(self, label=UNCERTAIN if abstained else self.top_label, abstained=abstained, **streams)

    @property
    def segments(self) -> tuple[Span, ...]:
        """The fusion model's regions of interest (each stream's are in ``audio`` and ``video``)."""
        return () if self.fused is None else self.fused.segments

    @property
    def transcript(self) -> str | None:
        return next((p.transcript for p in (self.audio, self.fused) if p is not None and p.transcript), None)

    def to_dict(self) -> dict[str, Any]:
        """Each stream's prediction without its source (the utterance's), the fusion, and the comparison."""
        fused = None
        if self.fusion is not None:
            fused = {"method": self.fusion, "description": self.fusion_description}
            fused.update(
                _without_source(self.fused)
                or {
                    "label": self.label,
                    "probabilities": _rounded(self.probabilities, 5),
                }
            )
        comparison = None
        if self.comparison is not None:
            comparison = {
                "seconds": round(self.comparison.seconds, 3),
                **{
                    name: _rounded(getattr(self.comparison, name), 4)
                    for name in ("roi_iou", "pearson", "lag", "lag_correlation")
                },
                **{
                    f"{stream}_regions": [_rounded([self.start + a, self.start + b], 3) for a, b in regions]
                    for stream, regions in (
                        ("audio", self.comparison.audio_regions),
                        ("video", self.comparison.video_regions),
                    )
                },
            }
        return {
            "source": self.source,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "duration": round(self.duration, 3),
            "label": self.label,
            **_abstention(self.abstained),
            "probabilities": _rounded(self.probabilities, 5),
            "protocol": self.protocol,
            "modalities": dict(self.modalities),
            "notes": list(self.notes),
            "audio": _without_source(self.audio),
            "video": _without_source(self.video),
            "fused": fused,
            "roi_comparison": comparison,
        }


#: one utterance's prediction: by one model, or by audio and video models together
UtterancePrediction = Prediction | AudioVisualPrediction


@dataclass(frozen=True, eq=False)
class RecordingPrediction:
    """A long recording: one prediction per speech segment (``timeline``) and the class
    shares of the whole, the segments' probabilities weighted by their duration.
    Its ``label`` is the class with the largest share, or :data:`UNCERTAIN` when ``abstained``."""

    source: str
    duration: float
    protocol: str
    timeline: tuple[UtterancePrediction, ...]
    shares: dict[str, float]
    abstained: bool | None = None

    @property
    def top_label(self) -> str:
        return max(self.shares, key=self.shares.__getitem__)

    @classmethod
    def of(cls, source: str, duration: float, timeline: Sequence[UtterancePrediction]) -> RecordingPrediction:
        """The recording made of ``timeline`` (not empty), its shares weighted by segment duration."""
        labels = list(timeline[0].probabilities)
        weights = np.array([prediction.duration for prediction in timeline])
        probabilities = np.array([[p.probabilities[label] for label in labels] for p in timeline])
        shares = weights @ probabilities / weights.sum()
        return cls(source, duration, timeline[0].protocol, tuple(timeline), dict(zip(labels, shares.tolist())))

    @property
    def label(self) -> str:
        return UNCERTAIN if self.abstained else self.top_label

    def with_min_confidence(self, min_confidence: float | None) -> RecordingPrediction:
        """The recording and each of its segments under an abstention threshold (None: none)."""
        return replace(
            self,
            timeline=tuple(p.with_min_confidence(min_confidence) for p in self.timeline),
            abstained=_abstains(self.shares, min_confidence),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": printable(self.source),
            "duration": round(self.duration, 3),
            "protocol": self.protocol,
            "label": self.label,
            **_abstention(self.abstained),
            "shares": _rounded(self.shares, 5),
            "timeline": [prediction.to_dict() for prediction in self.timeline],
        }


@dataclass(frozen=True)
class NoSpeech:
    """A file in which the voice activity detector heard less than ``min_speech`` seconds of
    speech (``speech_seconds`` in ``duration``): no emotion is read from it. It is labelled
    :data:`NO_SPEECH`, has no probabilities and no utterances, and abstains from nothing."""

    source: str
    duration: float
    speech_seconds: float
    min_speech: float

    @property
    def label(self) -> str:
        return NO_SPEECH

    def with_min_confidence(self, min_confidence: float | None) -> NoSpeech:
        """Itself: there is no probability to hold against a threshold (which is still checked)."""
        check_min_confidence(min_confidence)
        return self

    def describe(self) -> str:
        """One line for a person, e.g. in a table, a summary or the service's notice."""
        return (
            f"no speech found ({self.speech_seconds:.2f} s of speech in {self.duration:.2f} s; "
            f"at least {self.min_speech:g} s needed)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": printable(self.source),
            "start": 0.0,
            "end": round(self.duration, 3),
            "duration": round(self.duration, 3),
            "label": NO_SPEECH,
            "probabilities": None,
            "speech": {"present": False, "seconds": round(self.speech_seconds, 3)},
            "notice": self.describe(),
        }


#: what predicting a file gives: an utterance, a recording by speech segments, or no speech
Result = UtterancePrediction | RecordingPrediction | NoSpeech


def utterances(results: Sequence[Result]) -> list[UtterancePrediction]:
    """Every prediction: utterances, and each speech segment of the recordings (a result
    without speech has none)."""
    return [
        p
        for r in results
        if not isinstance(r, NoSpeech)
        for p in (r.timeline if isinstance(r, RecordingPrediction) else (r,))
    ]


def _without_source(prediction: Prediction | None) -> dict[str, Any] | None:
    """A stream's prediction inside an audio-visual one, whose source it shares."""
    if prediction is None:
        return None
    document = prediction.to_dict()
    del document["source"]
    return document


def _abstains(scores: dict[str, float], min_confidence: float | None) -> bool | None:
    """Whether the top score is below ``min_confidence``; None when there is no threshold."""
    if check_min_confidence(min_confidence) is None:
        return None
    return bool(max(scores.values()) < min_confidence)


def _abstention(abstained: bool | None) -> dict[str, bool]:
    """The JSON's ``"abstained"`` field, present only when a threshold was asked for."""
    return {} if abstained is None else {"abstained": abstained}


def _rounded(value: Any, digits: int) -> Any:
    """Arrays, dicts of floats and floats with ``digits`` decimals, as JSON-safe lists and dicts."""
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        return np.round(value.astype(np.float64), digits).tolist()
    if isinstance(value, dict):
        return {key: _rounded(item, digits) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(item, digits) for item in value]
    return round(float(value), digits)
