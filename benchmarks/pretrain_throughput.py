"""Continued-pretraining throughput: `python -m pet_mtl.pretrain`'s step against the bare encoder.

    python benchmarks/pretrain_throughput.py [--steps 30] [--threads 2] [--append]

One process runs, round-robin, a step of each implementation in turn (so the noise of a shared machine hits them
alike), on packed batches of the competition's text (batch 32 x 128 tokens):
- pretrain: `Pretrainer._step()` exactly as the run does it: the live stream (read, tokenize, pack, mask), the
  encoder, the vocabulary head at the masked positions only, cross-entropy, backward, clipping, AdamW;
- pretrain:wwm: the same with whole-word masking (jieba segmentation in the stream);
- pretrain:full-head: the ablation of the masked-only head (vocabulary logits at every position, then selected);
- bound: the bare encoder (`model.base_model`) forward + backward over batches built beforehand from the same
  stream (no data work, no head, no optimizer).
Reported: tokens/s of each and bound / pretrain (time per token).
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # measure the checkout this script sits in


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT.parent / "shared/models/zh-mini-mlm"))
    p.add_argument("--data", default=str(ROOT.parent / "shared/data/tianchi"))
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--append", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = p.parse_args()

    import torch
    from hydra import compose, initialize_config_dir

    from pet_mtl.cli import CONF_DIR
    from pet_mtl.pretraining.pretrainer import Pretrainer

    torch.set_num_threads(args.threads)
    out = Path("/tmp/pretrain-throughput")

    def pretrainer(*extra: str) -> Pretrainer:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose(config_name="pretrain", overrides=[
                f"model.path={args.model}", f"out_dir={out}", f"text=[{args.data}]", "data.eval_docs=20",
                "train.progress=false", "train.max_steps=100000", *extra])
        return Pretrainer(cfg, out)

    impls = {"pretrain": pretrainer(), "pretrain:wwm": pretrainer("masking.unit=word"),
             "pretrain:full-head": pretrainer()}
    impls["pretrain:full-head"].masked_lm._parts = None  # run the whole masked LM, then select the masked positions
    impls["pretrain:full-head"].ddp = impls["pretrain:full-head"].masked_lm
    bound_src = pretrainer()
    batches = [bound_src.stream.batch(32) for _ in range(args.steps + 2)]
    encoder = bound_src.model.base_model
    encoder.train()

    def bound(i: int) -> int:
        b = batches[i]
        hidden = encoder(input_ids=b["input_ids"], token_type_ids=b["token_type_ids"],
                         attention_mask=b["attention_mask"]).last_hidden_state
        hidden.float().pow(2).mean().backward()
        encoder.zero_grad(set_to_none=True)
        return int(b["attention_mask"].sum())

    seconds = {k: 0.0 for k in [*impls, "bound"]}
    tokens = dict.fromkeys(seconds, 0)
    for i in range(args.steps + 2):
        for name in seconds:
            t0 = time.perf_counter()
            n = bound(i) if name == "bound" else impls[name]._step()[1]
            if i >= 2:  # two warm-up rounds
                seconds[name] += time.perf_counter() - t0
                tokens[name] += n
    rate = {k: tokens[k] / seconds[k] for k in seconds}
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    lines = [f"`python benchmarks/pretrain_throughput.py --steps {args.steps} --threads {args.threads}` "
             f"({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {cpu}, {args.threads} threads, torch "
             f"{torch.__version__}, batch 32 x 128 tokens, zh-mini-mlm)", "",
             "| implementation | tokens/s | time per token vs bound |", "|---|---|---|"]
    lines += [f"| {k} | {rate[k]:,.0f} | {rate['bound'] / rate[k]:.2f}x |" for k in seconds]
    table = "\n".join(lines)
    print(table)
    if args.append:
        with open(ROOT / "benchmarks/RESULTS.md", "a", encoding="utf-8") as fh:
            fh.write("\n" + table + "\n")


if __name__ == "__main__":
    main()
