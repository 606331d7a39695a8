"""What parameter-efficient training costs and saves (issue 27): full fine-tuning with hard patterns, P-tuning (the
`soft` set, everything trains), prompt tuning (`soft`, train.train_only=prompts) and LoRA (model.lora.r=8), side by
side in ONE process.

    python benchmarks/peft_cost.py [--model ../shared/models/zh-mini-mlm] [--data ../shared/data/tianchi]
                                   [--steps 30] [--rounds 3] [--device cpu|cuda]

Each setting is a real Trainer of the checkout this script sits in (the same rows: 512 training rows a task, batch
32, pet); training steps are timed round-robin (a few steps of each setting in turn, `--rounds` times) so a shared
machine's drift hits all alike, then each predicts the same 1,536 validation rows. Printed per setting: trained and
total parameters, the optimizer's state (AdamW: two moments per trained parameter), the checkpoint folder's size,
training and prediction examples/s (median over rounds), the memory a training step holds beyond the weights, and on
a GPU the peak memory of a training step. The step's memory is counted, not sampled, so it is exact on any machine:
the tensors autograd saves for the backward pass (each storage once, through saved_tensors_hooks), plus a gradient
and two AdamW moments per trained parameter. It is what parameter-efficient training saves besides the optimizer: a
frozen matrix needs no saved input to form a weight gradient it never forms.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # measure the checkout this script sits in, whatever pet_mtl is installed
sys.path.insert(0, str(ROOT / "tests"))

SETTINGS = {
    "full, hard patterns": [],
    "P-tuning (soft set, all train)": ["patterns=soft", "train.prompt_lr=3e-2"],
    "prompt tuning (soft, prompts only)": ["patterns=soft", "train.train_only=prompts", "train.prompt_lr=3e-2"],
    "LoRA r=8": ["model.lora.r=8", "train.lr=1e-3"],
}


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def step_loss(trainer, batch):
    """A training step's loss as the trainer forms it (its objective over its model's forward)."""
    return trainer.objective.loss(trainer.model(**trainer.objective.prepare(batch)), batch)


def saved_mb(model, step) -> tuple[float, object]:
    """MB of the distinct storages autograd saves for backward while `step()` runs its forward, the model's own
    weights left out (they are held anyway), and what `step()` returned."""
    import torch

    weights = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = step()
    return sum(seen.values()) / 2**20, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(ROOT.parent / "shared/models/zh-mini-mlm"))
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/tianchi"))
    ap.add_argument("--steps", type=int, default=30, help="training steps of each setting per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch
    from helpers import make_cfg

    from pet_mtl.backbones.adapters import parameter_counts
    from pet_mtl.inference import checkpoint as ckpt_io
    from pet_mtl.inference.predictor import Predictor
    from pet_mtl.training.trainer import Trainer

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="peft-cost-"))
    trainers = {}
    for i, (name, extra) in enumerate(SETTINGS.items()):
        cfg = make_cfg(f"model.path={args.model}", f"data.dir={args.data}", "data.max_train_per_task=512",
                       "data.max_val_per_task=512", "train.batch_size=32", "train.lr=3e-4", "train.progress=false",
                       "train.predict_splits=[]", f"train.device={args.device}", "train.precision=fp32",
                       f"train.num_threads={args.threads}", *extra)
        trainers[name] = Trainer(cfg, tmp / f"run{i}")
    train_rate: dict[str, list[float]] = {n: [] for n in trainers}
    peak: dict[str, float] = {}
    saved: dict[str, float] = {}
    for name, tr in trainers.items():  # one step each, counted: the memory autograd keeps for the backward
        tr.model.train()
        batch = tr.next_batch()
        saved[name], loss = saved_mb(tr.model, lambda: step_loss(tr, batch))
        loss.backward()
        tr.optimizer.zero_grad(set_to_none=True)
    for _ in range(args.rounds):
        for name, tr in trainers.items():
            tr.model.train()
            if args.device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            seen, t0 = 0, time.perf_counter()
            for _ in range(args.steps):
                batch = tr.next_batch()
                step_loss(tr, batch).backward()
                tr.optimizer.step()
                tr.optimizer.zero_grad(set_to_none=True)
                seen += len(batch["input_ids"])
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
                peak[name] = torch.cuda.max_memory_allocated() / 2**20
            train_rate[name].append(seen / (time.perf_counter() - t0))
    rows = ["| setting | trained params | total | optimizer state | saved activations | step memory | checkpoint "
            "| train ex/s | predict ex/s |" + (" peak GPU MB |" if peak else ""),
            "|---|---|---|---|---|---|---|---|---|" + ("---|" if peak else "")]
    for name, tr in trainers.items():
        trained, total = parameter_counts(tr.model)
        ckpt = ckpt_io.save_checkpoint(tmp / f"ckpt-{len(rows)}", tr.model, tr.tokenizer, tr.meta(None), "{}\n")
        val = [e for d in tr.data.values() for e in d.val]
        t0 = time.perf_counter()
        for task in tr.data:
            Predictor(tr.featurizer, tr.model, 128, "fp32", tr.device).scores([e for e in val if e.task == task])
        predict = len(val) / (time.perf_counter() - t0)
        state = 3 * trained * 4 / 2**20  # fp32 gradient + AdamW's two moments per trained parameter
        rows.append(f"| {name} | {trained:,} | {total:,} | {2 * trained * 4 / 2**20:.2f} MB | {saved[name]:.1f} MB | "
                    f"{saved[name] + state:.1f} MB | {folder_mb(ckpt):.2f} MB | {statistics.median(train_rate[name]):.1f} | {predict:.0f} |"
                    + (f" {peak[name]:.0f} |" if peak else ""))
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
