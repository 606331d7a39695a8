"""Calibration rules compared on a finished run's validation split, each scored on rows it was not fitted on.

    python benchmarks/calibration.py <run dir> [--zero-shot MODEL_DIR]

Reads the run's own config (.hydra/config.yaml) to rebuild exactly its validation rows and training label counts,
scores the validation rows once with checkpoint-best, and prints per task the validation macro-F1 of: the plain
argmax; fitted biases (2-fold cross-fitted: fitted on one half, scoring the other); logit adjustment with the
training prior (tau 1, nothing fitted); contextual calibration (content-free inputs). With --zero-shot, the same for
the untrained masked LM through the run's patterns, where contextual calibration is meant to help.
"""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import torch
from finished_run import config, predictor

from pet_mtl.backbones.loading import load_pretrained
from pet_mtl.core.tasks import get_task
from pet_mtl.data.readers import Example
from pet_mtl.data.regimes import load_task_data
from pet_mtl.inference import calibration
from pet_mtl.inference.predictor import Predictor
from pet_mtl.methods import build_scorer

CONTENT_FREE = ["N/A", "无", "[MASK]"]


def rules(predictor: Predictor, data) -> list[str]:
    lines = []
    for task, d in data.items():
        t = get_task(task)
        log_probs = predictor.scores(d.val).log_softmax(-1)
        gold = torch.tensor([t.label_index(e.label) for e in d.val])
        halves = torch.randperm(len(gold), generator=torch.Generator().manual_seed(0)) % 2 == 0
        crossed = torch.empty_like(gold)
        for fit_on in (halves, ~halves):
            crossed[~fit_on] = (log_probs[~fit_on] + calibration.fit_biases(log_probs[fit_on], gold[fit_on])).argmax(-1)
        counts = Counter(e.label for e in d.train)
        prior = calibration.logit_adjustment([counts[c] for c in t.labels])
        free = [Example(task, f"cf{i}", {f: text for f in t.fields}, None) for i, text in enumerate(CONTENT_FREE)]
        ctx = calibration.contextual(predictor.scores(free))
        n = t.num_labels
        row = [calibration.macro_f1(log_probs.argmax(-1), gold, n), calibration.macro_f1(crossed, gold, n),
               calibration.macro_f1((log_probs + prior).argmax(-1), gold, n),
               calibration.macro_f1((log_probs + ctx).argmax(-1), gold, n)]
        lines.append(f"| {task} | {len(gold)} | " + " | ".join(f"{v:.4f}" for v in row) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--zero-shot", help="also the untrained masked LM at this path, through the run's patterns")
    args = ap.parse_args()
    data = load_task_data(config(args.run))
    head = ["| task | validation rows | argmax | fitted biases (cross-fitted) | logit adjustment | contextual |",
            "|---|---|---|---|---|---|"]
    print(f"trained: {args.run / 'checkpoint-best'}", *head, *rules(predictor(args.run), data), sep="\n")
    if args.zero_shot:
        from pet_mtl.inference.checkpoint import load_meta
        from pet_mtl.prompts import Pattern

        meta = load_meta(args.run / "checkpoint-best")  # the run's patterns and tasks; its weights are not needed
        tokenizer, mlm = load_pretrained(args.zero_shot)
        patterns = {t: [Pattern.from_dict(d, "run") for d in meta["patterns"] if d["task"] == t] for t in meta["tasks"]}
        f, m = build_scorer("pet", tokenizer, mlm, patterns, list(meta["tasks"]), meta["max_length"])
        print(f"\nzero-shot: {args.zero_shot}", *head, *rules(Predictor(f, m.eval()), data), sep="\n")


if __name__ == "__main__":
    main()
