"""Continued pretraining: text files in, a Hugging Face model directory out (see pretrain.py). A masked LM continues
with the masked-LM loss, a causal LM (method=causal's backbones) with the next-token loss on the same packed text.

One `Pretrainer` owns `out_dir`, which is at once the run directory (pretrain.log, metrics.json, .hydra/,
checkpoint-last/) and the output model: config.json, model.safetensors and the tokenizer sit at its top, so
`python -m pet_mtl.train model.path=<out_dir>` and `AutoModelForMaskedLM.from_pretrained(out_dir)` read it as it is.
The top-level weights are replaced by one atomic rename at every save, so the folder always holds a whole model
(the latest saved one); README.md, the model card, says which step.

Exact resume: the corpus is a position per file and a draw counter, the packer holds the tokens it has not emitted,
masking is seeded per sequence; all of it, with the optimizer, scheduler and every rank's RNG state, goes into
checkpoint-last. A run killed at any moment and resumed with train.resume=true ends with the same weights.
Under torchrun each rank builds the same batch stream and trains on every world-th batch; rank 0 writes.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from pet_mtl.backbones.contract import Backbone
from pet_mtl.backbones.loading import check_positions, load_pretrained
from pet_mtl.backbones.mlm import language_model, masked_lm_loss
from pet_mtl.core.config import PRETRAIN_RANGES, InitConfig, PretrainConfig
from pet_mtl.core.device import resolve_device, settle
from pet_mtl.core.distributed import Dist
from pet_mtl.core.errors import ConfigError
from pet_mtl.core.io import atomic_dir, atomic_write_text, remove_leftovers
from pet_mtl.core.precision import autocast
from pet_mtl.core.rundir import RunDirectory, resume_command
from pet_mtl.core.validate import check_ranges
from pet_mtl.data.corpus import (
    Corpus,
    CorpusState,
    build_sources,
    competition_rows_to_skip,
)
from pet_mtl.data.packing import CausalStream, MaskedStream, Masking
from pet_mtl.training.loop import Loop
from pet_mtl.training.optim import build_optimizer, warmup_linear
from pet_mtl.training.plugins import Objective
from pet_mtl.training.runlog import RunLog
from pet_mtl.training.state import (
    write_train_state,
)

log = logging.getLogger("pet_mtl")

#: the files of a Hugging Face model directory that a save replaces (weights last: they are what changes)
MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors")


@dataclass
class PretrainState:
    """A run's progress beside the tensors; saved and restored whole (like trainer.TrainState)."""

    step: int = 0
    tokens: int = 0  # tokens trained on, all ranks
    masked: int = 0  # of which masked (predicted)
    train_seconds: float = 0.0
    wall_seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # since the last evaluation
    world: int = 1


def build_model(cfg: PretrainConfig):
    """(tokenizer, masked LM): model.path's, or random weights of model.init's shape on model.tokenizer's vocabulary."""
    m = cfg.model
    if m.path is not None:
        if OmegaConf.to_container(OmegaConf.structured(m.init)) != dataclasses.asdict(InitConfig()):
            raise ConfigError("model.init sets the shape of random weights, but model.path is given: continue "
                              "model.path (drop model.init.*), or start from random weights with model.path=null")
        return load_pretrained(m.path, m.trust_pickle, tokenizer_dir=m.tokenizer, strict=m.strict,
                               kinds=("masked", "causal"))
    if m.tokenizer is None:
        raise ConfigError("give model.path=<masked LM directory> to continue it, or model.tokenizer=<tokenizer "
                          "directory> (with model.init.layers/hidden/heads...) to start from random weights")
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    try:
        tokenizer = AutoTokenizer.from_pretrained(m.tokenizer, local_files_only=True)
    except Exception as e:  # transformers raises many types for a missing or broken folder
        raise ConfigError(f"model.tokenizer={m.tokenizer}: cannot load a tokenizer: {type(e).__name__}: "
                          f"{str(e)[:200]}") from None
    i = m.init
    if i.hidden % i.heads:
        raise ConfigError(f"model.init: hidden={i.hidden} is not a multiple of heads={i.heads}")
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=i.hidden, num_hidden_layers=i.layers,
                        num_attention_heads=i.heads, intermediate_size=i.intermediate or 4 * i.hidden,
                        max_position_embeddings=i.max_positions, pad_token_id=tokenizer.pad_token_id,
                        hidden_dropout_prob=i.dropout, attention_probs_dropout_prob=i.dropout)
    return tokenizer, BertForMaskedLM(config)


