"""Three short RAVDESS clips shipped with the package, so a fresh install can run end to end.

Attribution and licence (CC BY-NC-SA 4.0) are in this folder's README.md.
"""

from __future__ import annotations

from pathlib import Path

#: A miniature RAVDESS tree (``Actor_XX/<RAVDESS name>.flac``), readable by the corpus reader.
SAMPLES = Path(__file__).resolve().parent


def sample_clips() -> list[Path]:
    """Paths of the shipped clips (16 kHz mono FLAC), sorted by name."""
    return sorted(SAMPLES.glob("Actor_*/*.flac"), key=lambda path: path.name)
