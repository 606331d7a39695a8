"""Training and prediction throughput: pet_mtl vs a naive PET implementation vs the encoder-only bound.

    python benchmarks/throughput.py [--device cpu|cuda] [--precision fp32|bf16] [--append]

All three run over the SAME batches of real competition rows (all three tasks, their real length distribution,
pet_mtl's default patterns). Timings come from ONE process that runs the implementations round-robin, a batch of
each in turn, so the noise of a shared machine hits them alike and the ratios are stable; peak memory comes from
one fresh subprocess per implementation (a few batches each), so each peak is its own:
- pet_mtl: what `python -m pet_mtl.train` does per step: length-grouped mixed batches padded as the trainer pads
  by default (to the batch's longest in fp32 on CPU, to a multiple of 8 in bf16 or on GPU),
  the encoder, the MLM head at the slot positions only, cross-entropy, backward, clipping, AdamW. Prediction:
  `score_features` (length-sorted batches, inference mode).
- naive: every example padded to 256 tokens, the plain `AutoModelForMaskedLM` forward (full-vocabulary logits at
  every position), then the slot positions gathered; same loss and the same (fused) optimizer, so the ratio
  measures padding and the head alone. Prediction in input order.
- bound: the bare encoder (`model.base_model`) forward (+ backward for training, no optimizer, no head) over the
  same batches padded only to each batch's longest sequence.
Two ablations measure single fast paths in training: `pet_mtl:no-grouping` (random instead of length-grouped
batches) and `pet_mtl:full-head` (vocabulary logits at every position, then gathered).
Ratios: speedup = pet_mtl / naive, overhead = bound / pet_mtl (in time per example).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # measure the checkout this script sits in, whatever pet_mtl is installed
#: training variants: pet_mtl as run by default, then with one fast path switched off, the naive one, the bound
TRAIN_IMPLS = ("pet_mtl", "pet_mtl:no-grouping", "pet_mtl:full-head", "naive", "bound")
PREDICT_IMPLS = ("pet_mtl", "naive", "bound")


def setup(args):
    """Model, patterns and features of real rows, loaded and encoded once; the same rows batched two ways
    (length-grouped as the trainer does, and random for the no-grouping ablation)."""
    import torch
    import yaml

    from pet_mtl.backbones.loading import load_pretrained
    from pet_mtl.core.tasks import TASKS
    from pet_mtl.data.readers import read_tsv, stratified_split
    from pet_mtl.data.sampling import MultiTaskBatches
    from pet_mtl.methods import build_scorer
    from pet_mtl.prompts import load_pattern_set

    torch.manual_seed(0)
    tokenizer, mlm = load_pretrained(args.model)
    patterns = load_pattern_set(yaml.safe_load((ROOT / "conf/patterns/default.yaml").read_text()), list(TASKS))
    featurizer, _ = build_scorer("pet", tokenizer, mlm, patterns, list(TASKS), args.max_length)
    feats, items = [], {}
    for name, task in TASKS.items():
        rows = read_tsv(Path(args.data) / task.files["train"], task, labelled=True)
        _, sample = stratified_split(rows, args.rows_per_task, seed=0)
        f = featurizer.encode(sample)
        items[name] = list(range(len(feats), len(feats) + len(f)))
        feats.extend(f)
    lengths = [len(f.input_ids) for f in feats]

    def batches(grouped: bool) -> list[list]:
        order = MultiTaskBatches(items, lengths, args.batch_size, seed=0, group_by_length=grouped).epoch(0)
        return [[feats[i] for i in b] for b in order[: args.warmup + args.train_batches]]

    return tokenizer, mlm, patterns, feats, batches(True), batches(False)


def peak_rss_mb() -> float:
    """This process's own RSS high-water mark (VmHWM). Not getrusage's ru_maxrss: Linux carries that across
    fork and exec, so a spawned child would report its parent's peak."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Runner:
    """One implementation's model, optimizer and batches; `step(i)` runs and times its i-th unit of work."""

    def __init__(self, args, impl: str, mode: str, shared):
        import copy

        import torch

        from pet_mtl.core.tasks import TASKS
        from pet_mtl.methods import build_scorer
        from pet_mtl.training.optim import build_optimizer

        tokenizer, mlm, patterns, feats, grouped, random_batches = shared
        self.args, self.impl, self.mode = args, impl, mode
        self.device = torch.device(args.device)
        self.mlm = copy.deepcopy(mlm).to(self.device)
        _, model = build_scorer("pet", tokenizer, self.mlm, patterns, list(TASKS), args.max_length)
        self.model = model.to(self.device)
        if impl == "pet_mtl:full-head":
            self.model.head = None  # the vocabulary projection at every position, then gathered
        self.pad = tokenizer.pad_token_id
        self.batches = random_batches if impl == "pet_mtl:no-grouping" else grouped
        self.pred = feats[: args.predict_examples]
        self.opt = build_optimizer(self.model, 1e-5, 0.01) if mode == "train" else None  # the trainer's, for all
        self.seconds, self.examples = 0.0, 0

    def _naive_batch(self, fs):
        import torch

        from pet_mtl.methods.features import collate

        b = collate(fs, self.pad, pad_to_multiple_of=1)
        n = self.args.naive_length - b["input_ids"].size(1)
        b["input_ids"] = torch.nn.functional.pad(b["input_ids"], (0, n), value=self.pad)
        b["attention_mask"] = torch.nn.functional.pad(b["attention_mask"], (0, n), value=0)
        return b

    def _naive_scores(self, b):
        logits = self.mlm(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits  # [B, 256, V]
        at = logits.gather(1, b["slot_positions"][..., None].expand(-1, -1, logits.size(-1))).float().log_softmax(-1)
        return self.model.label_scores(at, b["head"])

    def step(self, i: int, timed: bool) -> None:
        import torch

        from pet_mtl.core.precision import autocast, pad_multiple
        from pet_mtl.inference.predictor import score_features
        from pet_mtl.methods.features import collate
        from pet_mtl.training.losses import label_loss

        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        a, impl = self.args, self.impl
        if self.mode == "train":
            fs = self.batches[i]
            ours = pad_multiple(None, a.precision, self.device)  # the trainer's default
            b = self._naive_batch(fs) if impl == "naive" else collate(fs, self.pad, 1 if impl == "bound" else ours)
            b = {k: v.to(self.device) for k, v in b.items()}
            self.model.train()
            sync()
            t0 = time.perf_counter()
            with autocast(self.device, a.precision):
                if impl == "bound":
                    h = self.mlm.base_model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state
                    loss = h.float().pow(2).mean()
                else:
                    scores = self._naive_scores(b) if impl == "naive" else self.model(**b)
                    loss = label_loss(scores.float(), b["labels"])
            loss.backward()
            if impl != "bound":
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0, foreach=True)
                self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            n = len(fs)
        else:
            chunk = self.pred[i * a.eval_batch_size * 4:(i + 1) * a.eval_batch_size * 4]  # 4 batches per unit
            if not chunk:
                return
            sync()
            t0 = time.perf_counter()
            if impl == "pet_mtl":
                score_features(self.model, chunk, a.eval_batch_size, self.pad, pad_multiple(None, a.precision, self.device),
                               a.precision, self.device)
            else:
                order = sorted(range(len(chunk)), key=lambda j: len(chunk[j].input_ids)) if impl == "bound" \
                    else list(range(len(chunk)))
                with torch.inference_mode(), autocast(self.device, a.precision):
                    for s in range(0, len(order), a.eval_batch_size):
                        fs = [chunk[j] for j in order[s:s + a.eval_batch_size]]
                        if impl == "naive":
                            b = {k: v.to(self.device) for k, v in self._naive_batch(fs).items()}
                            self._naive_scores(b).cpu()
                        else:
                            b = {k: v.to(self.device) for k, v in collate(fs, self.pad, 1).items()}
                            self.mlm.base_model(input_ids=b["input_ids"],
                                                attention_mask=b["attention_mask"]).last_hidden_state.cpu()
            n = len(chunk)
        sync()
        if timed:
            self.seconds += time.perf_counter() - t0
            self.examples += n


