"""The openSMILE feature sets that SER papers report against (eGeMAPS, ComParE).

``egemaps``: the 25 eGeMAPSv02 low-level descriptors per 10 ms frame (100 Hz; openSMILE
frame ``i`` starts at ``i`` x 10 ms, with 20-60 ms analysis windows, so it has a few
frames fewer than ``samples / 160``). ``egemaps-functionals``: the 88 eGeMAPSv02
functionals of the whole input, one frame. ``compare``: the 6373 ComParE_2016 functionals,
one frame. openSMILE is under a research (non-commercial) licence.

Each input gets its own openSMILE engine, and an engine runs outside the GIL, so a batch is
spread over as many threads as torch's intra-op setting (``emotrace extract --threads``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import Any

import numpy as np

from emotrace.audio import SAMPLE_RATE
from emotrace.errors import InputError
from emotrace.features.base import Extractor, Features
from emotrace.features.inputs import ExtractorConfigError, checked_waveforms

LLD_FRAME_RATE = 100.0

#: name -> (openSMILE feature set, feature level)
FEATURE_SETS = {
    "egemaps": ("eGeMAPSv02", "LowLevelDescriptors"),
    "egemaps-functionals": ("eGeMAPSv02", "Functionals"),
    "compare": ("ComParE_2016", "Functionals"),
}


class OpenSmileExtractor(Extractor):
    """An openSMILE feature set: ``(1, frames, dims)``, frames at 100 Hz or one functional frame."""

    modality = "audio"
    version = 1

    def __init__(self, name: str):
        if name not in FEATURE_SETS:
            raise ExtractorConfigError(f"unknown openSMILE set {name!r}; known: {', '.join(FEATURE_SETS)}")
        self.name = name
        self.feature_set, self.feature_level = FEATURE_SETS[name]
        self.frame_rate = LLD_FRAME_RATE if self.feature_level == "LowLevelDescriptors" else 0.0

    def config(self) -> dict[str, Any]:
        return {"feature_set": self.feature_set, "feature_level": self.feature_level}

    @cached_property
    def _smile(self) -> Any:
        try:
            import opensmile
        except ModuleNotFoundError as error:
            raise ExtractorConfigError("openSMILE extractors need: pip install 'emotrace[opensmile]'") from error
        return opensmile.Smile(
            feature_set=opensmile.FeatureSet[self.feature_set],
            feature_level=opensmile.FeatureLevel[self.feature_level],
        )

    def extract(self, inputs: Sequence[np.ndarray] | Sequence[str]) -> list[Features]:
        import torch

        waveforms = checked_waveforms(inputs)
        smile = self._smile
        with warnings.catch_warnings(), ThreadPoolExecutor(max(1, torch.get_num_threads())) as pool:
            warnings.simplefilter("ignore", UserWarning)  # "segment too short": an InputError below
            outputs = list(pool.map(lambda waveform: smile.process_signal(waveform, SAMPLE_RATE), waveforms))
        results = []
        for position, (waveform, output) in enumerate(zip(waveforms, outputs)):
            values = output.to_numpy(dtype=np.float32)
            # openSMILE fills what it cannot compute (an input under ~60 ms) with NaN
            if values.shape[0] == 0 or np.isnan(values).any():
                raise InputError(f"input {position}", f"{len(waveform)} samples is too short for {self.name}")
            results.append(Features(data=values[None], frame_rate=self.frame_rate))
        return results
