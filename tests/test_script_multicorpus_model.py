"""``scripts/train_multicorpus_model.py``: the card's in-corpus figures over several seeds."""

from __future__ import annotations

import importlib.util

import pytest

from test_benchmark_video import REPO


def script():
    spec = importlib.util.spec_from_file_location(
        "train_multicorpus_model", REPO / "scripts" / "train_multicorpus_model.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def summary(fold_uas: dict[str, float], pooled_ua: float) -> dict:
    """A ``write_report`` summary of one seed: RAVDESS tested on fold1 and fold2, ASED on fold3."""
    corpus_of = {"fold1": "ravdess", "fold2": "ravdess", "fold3": "ased"}
    return {
        "per_fold": {
            fold: {"per_corpus": {corpus_of[fold]: {"ua": ua, "wa": ua + 1}}} for fold, ua in fold_uas.items()
        },
        "pooled": {
            "per_corpus": {
                corpus: {"ua": pooled_ua, "wa": pooled_ua + 1, "macro_f1": pooled_ua - 1, "classes": ["a", "b"]}
                for corpus in ("ravdess", "ased")
            }
        },
    }


def test_fold_figures_are_averaged_over_seeds_before_their_spread_over_folds() -> None:
    seeds = [
        summary({"fold1": 70.0, "fold2": 80.0, "fold3": 90.0}, 74.0),
        summary({"fold1": 74.0, "fold2": 76.0, "fold3": 92.0}, 76.0),
    ]
    figures = script().within_corpus_figures(seeds)
    ravdess = figures["ravdess"]
    assert ravdess["folds"] == 2 and ravdess["seeds"] == 2
    # fold1 72, fold2 78 after averaging over seeds: mean 75, std 3 (not the 4.2 of the four runs)
    assert ravdess["ua_mean"] == pytest.approx(75.0) and ravdess["ua_std"] == pytest.approx(3.0)
    assert ravdess["wa_mean"] == pytest.approx(76.0)
    assert ravdess["ua"] == pytest.approx(75.0) and ravdess["macro_f1"] == pytest.approx(74.0)
    assert ravdess["ua_by_seed"] == [74.0, 76.0]
    assert figures["ased"]["folds"] == 1 and figures["ased"]["ua_mean"] == pytest.approx(91.0)
    assert figures["ased"]["ua_std"] == 0.0 and figures["ased"]["classes"] == ["a", "b"]
