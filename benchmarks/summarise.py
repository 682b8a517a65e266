"""Markdown tables of every results file, for the README: ``python benchmarks/summarise.py``."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def figure(row: dict, name: str) -> str:
    if f"{name}_mean" not in row:
        return "–"
    return f"{row[f'{name}_mean']:.1f} ± {row[f'{name}_std']:.1f}"


def accuracy_table(result: dict) -> list[str]:
    lines = ["| system | protocol | UA | WA | macro-F1 | weighted-F1 | UA by seed | s / fold | peak MB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        extra = f" (UA drop {row['ua_drop']:+.1f})" if "ua_drop" in row else ""
        seeds = " / ".join(f"{ua:.1f}" for ua in row.get("ua_by_seed", [])) or "–"
        lines.append(
            f"| {row['system']}{extra} | {row['protocol']} | {figure(row, 'ua')} | {figure(row, 'wa')} | "
            f"{figure(row, 'macro_f1')} | {figure(row, 'weighted_f1')} | {seeds} | "
            f"{row.get('seconds_per_fold', '–')} | {row.get('peak_mb', '–')} |"
        )
    return lines


def real_length_table(result: dict) -> list[str]:
    lines = ["| system | UA | WA | extraction s | x real time |", "|---|---|---|---|---|"]
    for row in result["rows"]:
        lines.append(f"| {row['system']} | {figure(row, 'ua')} | {figure(row, 'wa')} | "
                     f"{row['extraction_seconds']} | {row['speed']} |")
    return lines


def speed_table(result: dict) -> list[str]:
    lines = ["| system | x real time | seconds | peak MB |", "|---|---|---|---|"]
    for row in result["rows"]:
        speedup = f" ({row['emotrace_speedup']}x slower than emotrace)" if "emotrace_speedup" in row else ""
        lines.append(f"| {row['system']}{speedup} | {row['speed']} | {row['seconds']} | {row['peak_mb']} |")
    return lines


def main() -> None:
    for path in sorted(RESULTS.glob("*.json")):
        result = json.loads(path.read_text())
        rows = result["rows"]
        print(f"**{result['benchmark']}**: `{result['command']}` ({result['date']}, {result['machine']})\n")
        print(f"{result['protocol']}\n")
        if rows and "extraction_seconds" in rows[0]:
            print("\n".join(real_length_table(result)))
        elif rows and "speed" in rows[0]:
            print("\n".join(speed_table(result)))
        elif rows and "ua_mean" in rows[0]:
            print("\n".join(accuracy_table(result)))
        else:  # ASR
            print("| system | WER % | sentences exact % | RTF |\n|---|---|---|---|")
            print("\n".join(f"| {r['system']} | {r['wer']} | {r['sentence_accuracy']} | {r['rtf']} |" for r in rows))
        print()


if __name__ == "__main__":
    main()