def timing(args) -> dict[tuple[str, str], dict]:
    """All implementations in one process, round-robin per unit of work, so machine noise hits them alike."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    shared = setup(args)
    out = {}
    units = {"train": args.warmup + args.train_batches,
             "predict": 1 + -(-args.predict_examples // (4 * args.eval_batch_size))}
    for mode, impls in (("train", TRAIN_IMPLS), ("predict", PREDICT_IMPLS)):
        runners = [Runner(args, impl, mode, shared) for impl in impls]
        for i in range(units[mode]):
            for r in runners:  # predict: unit 0 is a warm-up pass over the first chunk
                r.step(i if mode == "train" else max(i - 1, 0), timed=i >= (args.warmup if mode == "train" else 1))
        for r in runners:
            out[(mode, r.impl)] = {"impl": r.impl, "mode": mode, "examples": r.examples, "seconds": r.seconds,
                                   "examples_per_s": r.examples / r.seconds}
            print(f"  {mode:7s} {r.impl:20s} {r.examples / r.seconds:8.1f} ex/s", flush=True)
        del runners
    return out


def peak_memory(args, impl: str, mode: str, queue) -> None:
    """Peak memory of one implementation alone (a fresh process): a few units of its work."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    r = Runner(args, impl, mode, setup(args))
    if r.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for i in range(3):
        r.step(i, timed=False)
    queue.put(torch.cuda.max_memory_allocated() / 2**20 if r.device.type == "cuda" else peak_rss_mb())


