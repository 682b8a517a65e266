"""``benchmarks/cross_corpus.py``'s screening of system (b): which options validation keeps."""

from __future__ import annotations

from test_benchmark_video import benchmark

BOTH = "corpus-balanced sampling + waveform augmentation"
LAYERS_1_4 = ["inputs.audio.layers=[1,2,3,4]"]
#: validation UAs where both options help and help more together
BOTH_HELP = {
    "base": 81.0,
    "per-utterance normalisation": 77.5,
    "corpus-balanced sampling": 81.8,
    "waveform augmentation": 81.4,
    BOTH: 82.4,
}


def screened(scores: dict[str, float]) -> tuple[dict[str, list[str]], dict[str, float], str, list[str]]:
    """Run the screen with validation UAs from ``scores`` (by variant name; one not named scores 0,
    so it is never kept), recording the order in which variants were trained."""
    cross_corpus = benchmark("cross_corpus")
    trained: list[str] = []

    def val_ua(name: str, overrides: list[str]) -> float:
        trained.append(name)
        return scores.get(name, 0.0)

    return (*cross_corpus.screen_options(val_ua), trained)


def test_the_longer_schedule_is_screened_on_the_options_kept_and_kept_when_it_beats_them() -> None:
    scores = {
        **BOTH_HELP,
        f"{BOTH} + at most 16 epochs": 82.6,
    }
    variants, screens, chosen, trained = screened(scores)
    assert trained[trained.index(BOTH) + 1] == f"{BOTH} + at most 16 epochs"
    assert chosen == f"{BOTH} + at most 16 epochs" and {name: screens[name] for name in scores} == scores
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
    assert chosen == "corpus-balanced sampling" and BOTH not in trained
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


def test_each_layer_set_is_screened_on_what_was_kept_before_it_and_the_best_that_beats_it_is_kept() -> None:
    scores = {
        **BOTH_HELP,
        f"{BOTH} + at most 16 epochs": 82.3,
        f"{BOTH} + Whisper layers 1-4": 83.0,
        f"{BOTH} + Whisper layers 1-5": 82.7,
    }
    variants, _, chosen, trained = screened(scores)
    # both layer sets rest on the options kept (the 16-epoch cap was dropped), neither on the other
    assert trained[-2:] == [f"{BOTH} + Whisper layers 1-4", f"{BOTH} + Whisper layers 1-5"]
    assert chosen == f"{BOTH} + Whisper layers 1-4"
    assert variants[chosen] == ["data.corpus_balanced=true", "data.augment_copies=1", *LAYERS_1_4]


def test_a_layer_set_must_beat_the_options_kept_to_be_chosen() -> None:
    scores = {
        **BOTH_HELP,
        f"{BOTH} + at most 16 epochs": 82.6,
        f"{BOTH} + at most 16 epochs + Whisper layers 1-4": 82.6,
        f"{BOTH} + at most 16 epochs + Whisper layers 1-5": 82.5,
    }
    _, _, chosen, _ = screened(scores)
    assert chosen == f"{BOTH} + at most 16 epochs"


def test_later_groups_rest_on_the_moving_average_dropped_when_validation_drops_it() -> None:
    no_average = f"{BOTH} + no moving average of the weights"
    scores = {
        **BOTH_HELP,
        f"{BOTH} + at most 16 epochs": 82.0,
        no_average: 82.9,
        f"{no_average} + Whisper layers 1-5": 83.1,
    }
    variants, _, chosen, trained = screened(scores)
    assert trained[-2:] == [f"{no_average} + Whisper layers 1-4", f"{no_average} + Whisper layers 1-5"]
    assert chosen == f"{no_average} + Whisper layers 1-5"
    assert variants[chosen] == [
        "data.corpus_balanced=true",
        "data.augment_copies=1",
        "optim.ema_decay=null",
        "inputs.audio.layers=[1,2,3,4,5]",
    ]