class MaskedLMObjective(Objective):
    """The masked-LM loss at the masked positions (MaskedLM computes the logits there only)."""

    name = "masked-LM loss"

    def loss(self, output: tuple[torch.Tensor, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits, labels = output
        return masked_lm_loss(logits, labels)


class Pretrainer(Loop):
    def __init__(self, cfg: PretrainConfig, out_dir: Path):
        self.cfg = cfg
        self.started = time.time()
        tr = cfg.train
        check_ranges(cfg, PRETRAIN_RANGES)
        self.dist = Dist.from_env(resolve_device(tr.device, "train.device").type)
        if not self.dist.is_main:
            log.setLevel(logging.WARNING)
        self.out_dir = Path(self.dist.gather(str(out_dir))[0])
        base = getattr(cfg.model, "path", None)
        if base and self.out_dir.resolve() == Path(base).expanduser().resolve():
            raise ConfigError(f"out_dir={out_dir} is model.path: pretraining would overwrite the model it starts from; "
                              "write it to a new folder")
        self.held = RunDirectory(self.out_dir, "pretrain") if self.dist.is_main else None  # checks it, creates it
        if self.held is None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        else:
            self.held.refuse_results(tr.resume, tr.overwrite, "resume it with train.resume=true, choose a new "
                                     "out_dir, or pass train.overwrite=true to replace them")
            foreign = sorted(p.name for p in self.out_dir.iterdir() if not p.name.startswith(".")
                             and p.name != "pretrain.log")  # Hydra's, written for this run
            if foreign and not tr.resume and not tr.overwrite:
                self.held.release()
                raise ConfigError(f"out_dir {self.out_dir} holds files pretraining did not write "
                                  f"({', '.join(foreign[:5])}); choose a new or empty folder (it writes a model there)")
            remove_leftovers(self.out_dir / "checkpoint-last")
        self.device = self.dist.device(tr.device)
        settle(cfg.train, self.device)
        if tr.num_threads:
            torch.set_num_threads(tr.num_threads)
        torch.manual_seed(cfg.seed)
        self.masking = Masking(**OmegaConf.to_container(OmegaConf.structured(cfg.masking)))  # a plain dataclass
        self.tokenizer, mlm = build_model(cfg)
        check_positions("data.max_length", cfg.data.max_length, mlm.config)
        text = OmegaConf.to_container(cfg.text) if OmegaConf.is_config(cfg.text) else list(cfg.text)
        d = cfg.data
        skip = (competition_rows_to_skip(text, d.val_size, d.split_seed, d.fewclue_dir, d.held_out_per_task)
                if d.exclude_validation else {})
        self.corpus = Corpus(build_sources(text, skip), cfg.seed, d.held_out_fraction, d.max_bad_fraction)
        self.skipped = {str(p): len(ids) for p, ids in skip.items()}
        self.backbone = Backbone(mlm, self.tokenizer)
        self.causal = self.backbone.kind == "causal"  # next-token loss instead of masked tokens
        #: what the held-out number is (metrics.json keeps the key `pseudo_perplexity` for both)
        self.measure = "next-token perplexity" if self.causal else "masked-token pseudo-perplexity"
        self.stream = self._stream(self.corpus.endless(), cfg.seed)
        self.eval_batches = self._eval_batches()
        self.model = mlm.to(self.device)
        self.masked_lm = language_model(self.backbone)
        self.ddp = self.dist.wrap(self.masked_lm, self.device)
        self.optimizer = build_optimizer(self.model, tr.lr, tr.weight_decay)
        self.scheduler = warmup_linear(self.optimizer, tr.max_steps, tr.warmup_ratio)
        self.state = PretrainState(world=self.dist.world)
        self.total_steps = tr.max_steps
        self.objective = MaskedLMObjective()
        self.algorithms = []
        self.runlog = RunLog(self.out_dir, self.dist.is_main, tr.progress, tr.log_every, report_to=(),
                             name="pretrain", unit="tokens/s")

    def _stream(self, docs, seed: int, segmenter=None) -> MaskedStream:
        if self.causal:
            return CausalStream(docs, self.tokenizer, self.cfg.data.max_length, seed)
        return MaskedStream(docs, self.tokenizer, self.cfg.data.max_length, self.masking, seed, segmenter)

    def _eval_batches(self) -> dict[str, list[dict[str, torch.Tensor]]]:
        """Each text entry's held-out documents, packed and masked once with a fixed seed: the same masked tokens
        at every evaluation, so the numbers are comparable across steps and runs."""
        out = {}
        size = self.cfg.train.eval_batch_size
        for entry, docs in self.corpus.eval_slice_docs(self.cfg.data.eval_docs).items():
            stream = self._stream(None, self.cfg.seed + 1, self.stream.segmenter)
            rows = stream.sequences_of(docs) + stream.flush()
            if not rows:
                raise ConfigError(f"text entry {entry}: no held-out documents (data.held_out_fraction="
                                  f"{self.cfg.data.held_out_fraction} of too few lines?)")
            out[entry] = [stream.collate(rows[i:i + size]) for i in range(0, len(rows), size)]
        return out

    # -- evaluation ----------------------------------------------------------------------------

    @torch.no_grad()
    def perplexity(self) -> dict[str, Any]:
        """Masked-token pseudo-perplexity per text entry (a causal LM: its true next-token perplexity, every token
        predicted from those before it): exp of the mean cross-entropy over the held-out slice's masked tokens (one fixed masking; not Salazar et al.'s one-token-at-a-time PPPL, which costs a forward per
        token)."""
        self.model.eval()
        result, total_loss, total_n = {}, 0.0, 0
        for entry, batches in self.eval_batches.items():
            loss_sum, n = 0.0, 0
            for b in batches:
                b = {k: v.to(self.device) for k, v in b.items()}
                with autocast(self.device, self.cfg.train.precision):
                    logits, labels = self.masked_lm(**b)
                loss_sum += masked_lm_loss(logits, labels, reduction="sum").item()
                n += len(labels)
            result[entry] = {"loss": loss_sum / n, "pseudo_perplexity": math.exp(loss_sum / n), "masked_tokens": n}
            total_loss, total_n = total_loss + loss_sum, total_n + n
        self.model.train()
        return {"entries": result, "loss": total_loss / total_n, "pseudo_perplexity": math.exp(total_loss / total_n)}

    def evaluate(self) -> None:
        st = self.state
        result = self.perplexity()
        entry = {"step": st.step, "tokens": st.tokens,
                 "train_loss": sum(st.losses) / len(st.losses) if st.losses else None, **result,
                 "train_seconds": round(st.train_seconds, 2),
                 "tokens_per_s": round(st.tokens / max(st.train_seconds, 1e-9), 1)}
        st.history.append(entry)
        st.losses = []
        log.info("step %d | held-out %s %.3f (%s)", st.step, self.measure, result["pseudo_perplexity"],
                 "; ".join(f"{e}: {r['pseudo_perplexity']:.3f}" for e, r in result["entries"].items()))

    # -- checkpoints ---------------------------------------------------------------------------

    def save_due(self, done: bool) -> bool:
        return done or bool(self.cfg.train.save_every and self.state.step % self.cfg.train.save_every == 0)

    def save(self, finished: bool) -> None:
        keep = not finished or self.cfg.train.keep_checkpoint  # a finished run keeps no checkpoint-last unless asked
        if keep:
            self._save_last()
        if self.dist.is_main:
            self._export(finished)
            self._write_metrics(finished)
            if not keep:
                shutil.rmtree(self.out_dir / "checkpoint-last", ignore_errors=True)
        self.dist.barrier()

    def _save_last(self) -> None:
        """checkpoint-last, what resume reads. Every rank calls it (the RNG states are gathered); the main one
        writes it, atomically."""
        tensors, state = self.train_state()
        if not self.dist.is_main:
            return
        state.update(corpus=self.corpus.state.to_json(), stream=self.stream.state())
        config_yaml = OmegaConf.to_yaml(self.cfg, resolve=True)

        def write(tmp: Path) -> None:
            self.model.save_pretrained(tmp / "model", safe_serialization=True)
            self.tokenizer.save_pretrained(tmp / "tokenizer")
            (tmp / "config.yaml").write_text(config_yaml, encoding="utf-8")
            write_train_state(tmp, tensors, state)

        atomic_dir(self.out_dir / "checkpoint-last", write)

    def _export(self, finished: bool) -> None:
        """The model at out_dir's top: tokenizer files and config first (they never change during a run), the
        weights last, each by an atomic rename; then the model card."""
        tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=self.out_dir))
        try:
            self.tokenizer.save_pretrained(tmp)
            self.model.save_pretrained(tmp, safe_serialization=True)
            names = sorted(p.name for p in tmp.iterdir())
            for name in [n for n in names if n not in MODEL_FILES] + [n for n in MODEL_FILES if n in names]:
                os.chmod(tmp / name, 0o644)
                os.replace(tmp / name, self.out_dir / name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        atomic_write_text(self.out_dir / "README.md", self.model_card(finished))

    def resume(self) -> None:
        last = self.out_dir / "checkpoint-last"
        tensors, saved = self.read_checkpoint_last(last, " (a finished run keeps none unless "
                                                         "train.keep_checkpoint=true)")
        _, weights = load_pretrained(last / "model", tokenizer_dir=last / "tokenizer", exact=True,
                                     kinds=("masked", "causal"))
        self.model.load_state_dict(weights.state_dict())
        self.restore_train_state(tensors, saved, last)
        self.corpus.restore(CorpusState.from_json(saved["corpus"]))
        self.stream.restore(saved["stream"])
        log.info("resumed from %s at step %d", last, self.state.step)

    def save_interrupted(self) -> str:
        self.save(finished=False)
        return f"checkpoint-last (and the model in {self.out_dir}) hold step {self.state.step}"

    def resume_command(self) -> str:
        return resume_command("pet_mtl.pretrain", "out_dir", self.out_dir)

    def _write_metrics(self, finished: bool) -> None:
        doc = {"finished": finished, "history": self.state.history, "step": self.state.step,
               "tokens": self.state.tokens, "files": self.corpus.report(), "rows_excluded": self.skipped,
               "wall_seconds": round(self.wall_seconds(), 2)}
        atomic_write_text(self.out_dir / "metrics.json", json.dumps(doc, ensure_ascii=False, indent=1))

    def model_card(self, finished: bool) -> str:
        cfg, st = self.cfg, self.state
        first, last = (st.history[0], st.history[-1]) if st.history else (None, None)
        base = cfg.model.path or f"random weights ({OmegaConf.to_container(OmegaConf.structured(cfg.model.init))})"
        kind = "Causal LM" if self.causal else "Masked LM"
        lines = [f"# {kind}: continued pretraining with pet_mtl", "",
                 f"- base: `{base}`", f"- status: {'finished' if finished else 'in progress'}, step {st.step} of "
                 f"{cfg.train.max_steps}, {st.tokens:,} tokens ({st.masked:,} masked), "
                 f"{round(self.wall_seconds() / 60, 1)} minutes",
                 f"- masking: {self.masking.unit} units, {self.masking.prob:.0%}, n-grams up to "
                 f"{self.masking.max_ngram}; sequences packed to {cfg.data.max_length} tokens; batch "
                 f"{cfg.train.batch_size} x {cfg.train.grad_accum} x {self.dist.world}, lr {cfg.train.lr:g}, seed {cfg.seed}",
                 "", "## Sources", "", "| file | kind | weight | documents read | passes | bad lines |", "|---|---|---|---|---|---|"]
        lines += [f"| {f['path']} | {f['kind']} | {f['weight']:.4f} | {f['docs']:,} | {f['passes']} | {f['bad_lines']} |"
                  for f in self.corpus.report()]
        if self.skipped:
            lines += ["", "Rows never read (validation rows that `pet_mtl.train` scores on): "
                      + ", ".join(f"{Path(p).name} {n}" for p, n in self.skipped.items())]
        if first is not None:
            lines += ["", f"## Held-out {self.measure} ({cfg.data.held_out_fraction:g} of each file's "
                      "lines, never trained on)", "", "| text | before (step 0) | latest (step "
                      f"{last['step']}) |", "|---|---|---|"]
            lines += [f"| {e} | {first['entries'][e]['pseudo_perplexity']:.3f} | {r['pseudo_perplexity']:.3f} |"
                      for e, r in last["entries"].items()]
            lines += [f"| all | {first['pseudo_perplexity']:.3f} | {last['pseudo_perplexity']:.3f} |"]
        lines += ["", "Use: `python -m pet_mtl.train model.path=<this folder>`, or "
                  f"`transformers.{'AutoModelForCausalLM' if self.causal else 'AutoModelForMaskedLM'}"
                  ".from_pretrained(<this folder>)`.", ""]
        return "\n".join(lines)

    # -- the loop's parts ----------------------------------------------------------------------

    def next_batch(self) -> dict[str, torch.Tensor]:
        batch = None
        for r in range(self.dist.world):  # every rank builds the same stream and keeps its own share
            b = self.stream.batch(self.cfg.train.batch_size)
            if r == self.dist.rank:
                batch = b
        return {key: v.to(self.device) for key, v in batch.items()}

    def counts(self, batch: dict[str, torch.Tensor]) -> list[float]:
        return [int(batch["attention_mask"].sum()), int((batch["labels"] != -100).sum())]

    def add_counts(self, counts: list[float]) -> None:
        self.state.tokens += int(counts[0])
        self.state.masked += int(counts[1])

    def speed(self) -> float:
        return self.state.tokens / max(self.state.train_seconds, 1e-9)

    def plan(self) -> list[str]:
        tr, m = self.cfg.train, self.masking
        return [f"out_dir (the model and the run): {self.out_dir}",
                *(f"text: {s.path} ({s.kind}, weight {s.weight:.4f}"
                  + (f", {len(s.skip_ids)} validation rows never read" if s.skip_ids else "") + ")"
                  for s in self.corpus.sources),
                f"plan: {tr.max_steps} steps of {tr.batch_size * tr.grad_accum * self.dist.world} sequences x "
                f"{self.cfg.data.max_length} tokens (batch {tr.batch_size} x accum {tr.grad_accum} x {self.dist.world} "
                f"process(es)), " + ("next-token loss (a causal LM)" if self.causal else
                                     f"masking {m.unit} units {m.prob:.0%} (n-grams up to {m.max_ngram}; "
                                     f"{m.replace_mask:.0%} [MASK], {m.replace_random:.0%} random)")
                + f", lr {tr.lr:g}, on {self.device} in {tr.precision}"]

    def before_first_step(self) -> None:
        if not self.state.history:  # the untrained model's score: where the run started
            self.evaluate()

    def finish(self) -> dict[str, Any]:
        st = self.state
        if not (self.out_dir / "model.safetensors").exists():
            self.save(finished=True)  # resumed a run that had already finished its steps
        return {"out_dir": str(self.out_dir), "first": st.history[0], "last": st.history[-1], "is_main": self.dist.is_main}
