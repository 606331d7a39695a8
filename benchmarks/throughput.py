"""Training and prediction throughput: pet_mtl vs a naive PET implementation vs the encoder-only bound.

    python benchmarks/throughput.py [--device cpu|cuda] [--precision fp32|bf16] [--append]

All three run over the SAME batches of real competition rows (all three tasks, their real length distribution,
pet_mtl's default patterns), one fresh subprocess per measurement so peak memory is each one's own:
- pet_mtl: what `python -m pet_mtl.train` does per step: length-grouped mixed batches padded to a multiple of 8,
  the encoder, the MLM head at the slot positions only, cross-entropy, backward, clipping, AdamW. Prediction:
  `score_features` (length-sorted batches, inference mode).
- naive: every example padded to 256 tokens, the plain `AutoModelForMaskedLM` forward (full-vocabulary logits at
  every position), then the slot positions gathered; same loss and optimizer. Prediction in input order.
- bound: the bare encoder (`model.base_model`) forward (+ backward for training, no optimizer, no head) over the
  same batches padded only to each batch's longest sequence.
Ratios: speedup = pet_mtl / naive, overhead = bound / pet_mtl (in time per example).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def setup(args):
    import torch
    import yaml

    from pet_mtl.backbone import load_pretrained
    from pet_mtl.data import read_tsv, stratified_split
    from pet_mtl.features import ClozeEncoder
    from pet_mtl.patterns import load_pattern_set
    from pet_mtl.sampling import MultiTaskBatches
    from pet_mtl.tasks import TASKS

    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    tokenizer, mlm = load_pretrained(args.model)
    patterns = load_pattern_set(yaml.safe_load((ROOT / "conf/patterns/default.yaml").read_text()), list(TASKS))
    encoder = ClozeEncoder(tokenizer, patterns, args.max_length)
    feats, items = [], {}
    for name, task in TASKS.items():
        rows = read_tsv(Path(args.data) / task.files["train"], task, labelled=True)
        _, sample = stratified_split(rows, args.rows_per_task, seed=0)
        f = encoder.encode(sample)
        items[name] = list(range(len(feats), len(feats) + len(f)))
        feats.extend(f)
    batches = MultiTaskBatches(items, [len(f.input_ids) for f in feats], args.batch_size, seed=0).epoch(0)
    train_batches = [[feats[i] for i in b] for b in batches[: args.warmup + args.train_batches]]
    return tokenizer, mlm, encoder, feats, train_batches


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def measure(args, impl: str, mode: str, queue) -> None:
    import torch

    from pet_mtl.engine import autocast, score_features
    from pet_mtl.features import collate
    from pet_mtl.model import ClozeModel, cloze_loss

    tokenizer, mlm, encoder, feats, train_batches = setup(args)
    device = torch.device(args.device)
    model = ClozeModel(mlm, *encoder.label_tensors()).to(device)
    pad = tokenizer.pad_token_id

    def naive_batch(fs):
        b = collate(fs, pad, pad_to_multiple_of=1)
        n = args.naive_length - b["input_ids"].size(1)
        b["input_ids"] = torch.nn.functional.pad(b["input_ids"], (0, n), value=pad)
        b["attention_mask"] = torch.nn.functional.pad(b["attention_mask"], (0, n), value=0)
        return b

    def naive_scores(b):
        logits = mlm(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits  # [B, 256, V]
        at = logits.gather(1, b["slot_positions"][..., None].expand(-1, -1, logits.size(-1))).float().log_softmax(-1)
        cand = model.label_ids[b["pattern"]]  # [B, C, S]
        per = at.gather(2, cand.transpose(1, 2))
        return torch.where(model.slot_mask[b["pattern"]][..., None], per, 0.0).sum(1).masked_fill(
            ~model.label_mask[b["pattern"]], -1e9)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    base_rss = rss_mb()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    n_examples, elapsed = 0, 0.0
    if mode == "train":
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
        model.train()
        for i, fs in enumerate(train_batches):
            if impl == "naive":
                b = naive_batch(fs)
            else:
                b = collate(fs, pad, pad_to_multiple_of=8 if impl == "pet_mtl" else 1)
            b = {k: v.to(device) for k, v in b.items()}
            sync()
            t0 = time.perf_counter()
            with autocast(device, args.precision):
                if impl == "bound":
                    h = mlm.base_model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state
                    loss = h.float().pow(2).mean()
                else:
                    scores = model(**b) if impl == "pet_mtl" else naive_scores(b)
                    loss = cloze_loss(scores.float(), b["labels"])
            loss.backward()
            if impl != "bound":
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
            opt.zero_grad(set_to_none=True)
            sync()
            if i >= args.warmup:
                elapsed += time.perf_counter() - t0
                n_examples += len(fs)
    else:
        pred = feats[: args.predict_examples]
        for rep in range(2):  # the first pass warms up the shapes; the second is timed
            sync()
            t0 = time.perf_counter()
            if impl == "pet_mtl":
                score_features(model, pred, args.eval_batch_size, pad, 8, args.precision, device)
            else:
                order = sorted(range(len(pred)), key=lambda i: len(pred[i].input_ids)) if impl == "bound" else \
                    list(range(len(pred)))
                with torch.inference_mode(), autocast(device, args.precision):
                    for s in range(0, len(order), args.eval_batch_size):
                        fs = [pred[i] for i in order[s:s + args.eval_batch_size]]
                        b = {k: v.to(device) for k, v in (naive_batch(fs) if impl == "naive" else
                                                          collate(fs, pad, pad_to_multiple_of=1)).items()}
                        if impl == "naive":
                            naive_scores(b).cpu()
                        else:
                            mlm.base_model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state.cpu()
            sync()
            elapsed, n_examples = time.perf_counter() - t0, len(pred)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    queue.put({"impl": impl, "mode": mode, "examples_per_s": n_examples / elapsed, "examples": n_examples,
               "seconds": elapsed, "peak_mb": peak, "rss_before_mb": base_rss})


def run_all(args) -> list[dict]:
    ctx = mp.get_context("spawn")
    results = []
    for mode in ("train", "predict"):
        for impl in ("pet_mtl", "naive", "bound"):
            q = ctx.Queue()
            p = ctx.Process(target=measure, args=(args, impl, mode, q))
            p.start()
            r = q.get()
            p.join()
            print(f"  {mode:7s} {impl:8s} {r['examples_per_s']:8.1f} ex/s  peak {r['peak_mb']:.0f} MB", flush=True)
            results.append(r)
    return results


def table(results, args) -> str:
    by = {(r["mode"], r["impl"]): r for r in results}
    mem = "peak GPU MB (max allocated)" if args.device.startswith("cuda") else "peak RSS MB"
    lines = [f"| mode | implementation | examples/s | {mem} | pet_mtl speedup vs it | pet_mtl time / its time |",
             "|---|---|---|---|---|---|"]
    for mode in ("train", "predict"):
        ours = by[(mode, "pet_mtl")]["examples_per_s"]
        for impl in ("pet_mtl", "naive", "bound"):
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
