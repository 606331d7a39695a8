"""method=causal's speed: pet_mtl's scorer vs one forward per candidate vs the bare decoder's bound.

    python benchmarks/causal_throughput.py [--model ../shared/models/zh-mini-clm] [--rows-per-task 96] [--rounds 3]

All three run over the SAME single-task batches of real competition rows (the shipped `causal` prompts), timed
round-robin in ONE process (a batch of each in turn), so a shared machine's noise hits them alike:
- pet_mtl: the causal scorer as training and prediction run it: one pass over the prompts, whose key/value cache the
  label words share (training: + cross-entropy, backward, AdamW).
- naive: one sequence per (row, label word): prompt + word, the plain causal LM's forward over all of them (batched,
  as a per-candidate scorer would), log-probabilities gathered at the word's positions.
- bound: the bare decoder (`model.base_model`, no vocabulary head) over each row's prompt followed by every
  candidate token once (+ backward for training): the tokens any exact scorer must encode.
- bound+head: the same, plus the vocabulary head and its log-softmax at the positions that predict a candidate
  token (the prompt's last token, each candidate token but the last): the least an EXACT scorer computes, since
  each of those positions needs its own normaliser over the vocabulary.
Ratios: pet_mtl / bound (time per example: 1.0 is the bound; the issue's target is within 1.3x), pet_mtl /
bound+head and naive / pet_mtl.

`--size base` times a randomly initialised model of GPT-2 base's shape (12 layers, hidden 768) with the same
vocabulary instead of the given weights: speed does not depend on the weights, and the head's share of the work
depends on the shape (large on a 4-layer, hidden-256 model with a 21,128-token vocabulary).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(ROOT.parent / "shared/models/zh-mini-clm"))
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/tianchi"))
    ap.add_argument("--rows-per-task", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", choices=("given", "base"), default="given")
    args = ap.parse_args()

    import torch
    import yaml

    from pet_mtl.backbones.contract import _narrowed, at_positions
    from pet_mtl.backbones.loading import load_pretrained
    from pet_mtl.core.tasks import TASKS
    from pet_mtl.data.readers import read_tsv, stratified_split
    from pet_mtl.methods import build_scorer
    from pet_mtl.methods.features import collate
    from pet_mtl.prompts import load_pattern_set
    from pet_mtl.training.losses import label_loss

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.size == "base":
        args.model = base_sized(args.model)
    tok, lm = load_pretrained(args.model, kinds=("causal",))
    patterns = load_pattern_set(yaml.safe_load((ROOT / "conf/patterns/causal.yaml").read_text()), list(TASKS))
    featurizer, model = build_scorer("causal", tok, lm, patterns, list(TASKS), 128)
    batches = []
    for name, task in TASKS.items():
        rows = read_tsv(Path(args.data) / task.files["train"], task, labelled=True)
        _, sample = stratified_split(rows, args.rows_per_task, seed=0)
        feats = sorted(featurizer.encode(sample), key=lambda f: len(f.input_ids))  # length-grouped, as trained
        batches += [feats[i:i + args.batch_size] for i in range(0, len(feats), args.batch_size)]
    pad = tok.pad_token_id
    tables = featurizer.label_tensors()

    def words_of(f):  # the (ids, length) of every label word of a feature's pattern
        ids, mask = tables["ids"][f.head], tables["word_mask"][f.head]
        lengths = (tables["weights"][f.head] > 0).sum(-1)
        return [(ids[c, k, : lengths[c, k]].tolist()) for c in range(ids.size(0)) for k in range(ids.size(1))
                if mask[c, k]]

    def padded(seqs):
        T = max(map(len, seqs))
        ids = torch.full((len(seqs), T), pad)
        att = torch.zeros(len(seqs), T, dtype=torch.long)
        for i, seq in enumerate(seqs):
            ids[i, : len(seq)], att[i, : len(seq)] = torch.tensor(seq), 1
        return ids, att

    def naive_batch(feats):  # one sequence per (row, word): prompt + word
        return padded([list(f.input_ids) + w for f in feats for w in words_of(f)])

    def bound_batch(feats):  # one sequence per row: prompt + every word's tokens once
        return padded([list(f.input_ids) + [t for w in words_of(f) for t in w] for f in feats])

    def predicting(feats):  # [B, P] the bound sequence's positions that predict a candidate token
        rows = []
        for f in feats:
            at, pos = len(f.input_ids), [len(f.input_ids) - 1]
            for w in words_of(f):
                pos += range(at, at + len(w) - 1)
                at += len(w)
            rows.append(pos)
        P = max(map(len, rows))
        return torch.tensor([r + [r[0]] * (P - len(r)) for r in rows])

    collated = [collate(b, pad, 1) for b in batches]
    naive = [naive_batch(b) for b in batches]
    bound = [bound_batch(b) for b in batches]
    heads = [predicting(b) for b in batches]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    n_rows = sum(len(b) for b in batches)
    times = {f"{phase}:{k}": 0.0 for phase in ("predict", "train") for k in ("pet_mtl", "naive", "bound", "head")}

    def timed(key, fn):
        t = time.perf_counter()
        fn()
        times[key] += time.perf_counter() - t

    def naive_scores(ids, att):  # the log-probabilities of every candidate's tokens, summed: one forward each
        logp = lm(input_ids=ids, attention_mask=att).logits.float().log_softmax(-1)
        return logp[:, :-1].gather(2, ids[:, 1:, None]).squeeze(-1).mul(att[:, 1:]).sum(-1)

    def bound_head(ids, att, at):  # the decoder, then the model's own head at the predicting positions only
        with _narrowed(lm.base_model, at_positions(at)):
            return lm(input_ids=ids, attention_mask=att).logits.float().log_softmax(-1)

    for r in range(args.rounds + 1):  # round 0 warms up and is not counted
        for b, nv, bd, at in zip(collated, naive, bound, heads):
            model.eval()
            with torch.inference_mode():
                timed("predict:pet_mtl", lambda: model(**b))
                timed("predict:naive", lambda: naive_scores(*nv))
                timed("predict:bound", lambda: lm.base_model(input_ids=bd[0], attention_mask=bd[1]))
                timed("predict:head", lambda: bound_head(*bd, at))
            model.train()

            def step_pet():
                loss = label_loss(model(**b).float(), b["labels"])
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)

            def step_naive():
                naive_scores(*nv).sum().backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)

            def step_bound():
                lm.base_model(input_ids=bd[0], attention_mask=bd[1]).last_hidden_state.float().sum().backward()
                lm.zero_grad(set_to_none=True)

            def step_head():
                bound_head(*bd, at).amax(-1).sum().backward()
                lm.zero_grad(set_to_none=True)

            timed("train:pet_mtl", step_pet)
            timed("train:naive", step_naive)
            timed("train:bound", step_bound)
            timed("train:head", step_head)
        if r == 0:
            times = dict.fromkeys(times, 0.0)
    rows = n_rows * args.rounds
    print(f"{n_rows} rows ({args.rows_per_task} per task), batch {args.batch_size}, {args.rounds} rounds, "
          f"{args.threads} thread(s), {Path(args.model).name}")
    print("| phase | pet_mtl ex/s | naive ex/s | bound ex/s | bound+head ex/s | pet_mtl / bound (time) | "
          "pet_mtl / bound+head (time) | naive / pet_mtl (time) |")
    print("|---|---|---|---|---|---|---|---|")
    for phase in ("predict", "train"):
        t = {k.split(":")[1]: v for k, v in times.items() if k.startswith(phase)}
        print(f"| {phase} | {rows / t['pet_mtl']:.1f} | {rows / t['naive']:.1f} | {rows / t['bound']:.1f} | "
              f"{rows / t['head']:.1f} | {t['pet_mtl'] / t['bound']:.2f} | {t['pet_mtl'] / t['head']:.2f} | "
              f"{t['naive'] / t['pet_mtl']:.2f} |")


def base_sized(model: str) -> str:
    """A random model of GPT-2 base's shape with `model`'s configuration otherwise and its tokenizer, in a temporary
    folder (removed at exit)."""
    import atexit
    import shutil
    import tempfile

    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(model)
    config.update(dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072))
    out = tempfile.mkdtemp(prefix="causal-base-")
    atexit.register(shutil.rmtree, out, True)
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(model).save_pretrained(out)
    return out


if __name__ == "__main__":
    main()
