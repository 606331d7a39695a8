"""Issue 12's few-shot table: `python benchmarks/unlabelled_table.py OUT_DIR [--csv FILE]` after unlabelled_fewshot.sh.

A row per system, held-out macro-F1 (checkpoint-best, plain argmax, as metrics.json's `held_out`) per task and mean,
mean ± sample std over the (split, seed) cells the system has, and the paired difference to `heads` on those same
cells (the fair comparison: the cells differ in difficulty far more than the systems do). The pattern ensemble is
not one model, so it is computed here: the three pattern models of each cell (pet, pet_alt, pet_both) score the
held-out rows and their label log-probabilities are averaged by validation score (pet_mtl.ensemble's rule), cached
in OUT_DIR/pattern_ensemble.json. A system missing from some cells is paired with heads on its own cells. --csv writes
every run's scores (system, cell, per task), the table's raw material.
"""
from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
from pathlib import Path

from ensemble_gain import ensemble_of, macro_f1s

from pet_mtl.core.io import atomic_write_text

TASKS = ("ocnli", "ocemotion", "tnews")
TEACHERS = ("pet", "pet_alt", "pet_both")
SYSTEMS = (  # (row name, run folder relative to OUT_DIR with {cell} for split<s>-seed<k>; None: the ensemble)
    ("heads", "heads/{cell}"),
    ("pet", "pet/{cell}"),
    ("pet + aux MLM", "pet_mlm/{cell}"),
    ("pet, patterns=alt", "pet_alt/{cell}"),
    ("pet, patterns=ensemble (both in one model)", "pet_both/{cell}"),
    ("ensemble of the 3 pattern models (3 models, not 1)", None),
    ("student: heads", "student_heads/{cell}"),
    ("student: pet", "student_pet/{cell}"),
    ("iPET generation 1, model 0 (default patterns)", "ipet/{cell}/gen1/model0"),
    ("iPET student: pet", "ipet/{cell}/student"),
)


def held_out(run: Path) -> dict[str, float] | None:
    path = run / "metrics.json"
    if not path.is_file():
        return None
    doc = json.loads(path.read_text(encoding="utf-8"))
    if not doc.get("finished") or not doc.get("held_out"):
        return None
    return {t: doc["held_out"]["tasks"][t]["macro_f1"] for t in TASKS}


def cells(out: Path) -> list[str]:
    return sorted({p.name for p in (out / "heads").iterdir() if re.fullmatch(r"split\w+-seed\d+", p.name)})


def pattern_ensemble(out: Path, cell: str, cache: dict) -> dict[str, float] | None:
    if cell not in cache:
        runs = [out / t / cell for t in TEACHERS]
        if not all(held_out(r) for r in runs):
            return None
        _, combined, truth = ensemble_of(runs, "held_out", "validation")
        cache[cell] = macro_f1s(combined, truth)
        atomic_write_text(out / "pattern_ensemble.json", json.dumps(cache, indent=1))
    return cache[cell]


def _pm(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return f"{mean:.4f}" + (f" ± {statistics.stdev(values):.4f}" if len(values) > 1 else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--csv", type=Path, help="also every run's held-out macro-F1, a line per system and cell")
    args = ap.parse_args()
    cache_file = args.out / "pattern_ensemble.json"
    cache = json.loads(cache_file.read_text(encoding="utf-8")) if cache_file.is_file() else {}
    heads = {c: held_out(args.out / "heads" / c) for c in cells(args.out)}
    results = [(name, {c: held_out(args.out / where.format(cell=c)) if where else pattern_ensemble(args.out, c, cache)
                       for c in heads}) for name, where in SYSTEMS]
    if args.csv:
        with args.csv.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["system", "cell", *TASKS, "mean"])
            for name, by_cell in results:
                for c, s in by_cell.items():
                    if s:
                        w.writerow([name, c, *(f"{s[t]:.4f}" for t in TASKS), f"{statistics.fmean(s.values()):.4f}"])
    print("| system | OCNLI | OCEMOTION | TNEWS | mean | vs heads (paired) | n (split, seed) |")
    print("|---|---|---|---|---|---|---|")
    for name, by_cell in results:
        done = {c: s for c, s in by_cell.items() if s and heads[c]}
        if not done:
            continue
        means = [statistics.fmean(s.values()) for s in done.values()]
        diffs = [m - statistics.fmean(heads[c].values()) for c, m in zip(done, means)]
        print(f"| {name} | " + " | ".join(_pm([s[t] for s in done.values()]) for t in TASKS)
              + f" | **{_pm(means)}** | {statistics.fmean(diffs):+.4f} | {len(done)} |")


if __name__ == "__main__":
    main()
