"""Seed ensembles: a split seed apart from the training seed keeps validation speakers fixed,
and an ensemble of runs is scored on them as training scores each member."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from emotrace.training import cv as cv_module
from emotrace.training.config import load_config
from emotrace.training.ensemble import evaluate_ensemble
from test_corpora_ased_nemo import build_ased, build_nemo

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture(scope="module")
def config_path(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ensemble")
    trees = {
        "ased": build_ased(root / "ased", speakers=5, sentences=2),
        "nemo": build_nemo(root / "nemo", speakers=("EB0", "IC0", "KD0", "KS0"), takes=2),
    }
    path = root / "c.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "tiny-loco",
                "corpora": [{"name": name, "root": str(tree)} for name, tree in trees.items()],
                "held_out": ["ased", "nemo"],
                "inputs": {"audio": {"features": "logmel", "frame_pooling": 4}},
                "model": {"name": "roi_attention", "lstm_hidden": 8, "projection_dim": 16, "attention_dim": 8},
                "store": str(root / "store"),
                "data": {"batch_size": 8},
                "optim": {"max_epochs": 2, "patience": 5, "lr": 3e-3},
            }
        )
    )
    return path


def _validation(config_path: Path, overrides: list[str]) -> dict[str, tuple[str, ...]]:
    corpus = cv_module.load_experiment_corpus(load_config(config_path, overrides))
    return {fold.name: fold.val for fold in corpus.folds}


def _moving_seed(config_path: Path) -> int:
    """A training seed whose own split validates on other speakers than seed 0's."""
    base = _validation(config_path, [])
    return next(seed for seed in range(1, 20) if _validation(config_path, [f"seed={seed}"]) != base)


def test_split_seed_fixes_validation_speakers_apart_from_the_training_seed(config_path) -> None:
    seed = _moving_seed(config_path)
    base = _validation(config_path, [])
    assert _validation(config_path, [f"seed={seed}", "data.split_seed=0"]) == base
    assert _validation(config_path, [f"seed={seed}", f"data.split_seed={seed}"]) == _validation(
        config_path, [f"seed={seed}"]
    )  # the default split seed is the seed: nothing else changes
    assert load_config(config_path, [f"seed={seed}"]).split_seed == seed


def test_an_ensemble_of_seeds_is_scored_on_shared_validation_speakers(config_path, tmp_path) -> None:
    seed = _moving_seed(config_path)
    runs = {
        "first": [],
        "second": [f"seed={seed}", "data.split_seed=0"],
        "other split": [f"seed={seed}"],
    }
    for name, overrides in runs.items():
        cv_module.run_cv(load_config(config_path, overrides), tmp_path / name, progress=False)
    first, second = tmp_path / "first", tmp_path / "second"

    result = evaluate_ensemble([first, second])
    assert result["members"] == 2 and set(result["per_fold"]) == {"ased", "nemo"}
    for fold, scores in result["per_fold"].items():
        for member, run_dir in zip(scores["member_val_ua"], (first, second)):
            trained = json.loads((run_dir / "folds" / fold / "metrics.json").read_text())["val_ua"]
            assert member == pytest.approx(trained, abs=1e-6)  # scored as model selection scored it
        held_out = scores["cross_corpus"][fold]
        assert held_out["cross4"]["classes"] == ["neutral", "happy", "sad", "angry"]
        assert sum(held_out["predicted_shares_all"].values()) == pytest.approx(100.0)
    assert result["val_ua"] == pytest.approx(np.mean([s["val_ua"] for s in result["per_fold"].values()]))

    alone = evaluate_ensemble([first, first])  # a member averaged with itself is that member
    assert alone["val_ua"] == pytest.approx(alone["member_val_ua"][0])
    with pytest.raises(ValueError, match="split_seed"):
        evaluate_ensemble([first, tmp_path / "other split"])
    with pytest.raises(ValueError, match="at least two"):
        evaluate_ensemble([first])
