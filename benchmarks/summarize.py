"""Print a run's best evaluation as a markdown table row: `python benchmarks/summarize.py <run dir>`.

Reads only metrics.json (the source of truth of a run; older runs: train.log's first and last timestamps for wall time).
"""
from __future__ import annotations

import json
import re
import sys
from datetime import datetime
from pathlib import Path


def wall_seconds(log: Path) -> float | None:
    stamps = re.findall(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+\]", log.read_text(encoding="utf-8"), re.M)
    if len(stamps) < 2:
        return None
    t0, t1 = (datetime.strptime(s, "%Y-%m-%d %H:%M:%S") for s in (stamps[0], stamps[-1]))
    return (t1 - t0).total_seconds()


def main(run_dir: str) -> None:
    run = Path(run_dir)
    doc = json.loads((run / "metrics.json").read_text())
    history = doc["history"] if isinstance(doc, dict) else doc  # runs from before metrics.json became an object
    best = max(history, key=lambda e: e["score"])
    last = history[-1]
    wall = doc["wall_seconds"] if isinstance(doc, dict) else wall_seconds(run / "train.log")
    print("| step | epoch | OCNLI F1 | OCEMOTION F1 | TNEWS F1 | mean F1 | train s | wall s | train ex/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for e, tag in ((best, "best"), (last, "last")):
        t = e["tasks"]
        print(f"| {e['step']} ({tag}) | {e['epoch']:.2f} | {t['ocnli']['macro_f1']:.4f} | {t['ocemotion']['macro_f1']:.4f} "
              f"| {t['tnews']['macro_f1']:.4f} | **{e['score']:.4f}** | {e['train_seconds']:.0f} | "
              f"{'' if wall is None else f'{wall:.0f}'} | {e['train_examples_per_s']:.1f} |")


if __name__ == "__main__":
    main(sys.argv[1])
