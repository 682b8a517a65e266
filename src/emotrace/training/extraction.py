"""What a run extracts before it trains: the features its inputs lack, and their augmented copies.

With ``data.augment_copies: N`` each audio input also needs N augmented copies of every
clip's features (:mod:`emotrace.features.augmented`, the default chain of
:mod:`emotrace.augmentation`); they are extracted here like missing clean features, and
read into memory beside the clean ones (:func:`copy_sources`).
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console

from emotrace.augmentation import AugmentationConfig
from emotrace.corpora import Utterance
from emotrace.errors import BatchReport
from emotrace.features.augmented import copies_store, copy_id, extract_augmented
from emotrace.features.pipeline import extract_corpus, resolve_extractor
from emotrace.training.config import ExperimentConfig
from emotrace.training.data import Copies


def audio_modalities(config: ExperimentConfig) -> list[str]:
    """The config's inputs computed from audio (those augmented copies exist for)."""
    modalities = [m for m, spec in config.inputs.items() if resolve_extractor(spec.features).modality == "audio"]
    if config.data.augment_copies and not modalities:
        raise ValueError("data.augment_copies augments audio, but the config has no audio input")
    return modalities


def extract_inputs(
    config: ExperimentConfig,
    utterances: Sequence[Utterance],
    progress: bool = True,
    console: Console | None = None,
    report: BatchReport | None = None,
) -> None:
    """Extract whatever the config's stores lack for ``utterances``: clean features, then
    (with ``data.augment_copies``) the augmented copies of the audio ones."""
    extractors = {modality: resolve_extractor(spec.features) for modality, spec in config.inputs.items()}
    report = report if report is not None else BatchReport()
    extract_corpus(
        utterances, list(extractors.values()), config.store_root(), report=report, progress=progress, console=console
    )
    if config.data.augment_copies:
        audio = [extractors[modality] for modality in audio_modalities(config)]
        extract_augmented(
            utterances,
            audio,
            config.store_root(),
            config.data.augment_copies,
            report=report,
            progress=progress,
            console=console,
        )


def copy_sources(config: ExperimentConfig, utterances: Sequence[Utterance]) -> dict[str, Copies]:
    """Per audio modality, the store of its copies and, per utterance id, the ids of its
    ``data.augment_copies`` copies there (none without augmentation); close the stores after use."""
    copies = config.data.augment_copies
    if not copies:
        return {}
    chain = AugmentationConfig()
    ids = {u.id: [copy_id(u.id, chain, copy) for copy in range(copies)] for u in utterances}
    return {
        modality: (copies_store(config.store_root(), config.inputs[modality].features, chain), ids)
        for modality in audio_modalities(config)
    }
