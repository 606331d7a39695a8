"""What an ensemble of finished runs gains over its members, on their validation split.

    python benchmarks/ensemble_gain.py RUN_DIR RUN_DIR [RUN_DIR ...] [--weight-by equal|validation]

The runs must share their data config (the same validation rows: checked). Each run's checkpoint-best scores the
validation rows once (plain argmax, no calibration); the ensemble is pet_mtl.ensemble's rule (the members' label
log-probabilities averaged per row, equally or by validation score); printed: per task and mean, each member's
macro-F1 and the ensemble's, as a markdown table.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout this script sits in

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from pet_mtl import calibration  # noqa: E402
from pet_mtl.checkpoint import load_scorer  # noqa: E402
from pet_mtl.ensemble import average  # noqa: E402
from pet_mtl.inference import Predictor  # noqa: E402
from pet_mtl.regimes import load_task_data  # noqa: E402
from pet_mtl.tasks import get_task  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--weight-by", choices=["equal", "validation"], default="equal")
    args = ap.parse_args()
    configs = [OmegaConf.load(r / ".hydra" / "config.yaml") for r in args.runs]
    for r, c in zip(args.runs[1:], configs[1:]):
        if c.data != configs[0].data:
            raise SystemExit(f"{r}: its data config differs from {args.runs[0]}'s (different validation rows)")
    data = load_task_data(configs[0])
    gold = {t: torch.tensor([get_task(t).label_index(e.label) for e in d.val]) for t, d in data.items()}
    members = []
    for r in args.runs:
        _, _, featurizer, model = load_scorer(r / "checkpoint-best")
        predictor = Predictor(featurizer, model.eval())
        members.append({t: predictor.scores(d.val).float().log_softmax(-1) for t, d in data.items()})
    weights = ([json.loads((r / "metrics.json").read_text())["best"]["score"] for r in args.runs]
               if args.weight_by == "validation" else [1.0] * len(args.runs))
    combined = {t: average([m[t] for m in members], weights) for t in data}
    rows = [(r.name, m) for r, m in zip(args.runs, members)] + [(f"ensemble of {len(members)} ({args.weight_by})", combined)]
    tasks = list(data)
    print("| system | " + " | ".join(t.upper() for t in tasks) + " | mean |")
    print("|---|" + "---|" * (len(tasks) + 1))
    for name, lp in rows:
        f1 = [calibration.macro_f1(lp[t][:, : get_task(t).num_labels].argmax(-1), gold[t], get_task(t).num_labels)
              for t in tasks]
        print(f"| {name} | " + " | ".join(f"{v:.4f}" for v in f1) + f" | **{sum(f1) / len(f1):.4f}** |")


if __name__ == "__main__":
    main()
