"""What an ensemble of finished runs gains over its members, on their validation split.

    python benchmarks/ensemble_gain.py RUN_DIR RUN_DIR [RUN_DIR ...] [--weight-by equal|validation] [--rows held_out]

The runs must share their data config (the same validation rows: checked). Each run's checkpoint-best scores the
validation rows (or, `--rows held_out`, the few-shot regime's held-out set) once (plain argmax, no calibration);
the ensemble is pet_mtl.ensemble's rule (the members' label log-probabilities averaged per row, equally or by
validation score, read as distillation reads its teachers'); printed: per task and mean, each member's
macro-F1 and the ensemble's, as a markdown table.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from finished_run import config, gold, log_probs, rows

from pet_mtl.core.tasks import get_task
from pet_mtl.ensemble import average
from pet_mtl.inference import calibration
from pet_mtl.training.distillation import teacher_weights


def macro_f1s(lp: dict, truth: dict) -> dict[str, float]:
    """Per task, the plain argmax's macro-F1 (scores beyond a task's labels are padding)."""
    return {t: calibration.macro_f1(lp[t][:, : get_task(t).num_labels].argmax(-1), truth[t], get_task(t).num_labels)
            for t in lp}


def ensemble_of(runs: list[Path], which: str = "val", weight_by: str = "equal") -> tuple[list[dict], dict, dict]:
    """Each run's label log-probabilities of the shared rows, their ensemble by pet_mtl.ensemble's rule, the gold."""
    configs = [config(r) for r in runs]
    for r, c in zip(runs[1:], configs[1:]):
        if c.data != configs[0].data:
            raise SystemExit(f"{r}: its data config differs from {runs[0]}'s (different rows)")
    examples = rows(runs[0], which)
    members = [log_probs(r, examples) for r in runs]
    weights = teacher_weights([str(r) for r in runs], weight_by == "validation")
    return members, {t: average([m[t] for m in members], weights) for t in examples}, gold(examples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--weight-by", choices=["equal", "validation"], default="equal")
    ap.add_argument("--rows", choices=["val", "held_out"], default="val")
    args = ap.parse_args()
    members, combined, truth = ensemble_of(args.runs, args.rows, args.weight_by)
    named = [(f"{r.parent.name}/{r.name}", m) for r, m in zip(args.runs, members)]
    named.append((f"ensemble of {len(members)} ({args.weight_by})", combined))
    tasks = list(combined)
    print("| system | " + " | ".join(t.upper() for t in tasks) + " | mean |")
    print("|---|" + "---|" * (len(tasks) + 1))
    for name, lp in named:
        f1 = list(macro_f1s(lp, truth).values())
        print(f"| {name} | " + " | ".join(f"{v:.4f}" for v in f1) + f" | **{sum(f1) / len(f1):.4f}** |")


if __name__ == "__main__":
    main()
