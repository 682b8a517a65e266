"""``benchmarks/cross_corpus.py``'s screening of system (b): which options validation keeps."""

from __future__ import annotations

from test_benchmark_video import benchmark


def screened(scores: dict[str, float]) -> tuple[dict[str, list[str]], dict[str, float], str, list[str]]:
    """Run the screen with validation UAs from ``scores`` (by variant name), recording the order."""
    cross_corpus = benchmark("cross_corpus")
    trained: list[str] = []

    def val_ua(name: str, overrides: list[str]) -> float:
        trained.append(name)
        return scores[name]

    return (*cross_corpus.screen_options(val_ua), trained)


def test_the_longer_schedule_is_screened_on_the_options_kept_and_kept_when_it_beats_them() -> None:
    both = "corpus-balanced sampling + waveform augmentation"
    scores = {
        "base": 81.0,
        "per-utterance normalisation": 77.5,
        "corpus-balanced sampling": 81.8,
        "waveform augmentation": 81.4,
        both: 82.4,
        f"{both} + at most 16 epochs": 82.6,
    }
    variants, screens, chosen, trained = screened(scores)
    assert trained[-2:] == [both, f"{both} + at most 16 epochs"]
    assert chosen == f"{both} + at most 16 epochs" and screens == scores
    assert variants[chosen] == ["data.corpus_balanced=true", "data.augment_copies=1", "optim.max_epochs=16"]


def test_a_schedule_that_does_not_beat_the_options_kept_is_dropped() -> None:
    scores = {
        "base": 81.0,
        "per-utterance normalisation": 77.5,
        "corpus-balanced sampling": 81.8,
        "waveform augmentation": 80.0,
        "corpus-balanced sampling + at most 16 epochs": 81.8,
    }
    variants, _, chosen, trained = screened(scores)
    assert chosen == "corpus-balanced sampling" and "corpus-balanced sampling + waveform augmentation" not in trained
    assert variants[chosen] == ["data.corpus_balanced=true"]


def test_the_schedule_alone_is_screened_when_no_option_beats_the_base() -> None:
    scores = {
        "base": 81.0,
        "per-utterance normalisation": 77.5,
        "corpus-balanced sampling": 80.8,
        "waveform augmentation": 80.0,
        "base + at most 16 epochs": 81.2,
    }
    variants, _, chosen, _ = screened(scores)
    assert chosen == "base + at most 16 epochs" and variants[chosen] == ["optim.max_epochs=16"]
