"""Issue 27's tables: `python benchmarks/peft_table.py FEWSHOT_DIR [--full FULL_DIR] [--csv FILE]`.

FEWSHOT_DIR holds peft_fewshot.sh's sweeps, one folder per setting (hard, ptuning, ptuning-lstm, prompts, lora), a
run per (FewCLUE split, seed) cell. A row per setting: held-out macro-F1 (checkpoint-best, argmax) per task and mean,
mean ± sample std over the cells, and the paired difference to `hard` (full fine-tuning with the hard patterns) cell
by cell, as mean ± std with the cells it wins: the cells differ in difficulty far more than the settings do, so only
the paired figure says whether a setting is better. FULL_DIR holds peft_full.sh's runs, one folder per setting: the
validation macro-F1 of checkpoint-best, argmax and calibrated (training's cross-fitted biases), with the difference
to `hard`. --csv writes every few-shot run's scores, the table's raw material.
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path

from omegaconf import OmegaConf
from unlabelled_table import TASKS, _pm, held_out

from pet_mtl.metrics import calibrated_task_score

SETTINGS = (
    ("hard", "full fine-tuning, hard patterns (`default`)"),
    ("ptuning", "P-tuning: `soft` tokens, all trains"),
    ("ptuning-lstm", "P-tuning with the LSTM prompt encoder"),
    ("prompts", "prompt tuning: `soft` tokens alone"),
    ("lora", "LoRA r=8 (query, value)"),
)


def cells(sweep: Path) -> dict[str, dict[str, float]]:
    """Held-out scores of a sweep's finished runs by cell, `split<s>-seed<k>` from each run's own config."""
    out = {}
    for run in sorted(p for p in sweep.iterdir() if (p / ".hydra" / "config.yaml").is_file()):
        cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
        scores = held_out(run)
        if scores:
            out[f"split{cfg.data.fewclue_split}-seed{cfg.seed}"] = scores
    return out


def fewshot(root: Path, csv_file: Path | None) -> None:
    runs = {s: cells(root / s) for s, _ in SETTINGS if (root / s).is_dir()}
    reference = runs.get("hard", {})
    if csv_file:
        with csv_file.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["setting", "cell", *TASKS, "mean"])
            for s, by_cell in runs.items():
                for c, sc in sorted(by_cell.items()):
                    w.writerow([s, c, *(f"{sc[t]:.4f}" for t in TASKS), f"{statistics.fmean(sc.values()):.4f}"])
    print("| setting | OCNLI | OCEMOTION | TNEWS | mean | vs hard (paired) | cells won | n |")
    print("|---|---|---|---|---|---|---|---|")
    for s, name in SETTINGS:
        by_cell = runs.get(s)
        if not by_cell:
            continue
        means = {c: statistics.fmean(sc.values()) for c, sc in by_cell.items()}
        paired = [m - statistics.fmean(reference[c].values()) for c, m in means.items() if c in reference]
        vs = "" if s == "hard" or not paired else (
            f"{statistics.fmean(paired):+.4f}" + (f" ± {statistics.stdev(paired):.4f}" if len(paired) > 1 else ""))
        won = "" if s == "hard" or not paired else f"{sum(d > 0 for d in paired)}/{len(paired)}"
        print(f"| {name} | " + " | ".join(_pm([sc[t] for sc in by_cell.values()]) for t in TASKS)
              + f" | **{_pm(list(means.values()))}** | {vs} | {won} | {len(by_cell)} |")


def full(root: Path) -> None:
    rows = {}
    for s, name in SETTINGS:
        path = root / s / "metrics.json"
        doc = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        if doc.get("finished"):
            argmax = {t: doc["best"]["tasks"][t]["macro_f1"] for t in TASKS}
            calibrated = {t: calibrated_task_score(doc["calibration"][t]) for t in TASKS}
            rows[s] = (name, argmax, calibrated, doc.get("wall_seconds"))
    print("| setting | OCNLI | OCEMOTION | TNEWS | mean | vs hard | calibrated mean | vs hard | minutes |")
    print("|---|---|---|---|---|---|---|---|---|")
    ref = rows.get("hard")
    for s, (name, argmax, calibrated, wall) in rows.items():
        a, c = statistics.fmean(argmax.values()), statistics.fmean(calibrated.values())
        da = "" if s == "hard" or not ref else f"{a - statistics.fmean(ref[1].values()):+.4f}"
        dc = "" if s == "hard" or not ref else f"{c - statistics.fmean(ref[2].values()):+.4f}"
        print(f"| {name} | " + " | ".join(f"{argmax[t]:.4f}" for t in TASKS)
              + f" | **{a:.4f}** | {da} | {c:.4f} | {dc} | {wall / 60 if wall else float('nan'):.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("fewshot", type=Path)
    ap.add_argument("--full", type=Path, help="peft_full.sh's run folders, one per setting")
    ap.add_argument("--csv", type=Path, help="also every few-shot run's held-out macro-F1, a line per setting and cell")
    args = ap.parse_args()
    fewshot(args.fewshot, args.csv)
    if args.full:
        print()
        full(args.full)


if __name__ == "__main__":
    main()
