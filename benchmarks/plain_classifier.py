"""A plain shared-encoder classifier, written apart from pet_mtl's training loop: the parity reference of issue 10.

    python benchmarks/plain_classifier.py [--max-train-per-task N] [--max-val-per-task 2000] [--seed 1] [--out x.json]

What the issue describes: one linear head per task on the [CLS] state, each batch ONE task (batches of 32 cut from
each task's shuffled rows, then all batches shuffled), no length grouping, premise/hypothesis as a tokenizer pair
with segment ids, no extra dropout on [CLS], AdamW lr 2e-4 and weight decay 0.01 (none on biases and LayerNorm),
6% warmup then linear decay, clipping 1.0, batch 32, max length 128 (`longest_first`), one epoch.
It shares with pet_mtl only what must be equal for a side-by-side: the rows (pet_mtl.regimes.full, so training
and validation rows are exactly those `python -m pet_mtl.train data.max_train_per_task=... data.max_val_per_task=...`
uses) and the macro-F1 definition (pet_mtl.metrics). Model, batching, loop and optimizer are its own.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT.parent / "shared/models/zh-mini-mlm"))
    p.add_argument("--data", default=str(ROOT.parent / "shared/data/tianchi"))
    p.add_argument("--max-train-per-task", type=int, default=None)
    p.add_argument("--max-val-per-task", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="write the scores as JSON here")
    # one difference from pet_mtl's heads at a time, to measure each suspect alone (issue 10)
    p.add_argument("--no-segment-ids", action="store_true", help="token_type_ids all 0 (as pet_mtl's heads today)")
    p.add_argument("--cls-dropout", type=float, default=0.0, help="dropout on [CLS] before the head (heads: 0.1)")
    p.add_argument("--mixed-batches", action="store_true", help="batches cut from all tasks' rows shuffled together")
    args = p.parse_args()

    import torch
    import transformers
    from transformers import AutoModel, AutoTokenizer

    transformers.logging.set_verbosity_error()  # the masked LM's unused MLM-head weights are expected

    from pet_mtl.core.config import Config
    from pet_mtl.core.tasks import TASKS
    from pet_mtl.data.regimes import full
    from pet_mtl.metrics import classification_scores, competition_score

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = Config()
    cfg.data.dir, cfg.data.max_train_per_task, cfg.data.max_val_per_task = args.data, args.max_train_per_task, args.max_val_per_task
    data = full(cfg)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    encoder = AutoModel.from_pretrained(args.model, add_pooling_layer=False)
    heads = torch.nn.ModuleDict({t: torch.nn.Linear(encoder.config.hidden_size, TASKS[t].num_labels) for t in data})

    def encode(task: str, rows):
        fields = TASKS[task].fields
        texts = [ex.fields[fields[0]] for ex in rows]
        pairs = [ex.fields[fields[1]] for ex in rows] if len(fields) == 2 else None
        enc = tokenizer(texts, pairs, truncation="longest_first", max_length=args.max_length, padding=True,
                        return_tensors="pt")
        if args.no_segment_ids and "token_type_ids" in enc:
            enc["token_type_ids"] = torch.zeros_like(enc["token_type_ids"])
        return enc

    rng = random.Random(args.seed)
    batches = []
    if args.mixed_batches:
        rows = [ex for d in data.values() for ex in d.train]
        rng.shuffle(rows)
        batches = [(None, rows[i:i + args.batch_size]) for i in range(0, len(rows), args.batch_size)]
    else:
        for task, d in data.items():
            rows = list(d.train)
            rng.shuffle(rows)
            batches += [(task, rows[i:i + args.batch_size]) for i in range(0, len(rows), args.batch_size)]
    dropout = torch.nn.Dropout(args.cls_dropout)
    params = list(encoder.named_parameters()) + list(heads.named_parameters())
    no_decay = lambda n: n.endswith("bias") or "LayerNorm" in n or "layer_norm" in n
    optimizer = torch.optim.AdamW([{"params": [p for n, p in params if not no_decay(n)], "weight_decay": 0.01},
                                   {"params": [p for n, p in params if no_decay(n)], "weight_decay": 0.0}], lr=args.lr)
    total = len(batches) * args.epochs
    warmup = int(0.06 * total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / (warmup + 1) if s < warmup else max(0.0, (total - s) / max(1, total - warmup)))
    encoder.train()
    heads.train()
    t0 = time.time()
    for epoch in range(args.epochs):
        order = list(batches)
        rng.shuffle(order)
        for k, (_, batch_rows) in enumerate(order):
            loss = 0.0
            for task in dict.fromkeys(ex.task for ex in batch_rows):  # one task, or each task of a mixed batch
                rows = [ex for ex in batch_rows if ex.task == task]
                cls = dropout(encoder(**encode(task, rows)).last_hidden_state[:, 0])
                labels = torch.tensor([TASKS[task].label_index(ex.label) for ex in rows])
                loss = loss + torch.nn.functional.cross_entropy(heads[task](cls), labels, reduction="sum")
            loss = loss / len(batch_rows)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for _, p in params], 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if k % 200 == 0:
                print(f"epoch {epoch} batch {k}/{len(order)} loss {loss.item():.4f} {time.time() - t0:.0f}s", flush=True)
    train_seconds = time.time() - t0
    encoder.eval()
    heads.eval()
    scores = {}
    with torch.inference_mode():
        for task, d in data.items():
            preds = []
            for i in range(0, len(d.val), 128):
                rows = d.val[i:i + 128]
                preds += heads[task](encoder(**encode(task, rows)).last_hidden_state[:, 0]).argmax(-1).tolist()
            gold = [TASKS[task].label_index(ex.label) for ex in d.val]
            scores[task] = classification_scores(preds, gold)
    result = {"system": "plain reference classifier", "args": vars(args), "train_seconds": round(train_seconds, 1),
              "train_rows": {t: len(d.train) for t, d in data.items()}, "val_rows": {t: len(d.val) for t, d in data.items()},
              "tasks": scores, "score": competition_score(scores)}
    print(" | ".join(f"{t} macro-F1 {s['macro_f1']:.4f}" for t, s in scores.items()) + f" | mean {result['score']:.4f}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
