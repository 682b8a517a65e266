"""``benchmarks/fusion.py``: a rerun of some systems keeps the rows measured on the same design; the
recorded command reproduces the run."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from test_benchmark_video import benchmark


def test_a_rerun_keeps_other_rows_of_the_same_pairing_design_only(tmp_path: Path, monkeypatch) -> None:
    fusion = benchmark("fusion")
    common = __import__("common")
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    rows = [
        {"system": "audio only (method A)", "pairings": 3, "comparisons": [{"against": "x"}]},
        {"system": "late fusion, product of probabilities", "pairings": 3},
        {"system": "method B: emotion queries", "pairings": 3},
        {"system": "method B: emotion queries, text removed at test time", "pairings": 3},
        {"system": "text only (BiLSTM on MiniLM)"},  # an older design: one pairing, no count
        {"system": "concatenation baseline (mean-pooled codes)", "pairings": 1},
    ]
    (tmp_path / "ravdess_meld_paired.json").write_text(json.dumps({"date": "2026-11-30", "rows": rows}))

    kept = fusion.earlier_rows("ravdess_meld_paired", ["method B: emotion queries"], pairings=3)

    assert [row["system"] for row in kept] == ["audio only (method A)", "late fusion, product of probabilities"]
    assert all(row["date"] == "2026-11-30" and "comparisons" not in row for row in kept)
    assert fusion.earlier_rows("ravdess_meld_paired", [], pairings=2) == []


def test_rows_without_their_runs_on_this_machine_get_no_comparison(tmp_path: Path) -> None:
    fusion = benchmark("fusion")
    assert not fusion.has_runs({"system": "kept", "runs": ["runs/benchmarks/paired/not-here-seed0"]})
    assert not fusion.has_runs({"system": "text removed"})
    (tmp_path / "metrics.json").write_text("{}")
    assert fusion.has_runs({"system": "measured here", "runs": [str(tmp_path)]})


def test_a_rerun_at_one_noise_share_compares_the_kept_rows_of_the_other_share_too(monkeypatch) -> None:
    fusion = benchmark("fusion")
    monkeypatch.setattr(fusion, "has_runs", lambda row: True)
    monkeypatch.setattr(fusion, "comparison", lambda row, reference: {"against": reference["system"]})
    regulariser, without = "method C: contrastive regulariser", "method C without its regulariser"
    rows = [  # 20 % kept from an earlier run, 40 % measured now
        {"system": fusion.row_label(system, noise), "noisy_text": noise}
        for noise in (0.2, 0.4)
        for system in (regulariser, without)
    ]

    fusion.add_comparisons("noisy", rows)

    assert [row.get("comparisons") for row in rows] == [
        [{"against": f"{without}, 20% noisy text"}],
        None,
        [{"against": f"{without}, 40% noisy text"}],
        None,
    ]


def test_noisy_rows_are_named_by_their_share_and_clean_rows_by_their_system() -> None:
    fusion = benchmark("fusion")
    assert (
        fusion.row_label("method C: contrastive regulariser", 0.2)
        == "method C: contrastive regulariser, 20% noisy text"
    )
    assert fusion.row_label("audio only (method A)", None) == "audio only (method A)"


def test_the_recorded_command_can_be_pasted_back_and_names_no_store(monkeypatch) -> None:
    benchmark("fusion")
    common = __import__("common")
    argv = ["benchmarks/fusion.py", "paired", "--store", "/cache/features", "--systems", "audio only (method A)"]
    monkeypatch.setattr("sys.argv", argv)

    recorded = common.command()

    assert recorded == "python benchmarks/fusion.py paired --systems 'audio only (method A)'"
    assert shlex.split(recorded)[1:] == [argv[0], "paired", "--systems", "audio only (method A)"]