def run_all(args) -> list[dict]:
    results = timing(args)
    ctx = mp.get_context("spawn")
    for (mode, impl), r in results.items():
        q = ctx.Queue()
        p = ctx.Process(target=peak_memory, args=(args, impl, mode, q))
        p.start()
        r["peak_mb"] = q.get()
        p.join()
    return list(results.values())


def table(results, args) -> str:
    by = {(r["mode"], r["impl"]): r for r in results}
    mem = "peak GPU MB (max allocated)" if args.device.startswith("cuda") else "peak RSS MB"
    lines = [f"| mode | implementation | examples/s | {mem} | pet_mtl speedup over it | pet_mtl time per example ÷ its time |",
             "|---|---|---|---|---|---|"]
    for mode in ("train", "predict"):
        ours = by[(mode, "pet_mtl")]["examples_per_s"]
        for impl in (i for m, i in by if m == mode):
            r = by[(mode, impl)]
            lines.append(f"| {mode} | {impl} | {r['examples_per_s']:.1f} | {r['peak_mb']:.0f} | "
                         f"{ours / r['examples_per_s']:.2f}x | {r['examples_per_s'] / ours:.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT.parent / "shared/models/zh-mini-mlm"))
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/tianchi"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--eval-batch-size", type=int, default=128)
    ap.add_argument("--train-batches", type=int, default=20, help="timed training batches (after --warmup)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--predict-examples", type=int, default=1500)
    ap.add_argument("--rows-per-task", type=int, default=1000)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--naive-length", type=int, default=256)
    ap.add_argument("--append", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = ap.parse_args()
    print(f"throughput on {args.device} ({args.precision}), {platform.processor() or platform.machine()}", flush=True)
    results = run_all(args)
    cmd = "python benchmarks/throughput.py " + " ".join(sys.argv[1:])
    text = (f"\n### Throughput, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC\n\n`{cmd.strip()}` on {args.device} "
            f"({args.precision}), batch {args.batch_size} (train) / {args.eval_batch_size} (predict), "
            f"{args.train_batches} timed training batches after {args.warmup} warm-up, {args.predict_examples} "
            f"prediction examples.\n\n{table(results, args)}\n\nRaw: `{json.dumps(results)}`\n")
    print(text)
    if args.append:
        with open(ROOT / "benchmarks" / "RESULTS.md", "a", encoding="utf-8") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
