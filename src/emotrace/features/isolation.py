"""How one bad input in a batch is isolated and reported, without ending the batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from emotrace.corpora.records import Utterance
from emotrace.errors import InputError
from emotrace.features.base import Extractor, Features


def skipped_input(error: InputError, utterance: Utterance) -> InputError:
    """How a failed utterance is reported: by its id, and its file unless the error names the
    utterance (an extractor's own error knows only its position in the batch)."""
    media = utterance.video if error.source == utterance.video else utterance.audio
    named = error.source == utterance.id or not media  # e.g. a missing transcript
    return InputError(utterance.id if named else f"{utterance.id} ({media})", error.problem)


def extract_isolated(extractor: Extractor, inputs: Sequence[Any]) -> list[Features | InputError]:
    """Features of a batch; if it raises an InputError, one input at a time to isolate it."""
    if not inputs:
        return []
    try:
        return list(extractor.extract(list(inputs)))
    except InputError as error:
        if len(inputs) == 1:
            return [error]
        return [outcome for single in inputs for outcome in extract_isolated(extractor, [single])]
