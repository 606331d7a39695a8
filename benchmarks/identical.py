"""Behaviour unchanged: the same fixed-config runs from two checkouts give identical scores and weights.

A refactor (moving modules, turning the trainer's tricks into plug-ins) must not change what a run computes. This
script runs one set of small fixed-config jobs from a checkout, and compares two such sets:

    python benchmarks/identical.py run --checkout /tmp/before --out /work/runs/identical/before
    python benchmarks/identical.py run --checkout .           --out /work/runs/identical/after
    python benchmarks/identical.py compare /work/runs/identical/before /work/runs/identical/after

Each job: zh-mini-mlm on 2,000 training rows per task (validation 500 per task), 150 optimizer steps, seed 1,
evaluation every 50 steps, one thread (so the float summation order is the same machine-wide), no submission.
Jobs: pet, heads, pet with R-Drop, pet with the weight average, pet with the auxiliary MLM, a pet student distilled
from pet and heads, and 30 steps of masked-LM pretraining. `compare` checks metrics.json (every score of every
evaluation, times left out), calibration.json and every tensor of checkpoint-best and checkpoint-last (model,
method parameters, optimizer moments) bit for bit, and prints one line per job.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
MODEL = SHARED / "models" / "zh-mini-mlm"
DATA = SHARED / "data" / "tianchi"
COMMON = [f"model.path={MODEL}", f"data.dir={DATA}", "data.max_train_per_task=2000", "data.max_val_per_task=500",
          "train.max_steps=150", "train.eval_every=50", "train.batch_size=16", "train.lr=3e-4", "seed=1",
          "train.predict_splits=[]", "train.progress=false", "train.num_threads=1"]
UNLABELLED = ["data.unlabelled.ocnli=[a]", "data.unlabelled.ocemotion=[a]", "data.unlabelled.tnews=[a]"]
#: name -> (entry module, overrides); a job may name earlier jobs' run directories as {out}/<name>
JOBS = {
    "pet": ("pet_mtl.train", []),
    "heads": ("pet_mtl.train", ["method=heads"]),
    "pet_rdrop": ("pet_mtl.train", ["train.rdrop=1.0"]),
    "pet_ema": ("pet_mtl.train", ["train.ema=0.99"]),
    "pet_aux_mlm": ("pet_mtl.train", ["train.mlm_weight=0.1", "train.mlm_batch_size=8", *UNLABELLED]),
    "student": ("pet_mtl.distill", ["teachers=[{out}/pet,{out}/heads]", "distill.max_rows_per_task=500",
                                    *UNLABELLED]),
}
PRETRAIN = [f"model.path={MODEL}", f"text=[{DATA}/TNEWS_train.csv]", "train.max_steps=30", "train.eval_every=10",
            "train.save_every=10", "train.batch_size=8", "data.eval_docs=100", "seed=1", "train.progress=false",
            "train.num_threads=1", "train.keep_checkpoint=true"]
#: checkpoint keys renamed on purpose (old prefix -> new prefix): the weight average's trained weights are saved under
#: the plug-in's own name since the trainer became plug-ins (issue 24); the values are compared as before
RENAMED_KEYS = [("train_state/tensors.safetensors:trained.", "train_state/tensors.safetensors:ema.trained.")]
#: keys that measure time, not what was computed
TIMES = {"train_seconds", "eval_seconds", "train_examples_per_s", "wall_seconds", "seconds", "examples_per_s",
         "tokens_per_s"}


def run(checkout: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(checkout), "HF_HUB_OFFLINE": "1"}
    for name, (entry, extra) in JOBS.items():
        if (out / name / "metrics.json").is_file():
            continue
        args = [a.format(out=out) for a in COMMON + extra] + [f"hydra.run.dir={out / name}"]
        print(f"{name}: python -m {entry} {' '.join(args)}", flush=True)
        subprocess.run([sys.executable, "-m", entry, *args], cwd=checkout, env=env, check=True,
                       stdout=subprocess.DEVNULL)
    if not (out / "pretrain" / "metrics.json").is_file():
        args = PRETRAIN + [f"out_dir={out / 'pretrain'}"]
        print(f"pretrain: python -m pet_mtl.pretrain {' '.join(args)}", flush=True)
        subprocess.run([sys.executable, "-m", "pet_mtl.pretrain", *args], cwd=checkout, env=env, check=True,
                       stdout=subprocess.DEVNULL)


def without_times(doc):
    if isinstance(doc, dict):
        return {k: without_times(v) for k, v in doc.items() if k not in TIMES}
    if isinstance(doc, list):
        return [without_times(v) for v in doc]
    return doc


def tensors(folder: Path) -> dict[str, "object"]:
    from safetensors.torch import load_file

    found = {}
    for path in sorted(folder.rglob("*.safetensors")):
        for key, value in load_file(path).items():
            key = f"{path.relative_to(folder)}:{key}"
            for old, new in RENAMED_KEYS:
                key = new + key[len(old):] if key.startswith(old) else key
            found[key] = value
    return found


def differences(a: Path, b: Path) -> list[str]:
    import torch

    out = []
    for name in ("metrics.json", "checkpoint-best/calibration.json"):
        if (a / name).is_file() or (b / name).is_file():
            da, db = (without_times(json.loads((d / name).read_text())) if (d / name).is_file() else None
                      for d in (a, b))
            if da != db:
                out.append(f"{name} differs")
    for folder in ("checkpoint-best", "checkpoint-last", "."):
        ta = tensors(a / folder) if folder != "." else {k: v for k, v in tensors(a).items() if "/" not in k}
        tb = tensors(b / folder) if folder != "." else {k: v for k, v in tensors(b).items() if "/" not in k}
        if set(ta) != set(tb):
            out.append(f"{folder}: tensors {sorted(set(ta) ^ set(tb))[:4]} in one only")
        worst = max((float((ta[k].float() - tb[k].float()).abs().max()) for k in set(ta) & set(tb)
                     if ta[k].shape == tb[k].shape), default=0.0)
        unequal = [k for k in set(ta) & set(tb) if not torch.equal(ta[k], tb[k])]
        if unequal:
            out.append(f"{folder}: {len(unequal)} of {len(ta)} tensors differ (max |diff| {worst:.3g})")
    return out


def compare(a: Path, b: Path) -> int:
    bad = 0
    for name in [*JOBS, "pretrain"]:
        diff = differences(a / name, b / name)
        score = without_times(json.loads((a / name / "metrics.json").read_text()))
        last = score["history"][-1]
        shown = last.get("score", last.get("pseudo_perplexity"))
        print(f"{name:12s} {'identical' if not diff else 'DIFFERENT: ' + '; '.join(diff)} (last evaluation "
              f"{shown:.4f})")
        bad += bool(diff)
    return 1 if bad else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--checkout", type=Path, default=Path(__file__).resolve().parents[1])
    r.add_argument("--out", type=Path, required=True)
    c = sub.add_parser("compare")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    args = p.parse_args()
    if args.cmd == "run":
        run(args.checkout.resolve(), args.out.resolve())
        return 0
    return compare(args.a, args.b)


if __name__ == "__main__":
    sys.exit(main())
