"""The noisy-text control: a share of the training side's items carry text of another emotion."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import yaml

from emotrace.training import cv as cv_module
from emotrace.training.config import DataConfig, load_config
from emotrace.training.data import ModalityInputs, with_noisy_text

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def inputs_of(count: int) -> dict[str, ModalityInputs]:
    text = {f"u{i}": np.full((1, 3, 2), i, np.float32) for i in range(count)}
    audio = {f"u{i}": np.full((1, 5, 2), -i, np.float32) for i in range(count)}
    return {"text": ModalityInputs(text, 0.0, False), "audio": ModalityInputs(audio, 50.0, False)}


def test_a_share_of_items_takes_text_of_another_label_and_nothing_else_changes():
    inputs = inputs_of(20)
    ids, labels = list(inputs["text"].frames), [i % 3 for i in range(20)]
    noisy = with_noisy_text(inputs, ids, labels, share=0.4, seed=7)
    swapped = [i for i, name in enumerate(ids) if noisy["text"].frames[name] is not inputs["text"].frames[name]]
    assert len(swapped) == 8
    for index in swapped:
        donor = int(noisy["text"].frames[ids[index]][0, 0, 0])
        assert labels[donor] != labels[index]
    assert noisy["audio"] is inputs["audio"]
    assert all(inputs["text"].frames[name][0, 0, 0] == i for i, name in enumerate(ids))  # the original is intact
    again = with_noisy_text(inputs, ids, labels, share=0.4, seed=7)
    assert all(again["text"].frames[name] is noisy["text"].frames[name] for name in ids)
    with pytest.raises(ValueError, match="needs a text input"):
        with_noisy_text({"audio": inputs["audio"]}, ids, labels, 0.2, 0)
    with pytest.raises(ValueError, match="noisy_text is a share"):
        DataConfig(noisy_text=1.0)


def test_cv_corrupts_training_and_validation_items_and_tests_on_clean_text(tmp_path, monkeypatch):
    rows, rate = [], 16000
    for speaker in range(4):
        for emotion, pitch, words in (("angry", 600.0, "furious shouting"), ("sad", 150.0, "quiet tears")):
            for take in range(3):
                path = tmp_path / f"s{speaker}_{emotion}_{take}.wav"
                t = np.arange(int(0.4 * rate)) / rate
                sf.write(path, (0.3 * np.sin(2 * np.pi * pitch * t)).astype(np.float32), rate)
                rows.append(
                    {"key": path.stem, "wav": str(path), "emo": emotion, "speaker": f"s{speaker}", "transcript": words}
                )
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (tmp_path / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "noisy",
                "corpus": {"name": "manifest", "root": str(tmp_path / "manifest.jsonl")},
                "inputs": {
                    "audio": {"features": "logmel:bins=8", "frame_pooling": 4},
                    "text": {"features": "glove-50d"},
                },
                "model": {"name": "lstm", "lstm_hidden": 4, "lstm_layers": 1, "projection_dim": 8},
                "store": str(tmp_path / "store"),
                "data": {"batch_size": 4, "noisy_text": 0.5},
                "optim": {"max_epochs": 1},
                "folds": ["fold1"],
            }
        )
    )
    datasets = []
    original = cv_module.FeatureDataset

    def recording(ids, labels, inputs, *args, **kwargs):
        datasets.append((list(ids), inputs))
        return original(ids, labels, inputs, *args, **kwargs)

    monkeypatch.setattr(cv_module, "FeatureDataset", recording)
    cv_module.run_cv(load_config(tmp_path / "config.yaml"), tmp_path / "run", progress=False)
    (train_ids, train), (val_ids, val), (test_ids, test) = datasets
    clean = test["text"].frames
    words = {name: clean[name][0].sum() for name in clean}  # "furious shouting" and "quiet tears" differ
    for ids, inputs in ((train_ids, train), (val_ids, val)):
        changed = [name for name in ids if inputs["text"].frames[name][0].sum() != words[name]]
        assert len(changed) == round(0.5 * len(ids))
    assert all(test["text"].frames[name] is clean[name] for name in test_ids)
    assert len({round(float(words[name]), 3) for name in test_ids}) == 2
