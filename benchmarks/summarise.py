"""Markdown tables of every results file: ``python benchmarks/summarise.py [--readme]``.

With ``--readme`` the tables replace the README's block between the two ``results`` markers,
so the README always shows what the committed results files hold.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
README = Path(__file__).parent.parent / "README.md"
START, END = "<!-- results: start (benchmarks/summarise.py --readme) -->", "<!-- results: end -->"


def figure(row: dict, name: str) -> str:
    if f"{name}_mean" not in row:
        return "–"
    if row.get("folds") == 1:  # one split: no spread over folds to show
        return f"{row[f'{name}_mean']:.1f}"
    return f"{row[f'{name}_mean']:.1f} ± {row[f'{name}_std']:.1f}"


def accuracy_table(result: dict) -> list[str]:
    lines = [
        (
            "| system | protocol | UA | WA | macro-F1 | weighted-F1 | pooled UA [95% CI, speakers] | val UA "
            "| UA by run | s / fold | peak MB |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        extra = f" (UA drop {row['ua_drop']:+.1f})" if "ua_drop" in row else ""
        seeds = " / ".join(f"{ua:.1f}" for ua in row.get("ua_by_seed", [])) or "–"
        pooled = f"{row['ua_pooled']:.1f} [{row['ua_ci'][0]:.1f}, {row['ua_ci'][1]:.1f}]" if "ua_ci" in row else "–"
        validation = f"{row['val_ua_mean']:.1f}" if row.get("val_ua_mean") is not None else "–"
        lines.append(
            f"| {row['system']}{extra}{_dated(row, result)} | {row['protocol']} | {figure(row, 'ua')} | "
            f"{figure(row, 'wa')} | {figure(row, 'macro_f1')} | {figure(row, 'weighted_f1')} | {pooled} | "
            f"{validation} | {seeds} | "
            f"{row.get('seconds_per_fold', '–')} | {row.get('peak_mb', '–')} |"
        )
    return lines


def comparison_table(result: dict) -> list[str]:
    lines = [
        "| system | against | UA difference | per fold | Wilcoxon p | pooled difference [95% CI, speakers] |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        for c in row.get("comparisons", []):
            per_fold = " / ".join(f"{d:+.1f}" for d in c["per_fold"])
            pooled = (
                f"{c['pooled_difference']:+.1f} [{c['difference_ci'][0]:+.1f}, {c['difference_ci'][1]:+.1f}]"
                if "difference_ci" in c
                else "–"
            )
            lines.append(
                f"| {row['system']} | {c['against']} | {c['ua_difference']:+.1f} | {per_fold} | "
                f"{c['wilcoxon_p']} | {pooled} |"
            )
    return lines if len(lines) > 2 else []


def deletion_table(result: dict) -> list[str]:
    """Method A's deletion test: UA lost when its regions of interest go, against random frames."""
    lines = [
        (
            "| system | protocol | deleted | share of frames | UA drop, top attention | UA drop, random places | "
            "difference | mean-pooled share of decisions |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        decision = row.get("decision")
        split = (
            f"{decision['mean_share']:.0%} (attention path alone agrees on {decision['attention_agreement']:.0%})"
            if decision
            else "–"
        )
        for entry in row.get("deletion", []):
            figures = [
                f"{entry[key]:+.1f} [{entry[f'{key}_ci'][0]:+.1f}, {entry[f'{key}_ci'][1]:+.1f}]"
                for key in ("top_drop", "control_drop", "extra_drop")
            ]
            lines.append(
                f"| {row['system']} | {row['protocol']} | {entry['selection']} | "
                f"{entry['deleted_share']:.0%} | {' | '.join(figures)} | {split} |"
            )
    return lines if len(lines) > 2 else []


def real_length_table(result: dict) -> list[str]:
    lines = ["| system | UA | WA | extraction s | x real time |", "|---|---|---|---|---|"]
    for row in result["rows"]:
        lines.append(
            f"| {row['system']} | {figure(row, 'ua')} | {figure(row, 'wa')} | "
            f"{row['extraction_seconds']} | {row['speed']} |"
        )
    return lines


def speed_table(result: dict) -> list[str]:
    rerun = "rerun_seconds" in result["rows"][0]
    lines = [
        "| system | x real time | seconds | peak MB |" + (" rerun: s, computed |" if rerun else ""),
        "|---|---|---|---|" + ("---|" if rerun else ""),
    ]
    for row in result["rows"]:
        speedup = f" ({row['emotrace_speedup']}x slower than emotrace)" if "emotrace_speedup" in row else ""
        if "cpu_speed" in row:  # a shared machine: what the process itself needed, and how busy the cores were
            speedup = f" ({row['cpu_speed']}x per busy core by CPU time; load {row['load'][0]})"
        again = f" {row['rerun_seconds']}, {row['rerun_computed']} |" if rerun else ""
        lines.append(f"| {row['system']}{speedup} | {row['speed']} | {row['seconds']} | {row['peak_mb']} |{again}")
    return lines


def load_table(result: dict) -> list[str]:
    """The service under load: one row per number of clients."""
    lines = [
        "| clients | requests | status codes | throughput /s | accepted p50/p95/p99 ms | /health p99 ms | peak MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        codes = ", ".join(f"{count} x {code}" for code, count in sorted(row["status"].items()))
        accepted = f"{row['accepted_p50_ms']} / {row['accepted_p95_ms']} / {row['accepted_p99_ms']}"
        lines.append(
            f"| {row['clients']} | {row['requests']} | {codes} | {row['throughput']} | {accepted} | "
            f"{row['health_p99_ms']} | {row['peak_mb']} |"
        )
    return lines


def scaling_table(result: dict) -> list[str]:
    lines = ["| system | audio hours per hour | seconds | items |", "|---|---|---|---|"]
    lines += [f"| {row['system']} | {row['speed']} | {row['seconds']} | {row['items']} |" for row in result["rows"]]
    efficiency = ", ".join(f"{step} {value}" for step, value in result["efficiency"].items())
    return [*lines, "", f"scaling efficiency from 1 to 2 actors: {efficiency}"]


def _moment_sample_text(name: str, figures: dict) -> str:
    lacking = figures.get("speakers_without_the_emotion")
    note = f"; {len(lacking)} speakers without that emotion used all their clips" if lacking else ""
    return f"{name}: {figures['wa_mean']:.1f} / {figures['ua_mean']:.1f} (min acc {figures['wa_min']:.1f}{note})"


def cross_corpus_table(result: dict) -> list[str]:
    """One row per system: accuracy / UA on each held-out corpus, their mean and minimum."""
    corpora = result["held_out_corpora"]
    lines = [
        "| system | protocol | "
        + " | ".join(f"{name} acc / UA" for name in corpora)
        + " | mean acc / UA | min acc / UA | seeds |",
        "|---" * (len(corpora) + 5) + "|",
    ]
    for row in result["rows"]:
        cells = [
            f"{row['per_corpus'][name]['wa']:.1f} / {row['per_corpus'][name]['ua']:.1f}"
            if name in row["per_corpus"]
            else "–"
            for name in corpora
        ]
        lines.append(
            f"| {row['system']}{_dated(row, result)} | {row['protocol']} | {' | '.join(cells)} | "
            f"{row['wa_mean']:.1f} / {row['ua_mean']:.1f} | {row['wa_min']:.1f} / {row['ua_min']:.1f} | "
            f"{row.get('seeds', '–')} |"
        )
    for row in result["rows"]:
        if "moment_samples" in row:
            tried = "; ".join(_moment_sample_text(name, figures) for name, figures in row["moment_samples"].items())
            lines += [
                "",
                f"{row['system']}, each held-out speaker's moments from a sample of their clips instead of all "
                f"of them (mean acc / UA over the held-out corpora, seeds averaged): all clips "
                f"{row['wa_mean']:.1f} / {row['ua_mean']:.1f}; {tried}.",
            ]
    if "screens" in result:
        screens = result["screens"]
        tried = ", ".join(f"{name} {value:.1f}" for name, value in screens["val_ua"].items())
        lines += [
            "",
            f"Options screened on validation speakers (seed {screens['seed']}, {screens['selection']}): "
            f"{tried}; kept: {screens['chosen']}.",
        ]
        if "ensemble" in screens:
            lines += ["", ensemble_line(screens["ensemble"])]
    return lines


def ensemble_line(ensemble: dict) -> str:
    """The seed ensemble's screen: validation against its members, then (reported only) held out and cost."""
    cost = ensemble["predict_cost"]
    speed = next(value for key, value in cost.items() if key.startswith("ensemble_"))
    members = " / ".join(f"{ua:.1f}" for ua in ensemble["member_val_ua"])
    return (
        f"Seed ensemble ({ensemble['members']}; calibrated probabilities averaged): validation UA "
        f"{ensemble['val_ua']:.1f} against its members' {members}: {'kept' if ensemble['kept'] else 'dropped'} "
        f"({ensemble['rule']}). Held out, reported only: mean UA {ensemble['held_out_ua_mean']:.1f} against "
        f"{ensemble['members_held_out_ua_mean']:.1f} for its members. Predict cost per clip "
        f"({cost['clips']} RAVDESS clips, median {cost['median_clip_seconds']} s): Whisper encoder "
        f"{cost['encoder_ms']} ms, one head {cost['head_ms']} ms; {cost['single_x_real_time']}x real time with one "
        f"head, {speed}x with the ensemble."
    )


def finetune_table(result: dict) -> list[str]:
    """Fine-tuned encoder layers: cost, and validation UA per epoch beside the base's on one fold."""
    lines = [
        "| system | finished | val UA by epoch | base val UA by epoch | s / step (base, fine-tuned) "
        "| min / epoch (base, fine-tuned) | screen hours | head ms / clip (base, fine-tuned) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        by_epoch = {
            name: " / ".join(f"{ua:.1f}" for ua in row[name]) or "–"
            for name in ("val_ua_by_epoch", "base_val_ua_by_epoch")
        }
        pair = {
            name: " / ".join(str(value) for value in row[name].values())
            for name in ("step_seconds", "epoch_minutes", "head_ms_per_clip")
        }
        lines.append(
            f"| {row['system']} | {'yes' if row['finished'] else 'no'} | {by_epoch['val_ua_by_epoch']} | "
            f"{by_epoch['base_val_ua_by_epoch']} | {pair['step_seconds']} | {pair['epoch_minutes']} | "
            f"{row['screen_hours']} | {pair['head_ms_per_clip']} |"
        )
    return lines


def speech_check_table(result: dict) -> list[str]:
    """Per threshold: real clips refused as 'no speech', per corpus, and non-speech let through."""
    corpora = list(result["rows"][0]["per_corpus"])
    lines = [
        "| silero threshold | "
        + " | ".join(f"{name} refused % (worst emotion)" for name in corpora)
        + " | synthetic non-speech let through | |",
        "|---" * (len(corpora) + 3) + "|",
    ]
    for row in result["rows"]:
        cells = [
            f"{row['per_corpus'][name]['missed']:.1f} ({row['per_corpus'][name]['worst_emotion']})" for name in corpora
        ]
        through = f"{len(row['synthetic_through'])} of {row['synthetic']}"
        if row["synthetic_through"]:
            through += f": {', '.join(row['synthetic_through'])}"
        lines.append(f"| {row['threshold']} | {' | '.join(cells)} | {through} | {'used' if row['chosen'] else ''} |")
    return lines


def precision_table(result: dict) -> list[str]:
    """Each precision's accuracy and speed, then what changes between them."""
    corpora = list(result["rows"][0]["ua_per_corpus"])
    lines = [
        "| system | " + " | ".join(f"{name} UA" for name in corpora) + " | mean UA | x real time | seconds |",
        "|---" * (len(corpora) + 4) + "|",
    ]
    for row in result["rows"]:
        cells = " | ".join(f"{row['ua_per_corpus'][name]:.1f}" for name in corpora)
        lines.append(f"| {row['system']} | {cells} | {row['ua_mean']:.1f} | {row['speed']} | {row['seconds']} |")
    change = result["comparison"]
    lines += [
        "",
        f"Same label on {change['same_label_percent']} % of {change['clips']} clips; the largest probability shift "
        f"per clip: mean {change['probability_shift_mean']}, 99th percentile {change['probability_shift_p99']}, "
        f"max {change['probability_shift_max']}.",
    ]
    return lines


def _dated(row: dict, result: dict) -> str:
    """A row kept from an earlier run of its benchmark says when it was measured."""
    return f" (measured {row['date']})" if row.get("date", result["date"]) != result["date"] else ""


def tables() -> str:
    out = []
    for path in sorted(RESULTS.glob("*.json")):
        result = json.loads(path.read_text())
        rows = result["rows"]
        out.append(f"**{result['benchmark']}**: `{result['command']}` ({result['date']}, {result['machine']})\n")
        out.append(f"{result['protocol']}\n")
        if "held_out_corpora" in result:
            out.extend(cross_corpus_table(result))
        elif rows and "val_ua_by_epoch" in rows[0]:
            out.extend(finetune_table(result))
        elif "comparison" in result and "same_label_percent" in result["comparison"]:
            out.extend(precision_table(result))
        elif rows and "synthetic_through" in rows[0]:
            out.extend(speech_check_table(result))
        elif rows and "extraction_seconds" in rows[0]:
            out.extend(real_length_table(result))
        elif rows and "clients" in rows[0]:
            out.extend(load_table(result))
        elif rows and "actors" in rows[0]:
            out.extend(scaling_table(result))
        elif rows and "speed" in rows[0]:
            out.extend(speed_table(result))
        elif rows and "ua_mean" in rows[0]:
            out.extend(accuracy_table(result))
            if comparisons := comparison_table(result):
                out.extend(["", *comparisons])
            if deletions := deletion_table(result):
                out.extend(["", *deletions])
        else:  # ASR
            out.append("| system | WER % | sentences exact % | RTF |\n|---|---|---|---|")
            out.extend(f"| {r['system']} | {r['wer']} | {r['sentence_accuracy']} | {r['rtf']} |" for r in rows)
        out.append("")
    return "\n".join(out + selection_tables())


def selection_tables() -> list[str]:
    """The validation screens (benchmarks/selection.py): which setting validation picks."""
    out = []
    for path in sorted((RESULTS / "selection").glob("*.json")):
        result = json.loads(path.read_text())
        out += [
            f"**{result['benchmark']}**: `{result['command']}` ({result['date']}, {result['machine']})\n",
            f"{result['protocol']}\n",
            "| variant | val UA | val UA by seed | epochs | |",
            "|---|---|---|---|---|",
        ]
        for row in result["rows"]:
            seeds = " / ".join(f"{ua:.1f}" for ua in row["val_ua_by_seed"])
            out.append(
                f"| {row['system']} | {row['val_ua_mean']:.1f} ± {row['val_ua_std']:.1f} | {seeds} | "
                f"{row['epochs_mean']} | {'picked' if row['chosen'] else ''} |"
            )
        out.append("")
    return out


def main() -> None:
    if "--readme" not in sys.argv[1:]:
        print(tables())
        return
    text = README.read_text()
    if START not in text or END not in text:
        sys.exit(f"{README}: the results markers are missing")
    head, rest = text.split(START, 1)
    README.write_text(f"{head}{START}\n\n{tables()}\n{END}{rest.split(END, 1)[1]}")


if __name__ == "__main__":
    main()
