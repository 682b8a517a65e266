"""From a file to what the models read: its audio, its face video, or both, one piece at a time.

A :class:`Piece` is one utterance (a whole file, or one speech segment of a long recording)
as every model of a prediction reads it: the waveform, the video clip over the same
seconds, the transcript. :class:`MediaPredictor` is the way from a file to a result that
every predictor shares: one utterance up to ``max_duration`` seconds, else a recording
predicted by speech segments; a subclass says only how it predicts a piece.

Which streams a file has. A predictor whose models read only audio reads the file as
audio, as always: every problem is the file's (an InputError). One that reads face video
reads both streams, and a stream that is absent or cannot be read becomes a note on the
piece (``notes[modality]``), not an error: each model then says whether it can do without
it (method B can; method A on the face cannot). So can a clip whose face is missing: the
tracker's face mask (:func:`~emotrace.features.video.geometry.face_found`) must show a
face on at least ``MIN_FACE_SHARE`` of its samples, or the clip is left out, since its
features would describe no face; a face missing from fewer samples is noted.

No speech. A model labels whatever it is given, a beep as some emotion, so an utterance
(a whole file up to ``max_duration``) with nothing else to read (no transcript the models
read, no video stream for a face model) is asked first whether it holds speech
(:func:`~emotrace.inference.sanity.speech_presence` on the waveform already decoded); one
whose face turns out unusable is asked after its prediction, if that went on without the
video. Without speech the result is :class:`~emotrace.inference.predictions.NoSpeech`, and
the file adds nothing to a speaker's moments. ``speech_check`` off skips the question (synthetic
test audio). It is an utterance's question only: a longer recording is cut by voice activity
(:func:`~emotrace.inference.segmentation.speech_segments` at its own threshold), and one with
no segment is :class:`~emotrace.inference.predictions.NoSpeech` whatever ``speech_check`` says.
Every prediction (its probabilities and every other figure) is checked
(:func:`~emotrace.inference.sanity.check_prediction`): NaN never reaches an output.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emotrace.audio import SAMPLE_RATE, AudioInfo, load_audio, probe
from emotrace.errors import BatchReport, InputError
from emotrace.features.base import Features
from emotrace.features.video.geometry import face_found
from emotrace.features.video.reader import VideoClip, VideoInfo, probe_video
from emotrace.inference.predictions import NoSpeech, RecordingPrediction, Result, UtterancePrediction
from emotrace.inference.sanity import SpeechPresence, check_prediction, speech_presence, speech_presences
from emotrace.inference.segmentation import MIN_SPEECH_SECONDS, speech_segments, speech_segments_ahead
from emotrace.spans import Span

#: seconds; longer audio is a recording, predicted by speech segments (models train on clips)
MAX_UTTERANCE_SECONDS = 30.0
#: utterances (files of a batch, segments of a recording) read ahead and encoded together: one
#: encoder call and one VAD pass over several cost far less than one each (predict_speed.py)
READ_AHEAD = 16
#: the share of a clip's samples that must show a face for its video to be used
MIN_FACE_SHARE = 0.5
NO_AUDIO_TRACK = "no audio track"
NO_VIDEO_STREAM = "no video stream"


class MissingStreamError(InputError):
    """A model cannot run on a piece because a stream it needs is missing (the piece's
    notes say why): an audio-visual prediction goes on with the streams it has."""


@dataclass(eq=False)
class Piece:
    """One utterance as the models read it; times in seconds of ``source``.

    ``waveform`` (16 kHz mono) and ``clip`` are None where the file has no usable audio or
    video, with the reason in ``notes``. ``features`` holds what extractors made of the
    piece, by modality and extractor spec, so models reading the same features share them.
    Both are filled in as models read the piece: a model that finds no face leaves the clip
    out for the models after it, or ahead of it (:meth:`MediaPredictor.read_ahead`), with the
    speech check's ``presence``.
    """

    source: str
    start: float
    duration: float
    waveform: np.ndarray | None = None
    clip: VideoClip | None = None
    text: str | None = None
    notes: dict[str, str] = field(default_factory=dict)
    features: dict[tuple[str, str], Features] = field(default_factory=dict)
    presence: SpeechPresence | None = None  # the speech check's answer, when found ahead

    def leave_out_video(self, note: str) -> None:
        self.clip = None
        self.notes["video"] = note

    def check_face(self, features: Features) -> None:
        """Note faces missing from ``features`` (a face extractor's output for this piece's
        clip); leave the clip out when fewer than ``MIN_FACE_SHARE`` of its samples show one."""
        found = face_found(features.data[0])
        share = float(found.mean()) if len(found) else 0.0
        missing = f"no face found in {_percent(1 - share)} of video frames"
        if share < MIN_FACE_SHARE:
            self.leave_out_video(f"{missing} (a face is needed in {_percent(MIN_FACE_SHARE)})")
        elif share < 1:
            self.notes["video"] = missing


@dataclass(frozen=True)
class Media:
    """The streams of a file that a predictor reads: their headers (None where absent or
    unreadable, with the reason in ``notes``)."""

    path: str
    audio: AudioInfo | None
    video: VideoInfo | None
    notes: Mapping[str, str] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return self.audio.duration if self.audio is not None else self.video.duration  # type: ignore[union-attr]


def probe_media(path: str | Path, video: bool) -> Media:
    """The headers of ``path``'s audio (and, with ``video``, its video stream).

    Without ``video`` the file is read as audio and any problem raises. With it, a missing
    or unreadable stream is noted; an InputError only when neither stream can be read.
    """
    if not video:
        info = probe(path)
        return Media(info.path, info, None)
    notes: dict[str, str] = {}
    video_info = audio_info = None
    try:
        video_info = probe_video(path)
    except InputError as error:
        video_error = error
        no_stream = error.problem.startswith(f"has {NO_VIDEO_STREAM}")
        notes["video"] = NO_VIDEO_STREAM if no_stream else f"video not read: {error.problem}"
    if video_info is not None and not video_info.has_audio:
        notes["audio"] = NO_AUDIO_TRACK
    else:
        try:
            audio_info = probe(path)
        except InputError as error:
            if video_info is None:
                raise (error if no_stream else video_error) from None
            notes["audio"] = f"audio not read: {error.problem}"
    return Media(str(path), audio_info, video_info, notes)


def whole_piece(media: Media, text: str | None = None) -> Piece:
    """The whole file as one utterance (its length checked by the caller). With a video
    stream, audio that cannot be decoded (silent, too short) is noted, not raised."""
    notes = dict(media.notes)
    waveform = None
    if media.audio is not None:
        try:
            waveform = load_audio(media.path, max_duration=None)
        except InputError as error:
            if media.video is None:
                raise
            notes["audio"] = f"audio not read: {error.problem}"
    clip = VideoClip(media.path) if media.video is not None else None
    duration = len(waveform) / SAMPLE_RATE if waveform is not None else media.duration
    return Piece(media.path, 0.0, duration, waveform, clip, text, notes)


def segment_piece(media: Media, segment: Span, max_duration: float | None) -> Piece:
    """One segment of a file: its audio (an InputError when it cannot be read) and its video."""
    waveform = None
    if media.audio is not None:
        waveform = load_audio(media.path, segment.start, segment.end, max_duration=max_duration)
    clip = VideoClip(media.path, segment.start, segment.end) if media.video is not None else None
    duration = len(waveform) / SAMPLE_RATE if waveform is not None else segment.duration
    return Piece(media.path, segment.start, duration, waveform, clip, notes=dict(media.notes))


class MediaPredictor(ABC):
    """Files to results, for any way of predicting a :class:`Piece`.

    A file up to ``max_duration`` seconds is one utterance; a longer one is a recording,
    cut into speech segments by voice activity (read from its audio), each segment read and
    predicted on its own so memory stays bounded. With ``min_confidence`` (None: never) a
    prediction, and a recording by its shares, abstains when less sure than it. With
    ``speech_check`` an utterance without speech is :class:`NoSpeech`, not an emotion; a
    recording without speech segments is, with or without it.
    """

    labels: tuple[str, ...]
    max_duration: float = MAX_UTTERANCE_SECONDS
    min_confidence: float | None = None
    speech_check: bool = True

    @property
    @abstractmethod
    def protocols(self) -> tuple[str, ...]:
        """The protocols this predictor can run."""

    @abstractmethod
    def reads(self, modality: str) -> bool:
        """Whether any of its models reads ``modality``."""

    @abstractmethod
    def require_protocol(self, adaptive: bool) -> None:
        """A ProtocolError unless there is a model for the speaker-adaptive protocol (or,
        without ``adaptive``, the utterance-level one)."""

    @abstractmethod
    def predict_piece(self, piece: Piece, speaker_moments: Any = None) -> UtterancePrediction:
        """One piece's prediction; speaker-adaptive with ``speaker_moments``."""

    @abstractmethod
    def speaker_moments_for(
        self,
        paths: Sequence[str | Path],
        texts: Sequence[str | None] | None = None,
        *,
        report: BatchReport | None = None,
    ) -> Any:
        """One speaker's moments from their recordings, as :meth:`predict_piece` takes them."""

    @abstractmethod
    def check_streams(self, media: Media, adaptive: bool) -> None:
        """A :class:`MissingStreamError` when ``media`` lacks a stream the models cannot do
        without, so that a long file fails at once, not segment by segment."""

    def probe(self, path: str | Path) -> Media:
        """The streams of ``path`` this predictor reads."""
        return probe_media(path, video=self.reads("video"))

    def predict(
        self, media: str | Path | Piece, text: str | None = None, *, speaker_moments: Any = None
    ) -> UtterancePrediction:
        """One utterance: a file up to ``max_duration`` seconds long (else an InputError
        pointing to :meth:`predict_recording`) and optionally its text, or a piece already read.
        It is predicted whether or not it holds speech (:meth:`predict_file` asks first); its
        probabilities are checked (an InputError naming it when they are not finite)."""
        if not isinstance(media, Piece):
            info = self.probe(media)
            self.check_length(info.path, info.duration)
            media = whole_piece(info, text)
        return check_prediction(self.predict_piece(media, speaker_moments), self.labels)

    def predict_recording(
        self,
        path: str | Path,
        *,
        speaker_moments: Any = None,
        segments: Sequence[Span] | None = None,
        report: BatchReport | None = None,
    ) -> RecordingPrediction | NoSpeech:
        """A recording of any length, by speech segments (voice activity unless ``segments``
        are given), read :data:`READ_AHEAD` at a time so memory stays bounded, while the voice
        activity detector reads on in a background thread; :class:`NoSpeech`
        when voice activity finds none, whether or not ``speech_check`` is on (it is an
        utterance's question: see :meth:`lacks_speech`).

        Text models read each segment's ASR transcript when ASR is on. A segment that fails
        goes to ``report`` (named by file and times) and is skipped; without a report it raises.
        """
        report = BatchReport(strict=True) if report is None else report
        media = self.probe(path)
        self.require_protocol(adaptive=speaker_moments is not None)  # fail before the VAD runs
        self.check_streams(media, adaptive=speaker_moments is not None)
        if segments is None and media.audio is None:
            raise InputError(media.path, f"has {media.notes['audio']}, so no speech segments can be found in it")
        # without segments given, the VAD reads on in a thread while the first ones are predicted
        spans = speech_segments_ahead(path) if segments is None else iter(segments)
        timeline: list[UtterancePrediction] = []
        found = 0
        try:
            while chunk := list(itertools.islice(spans, READ_AHEAD)):
                found += len(chunk)
                timeline += self._predict_segments(media, chunk, speaker_moments, report)
        finally:
            if isinstance(spans, Generator):
                spans.close()  # stops the VAD's thread when a segment's error ends the recording
        if not found:
            return NoSpeech(media.path, media.duration, 0.0, MIN_SPEECH_SECONDS)
        if not timeline:
            raise InputError(media.path, "none of its speech segments could be predicted")
        recording = RecordingPrediction.of(media.path, media.duration, timeline)
        return recording if self.min_confidence is None else recording.with_min_confidence(self.min_confidence)

    def _predict_segments(
        self, media: Media, segments: Sequence[Span], speaker_moments: Any, report: BatchReport
    ) -> list[UtterancePrediction]:
        """Segments read together and encoded in one call (:meth:`encode_ahead`), then predicted."""
        pieces: list[tuple[Span, Piece]] = []
        for segment in segments:
            try:
                pieces.append((segment, segment_piece(media, segment, self.max_duration)))
            except InputError as error:
                report.skip(_segment_error(media, segment, error))
        self.encode_ahead([piece for _, piece in pieces])
        predictions = []
        for segment, piece in pieces:
            try:
                predictions.append(self.predict(piece, speaker_moments=speaker_moments))
            except InputError as error:
                report.skip(_segment_error(media, segment, error))
        return predictions

    def predict_file(
        self,
        path: str | Path,
        text: str | None = None,
        *,
        speaker_moments: Any = None,
        report: BatchReport | None = None,
    ) -> Result:
        """A file of any length: one utterance up to ``max_duration``, else a recording
        predicted by speech segments (whose bad segments go to ``report``); :class:`NoSpeech`
        for a file without speech (see :meth:`lacks_speech`)."""
        return self.predict_file_with_audio(path, text, speaker_moments=speaker_moments, report=report)[0]

    def predict_file_with_audio(
        self,
        path: str | Path,
        text: str | None = None,
        *,
        speaker_moments: Any = None,
        report: BatchReport | None = None,
        read_ahead: Piece | None = None,
    ) -> tuple[Result, np.ndarray | None]:
        """:meth:`predict_file`, and the utterance's waveform it decoded, for a plot to reuse
        (None for a recording, read one speech segment at a time, or a file without audio).
        ``read_ahead`` is the file's piece from :meth:`read_ahead`, read with its text."""
        if read_ahead is not None:
            return self._predict_utterance(read_ahead, speaker_moments, reads_face=False)
        media = self.probe(path)
        if media.duration <= self.max_duration:
            reads_face = media.video is not None and self.reads("video")
            return self._predict_utterance(whole_piece(media, text), speaker_moments, reads_face)
        if text is not None and self.reads("text"):
            raise InputError(
                path,
                f"is over {self.max_duration:g} s, so it is predicted by speech segments, which take "
                "no transcript: leave the text out (with ASR on, each segment is transcribed)",
            )
        return self.predict_recording(path, speaker_moments=speaker_moments, report=report), None

    def _predict_utterance(
        self, piece: Piece, speaker_moments: Any, reads_face: bool
    ) -> tuple[Result, np.ndarray | None]:
        """A whole file's piece: its prediction, or :class:`NoSpeech`, and its waveform."""
        self.check_length(piece.source, piece.duration)
        silent = self.lacks_speech(piece, reads_face=reads_face)
        if silent is None:
            prediction = self.predict(piece, speaker_moments=speaker_moments)
            if reads_face and not prediction.modalities.get("video", False):
                silent = self.lacks_speech(piece, reads_face=False)  # the face was left out: audio alone spoke
            if silent is None:
                return prediction, piece.waveform
        return silent, piece.waveform

    def read_ahead(self, files: Sequence[tuple[str | Path, str | None]]) -> list[Piece | None]:
        """The pieces of several files (path and text), read together before they are predicted:
        decoded, asked for speech in one VAD pass and encoded in one call
        (:meth:`encode_ahead`). None for a file that is not a short audio utterance
        (a recording, a video for a face model) or that cannot be read: it is predicted the
        usual way, and a bad file fails there, on its own."""
        pieces: list[Piece | None] = [None] * len(files)
        if self.reads("video"):
            return pieces
        for index, (path, text) in enumerate(files):
            try:
                media = self.probe(path)
                if media.duration <= self.max_duration:
                    pieces[index] = whole_piece(media, text)
            except InputError:
                continue
        read = [piece for piece in pieces if piece is not None]
        asked = [piece for piece in read if self._asks_for_speech(piece, reads_face=False)]
        for piece, presence in zip(asked, speech_presences([piece.waveform for piece in asked])):
            piece.presence = presence
        self.encode_ahead([piece for piece in read if self.lacks_speech(piece, reads_face=False) is None])
        return pieces

    @abstractmethod
    def encode_ahead(self, pieces: Sequence[Piece]) -> None:
        """Extract what the models will read of several pieces at once, where a batch is
        cheaper than one piece at a time, and keep it on the pieces."""

    def _asks_for_speech(self, piece: Piece, reads_face: bool) -> bool:
        """Whether :meth:`lacks_speech` asks the VAD about ``piece``."""
        reads_text = piece.text is not None and self.reads("text")
        return self.speech_check and piece.waveform is not None and not reads_text and not reads_face

    def lacks_speech(self, piece: Piece, reads_face: bool) -> NoSpeech | None:
        """:class:`NoSpeech` when ``piece`` (a whole file) has a waveform with too little
        speech in it and nothing else the models would read an emotion from: a transcript
        given to a model that reads text, or (``reads_face``) a face video a model reads.
        None when it holds speech, or ``speech_check`` is off.

        Whether the face is usable is known only once a model has tracked it, so
        :meth:`predict_file_with_audio` asks again, with ``reads_face`` False, when the
        prediction went on without the video (as method B or an audio model does)."""
        if not self._asks_for_speech(piece, reads_face):
            return None
        presence = piece.presence if piece.presence is not None else speech_presence(piece.waveform)  # type: ignore[arg-type]
        if presence.present:
            return None
        return NoSpeech(piece.source, presence.duration, presence.speech_seconds, presence.min_speech)

    def pieces(self, path: str | Path, text: str | None) -> Iterator[Piece]:
        """A file the way predictions read it: whole, or by speech segments; nothing from a
        whole file without speech (:meth:`lacks_speech`), whose features would describe a
        beep or a hum, not the speaker (as in :meth:`~emotrace.inference.predictor.Predictor.speaker_moments_for`)."""
        media = self.probe(path)
        if media.duration <= self.max_duration:
            piece = whole_piece(media, text)
            if self.lacks_speech(piece, reads_face=media.video is not None and self.reads("video")) is None:
                yield piece
            return
        if text is not None:
            raise InputError(media.path, "a long recording takes no transcript (its segments use ASR)")
        if media.audio is None:
            raise InputError(media.path, f"has {media.notes['audio']}, so no speech segments can be found in it")
        for segment in speech_segments(path):
            yield segment_piece(media, segment, self.max_duration)

    def check_length(self, source: str, seconds: float) -> None:
        """An InputError when ``seconds`` is too long for one utterance."""
        if seconds > self.max_duration:
            raise InputError(
                source,
                f"is {seconds:.1f} s long, over the {self.max_duration:g} s limit for one utterance; "
                "use predict_recording, which predicts its speech segments",
            )


def _segment_error(media: Media, segment: Span, error: InputError) -> InputError:
    return InputError(f"{media.path} [{segment.start:.2f}-{segment.end:.2f} s]", error.problem)


def _percent(share: float) -> str:
    return f"{round(100 * share)} %"
