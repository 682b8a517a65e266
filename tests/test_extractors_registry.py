"""Extractor specs: names, targets and options, and clear errors for wrong ones."""

from __future__ import annotations

import pytest

from emotrace.features.base import Extractor
from emotrace.features.inputs import ExtractorConfigError
from emotrace.features.registry import EXTRACTORS, get_extractor, parse_spec


def test_specs_split_into_name_target_and_options() -> None:
    assert parse_spec("whisper-base:layers=3,4") == ("whisper-base", None, {"layers": "3,4"})
    assert parse_spec("hf:microsoft/wavlm-base-plus:layers=all:window=30") == (
        "hf",
        "microsoft/wavlm-base-plus",
        {"layers": "all", "window": "30"},
    )
    assert parse_spec(r"glove:C:\vectors\glove.txt") == ("glove", r"C:\vectors\glove.txt", {})


def test_every_listed_extractor_has_a_description() -> None:
    assert {
        "logmel",
        "egemaps",
        "egemaps-functionals",
        "compare",
        "whisper-tiny",
        "whisper-base",
        "whisper",
        "hf",
        "resemblyzer",
        "resemblyzer-utterance",
        "minilm",
        "text",
        "glove-50d",
        "glove",
    } <= set(EXTRACTORS)
    assert all(description.strip() for description in EXTRACTORS.values())


def test_specs_become_configured_extractors() -> None:
    logmel = get_extractor("logmel:bins=64")
    assert isinstance(logmel, Extractor) and logmel.modality == "audio"
    assert logmel.name == "logmel" and logmel.config()["bins"] == 64
    ssl = get_extractor("hf:some-org/some-model:layers=4,2:window=30")  # models load on first use
    assert ssl.name == "hf:some-org/some-model"
    assert ssl.config() == {
        "model": "some-org/some-model",
        "weights": "hub",
        "layers": [2, 4],
        "window_seconds": 30.0,
        "overlap_seconds": 1.0,
    }
    assert get_extractor("egemaps-functionals").config() == {
        "feature_set": "eGeMAPSv02",
        "feature_level": "Functionals",
    }


@pytest.mark.parametrize(
    "spec, message",
    [
        ("wav2vec", "unknown extractor 'wav2vec'; known: logmel"),
        ("hf", "hf needs a model"),
        ("egemaps:foo", "takes no model"),
        ("logmel:hop=5", "unknown option"),
        ("hf:x:layers=1,a", "layers must be"),
        ("hf:x:layers=1:y", "options come last"),
        ("resemblyzer:rate=fast", "rate must be a number"),
        ("hf:x:layers=1:layers=2", "given twice"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ExtractorConfigError, match=message):
        get_extractor(spec)


def test_precision_resolves_auto_by_the_cpu_and_refuses_unknown_values(monkeypatch: pytest.MonkeyPatch) -> None:
    from emotrace.features import precision

    monkeypatch.setattr(precision, "native_bfloat16", lambda: True)
    assert precision.resolve_precision("auto") == "bfloat16"
    monkeypatch.setattr(precision, "native_bfloat16", lambda: False)
    assert precision.resolve_precision("auto") == "float32"
    assert precision.resolve_precision("bfloat16") == "bfloat16"
    with pytest.raises(ExtractorConfigError, match="precision must be one of auto, float32, bfloat16"):
        precision.resolve_precision("float16")
    with pytest.raises(ExtractorConfigError, match="precision must be one of"):
        get_extractor("whisper-base:precision=int8")


def test_a_precision_is_added_only_to_specs_that_take_one_and_name_none() -> None:
    from emotrace.features.registry import spec_with_precision

    assert spec_with_precision("whisper-base:layers=2,3", "bfloat16") == "whisper-base:layers=2,3:precision=bfloat16"
    assert spec_with_precision("whisper-base:precision=float32", "bfloat16") == "whisper-base:precision=float32"
    assert spec_with_precision("logmel", "bfloat16") == "logmel"
    assert get_extractor("whisper:some-org/some-whisper:precision=bfloat16").config()["precision"] == "bfloat16"
