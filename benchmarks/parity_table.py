"""The parity table of issue 10: `python benchmarks/parity_table.py REF.json RUN_DIR... [--names a,b,...]`.

A row per system, validation macro-F1 per task and mean, and the difference to the first (the plain reference's JSON
from benchmarks/plain_classifier.py, or a run). A pet_mtl run is read from its metrics.json (give the run directory
or the file, e.g. a copy kept in benchmarks/results/parity/NAME.metrics.json): the last evaluation
(one epoch, eval_every=0: the end of training, as the reference is scored), plain argmax. The last column is the
run's calibrated mean as its training ended (metrics.json `calibration`: per task the 2-fold cross-fitted score
where the biases were applied, else the argmax; `benchmarks/calibration.py` compares the other rules). A run with
`train.ema` gets a second row, its trained weights without the average (the last evaluation's `without_ema`: the
same trajectory, so the difference is the average's alone).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

TASKS = ("ocnli", "ocemotion", "tnews")


def scores(path: Path) -> list[tuple[str, dict[str, float], float | None]]:
    """(suffix, per-task argmax macro-F1, calibrated mean or None) for the system, and for its trained weights when
    the run averaged them."""
    file = path if path.is_file() else path / "metrics.json"  # a run directory, or a kept copy of its metrics.json
    doc = json.loads(file.read_text(encoding="utf-8"))
    if "history" not in doc:  # the plain reference
        return [("", {t: doc["tasks"][t]["macro_f1"] for t in TASKS}, None)]
    if not doc.get("finished"):
        raise SystemExit(f"{file}: the run has not finished")
    last = doc["history"][-1]
    cal = doc.get("calibration")  # training's own: the cross-fitted score where it applied the biases
    calibrated = (sum(cal[t]["cross_fitted"] if cal[t]["applied"] else cal[t]["before"] for t in TASKS) / len(TASKS)
                  if cal else None)
    rows = [("", {t: last["tasks"][t]["macro_f1"] for t in TASKS}, calibrated)]
    if "without_ema" in last:
        rows.append((" (trained weights, no average)",
                     {t: last["without_ema"]["tasks"][t]["macro_f1"] for t in TASKS}, None))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("systems", nargs="+", type=Path)
    p.add_argument("--names", default=None, help="comma-separated row names (default: the file or folder names)")
    args = p.parse_args()
    names = args.names.split(",") if args.names else [s.name.removesuffix(".metrics.json").removesuffix(".json")
                                                      for s in args.systems]
    rows = [(n + suffix, s, cal) for n, path in zip(names, args.systems) for suffix, s, cal in scores(path)]
    base = sum(rows[0][1].values()) / len(TASKS)
    print("| system | OCNLI | OCEMOTION | TNEWS | mean | vs " + rows[0][0] + " | calibrated mean |")
    print("|---|---|---|---|---|---|---|")
    for name, s, cal in rows:
        mean = sum(s.values()) / len(TASKS)
        print(f"| {name} | " + " | ".join(f"{s[t]:.4f}" for t in TASKS) + f" | **{mean:.4f}** | {mean - base:+.4f} | "
              + ("-" if cal is None else f"{cal:.4f}") + " |")


if __name__ == "__main__":
    main()
