"""The training and evaluation loop: features in, checkpoints and metrics.json out.

One `Trainer` owns a run directory. It evaluates every `train.eval_every` optimizer steps and at the end, appends
to metrics.json, keeps `checkpoint-best` (highest mean macro-F1) and `checkpoint-last` (with the optimizer,
scheduler, data position and RNG state, so `train.resume=true` continues exactly where the run stopped).
"""
from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from . import checkpoint as ckpt_io
from .backbone import build_tiny, load_pretrained
from .config import Config
from .data import Example
from .distributed import Dist
from .errors import ConfigError
from .features import Feature, collate
from .methods import get_method
from .metrics import classification_scores, competition_score
from .model import Scorer, label_loss
from .patterns import PATTERNS_ROOT, load_pattern_set
from .regimes import data_dir, load_task_data
from .sampling import MultiTaskBatches
from .tasks import get_task

log = logging.getLogger("pet_mtl")

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


def autocast(device: torch.device, precision: str):
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r}: expected one of {', '.join(PRECISIONS)}")
    dtype = PRECISIONS[precision]
    return nullcontext() if dtype is None else torch.autocast(device_type=device.type, dtype=dtype)


def pad_multiple(configured: int | None, precision: str, device: torch.device) -> int:
    """Round padded lengths up to this multiple. None = auto: 8 where shapes cost (bf16 autocast builds kernels per
    shape, GPUs want multiples of 8), else 1: in fp32 on the CPU, padding to the batch's longest is 7% faster
    than to a multiple of 8 and 15% faster than 16 (benchmarks/RESULTS.md)."""
    if configured is not None:
        return configured
    return 8 if precision != "fp32" or device.type != "cpu" else 1


def split_file(directory: Path, task: str, split: str) -> Path:
    files = get_task(task).files
    if split not in files or split == "train":
        raise ConfigError(f"split={split!r}: expected one of {', '.join(s for s in files if s != 'train')}")
    return directory / files[split]


# ---------------------------------------------------------------- scoring


@torch.inference_mode()
def score_features(model: Scorer, features: Sequence[Feature], batch_size: int, pad_id: int,
                   pad_to_multiple_of: int, precision: str, device: torch.device, dist: Dist | None = None) -> torch.Tensor:
    """[N, C] label scores in input order; batches are formed from length-sorted features to cut padding, and
    under torchrun each rank scores every world-th batch and the results are gathered."""
    dist = dist or Dist()
    was_training = model.training
    model.eval()
    order = sorted(range(len(features)), key=lambda i: len(features[i].input_ids))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    mine = []
    for idx in batches[dist.rank::dist.world]:
        batch = collate([features[i] for i in idx], pad_id, pad_to_multiple_of)
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast(device, precision):
            mine.append((idx, model(**batch).float().cpu()))
    out = torch.empty(len(features), model.max_labels)
    for part in dist.gather(mine):
        for idx, scores in part:
            out[idx] = scores
    model.train(was_training)
    return out


def example_scores(features: Sequence[Feature], scores: torch.Tensor, n_examples: int) -> torch.Tensor:
    """Average each example's label scores over the patterns it was rendered with (the pattern ensemble)."""
    total = torch.zeros(n_examples, scores.size(1))
    count = torch.zeros(n_examples, 1)
    ex = torch.tensor([f.example for f in features])
    total.index_add_(0, ex, scores)
    count.index_add_(0, ex, torch.ones(len(features), 1))
    return total / count


def predict_labels(model: Scorer, encoder, examples: Sequence[Example], batch_size: int,
                   precision: str, device: torch.device, pad_to_multiple_of: int | None = None,
                   dist: Dist | None = None) -> list[int]:
    """Label indices for one task's examples, in input order."""
    feats = encoder.encode(examples, with_labels=False)
    scores = score_features(model, feats, batch_size, encoder.tokenizer.pad_token_id,
                            pad_multiple(pad_to_multiple_of, precision, device), precision, device, dist)
    n_labels = get_task(examples[0].task).num_labels
    return example_scores(feats, scores, len(examples))[:, :n_labels].argmax(-1).tolist()


def score_predictions(examples: Sequence[Example], preds: Sequence[int]) -> dict[str, float]:
    """Macro-F1 and accuracy of one task's label indices against the examples' own labels."""
    task = get_task(examples[0].task)
    return classification_scores(list(preds), [task.label_index(e.label) for e in examples])


def evaluate(model: Scorer, encoder, val: dict[str, list[Example]], batch_size: int,
             precision: str, device: torch.device, pad_to_multiple_of: int | None = None,
             dist: Dist | None = None) -> dict[str, Any]:
    per_task = {}
    for name, examples in val.items():
        preds = predict_labels(model, encoder, examples, batch_size, precision, device, pad_to_multiple_of, dist)
        per_task[name] = score_predictions(examples, preds)
    return {"tasks": per_task, "score": competition_score(per_task)}


# ---------------------------------------------------------------- training


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW without weight decay on biases and LayerNorm gains, fused where torch has a fused kernel.

    The fused kernel matters on CPU: for zh-mini-mlm's 8.8M parameters a step takes 9 ms fused against 47 ms for
    the default per-tensor loop, about 12% of a whole training step (benchmarks/RESULTS.md).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    try:
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, ValueError):  # a device or dtype without a fused kernel
        return torch.optim.AdamW(groups, lr=lr)


class Trainer:
    def __init__(self, cfg: Config, run_dir: Path):
        self.cfg = cfg
        self.started = time.time()
        self.dist = Dist.from_env(cfg.train.device.split(":")[0])
        if not self.dist.main:
            log.setLevel(logging.WARNING)
        self.run_dir = Path(self.dist.gather(str(run_dir))[0])  # ranks may disagree on Hydra's ${now:...}
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.device = self.dist.device(cfg.train.device)
        self._check_config()
        if cfg.train.num_threads:
            torch.set_num_threads(cfg.train.num_threads)
        torch.manual_seed(cfg.seed)
        patterns = cfg.patterns
        if OmegaConf.is_config(patterns):
            patterns = OmegaConf.to_container(patterns)
        self.patterns = load_pattern_set(patterns, cfg.tasks, cfg.pattern_root or PATTERNS_ROOT)
        self.data = load_task_data(cfg)
        self.tokenizer, mlm = self._backbone()
        self.encoder = self.method.encoder(self.tokenizer, self.patterns, cfg.tasks, cfg.model.max_length)
        self.model = self.method.model(mlm, self.encoder, cfg.model.cln_dim).to(self.device)
        self.ddp = self.dist.wrap(self.model, self.device, find_unused_parameters=not self.method.uses_patterns)
        self.features, items = self._training_features()
        tr = cfg.train
        self.task_weight = torch.tensor([float(tr.task_weights.get(t, 1.0)) for t in self.encoder.tasks])
        self.batches = MultiTaskBatches(items, [len(f.input_ids) for f in self.features], tr.batch_size,
                                        tr.sampling, tr.temperature, cfg.seed, tr.group_by_length)
        per_step = tr.grad_accum * self.dist.world
        self.total_steps = tr.max_steps or max(1, math.ceil(tr.epochs * len(self.batches) / per_step))
        self.optimizer, self.scheduler = self._optimizer()
        self.pad_multiple = pad_multiple(tr.pad_to_multiple_of, tr.precision, self.device)
        self.step = 0  # optimizer steps done
        self.micro = 0  # batches consumed (position in the epoch stream)
        self.best: float | None = None
        self.history: list[dict[str, Any]] = []
        self.train_seconds = 0.0
        self.wall_before = 0.0  # wall time of the interrupted process(es) before a resume
        self.examples_seen = 0
        self.losses: list[float] = []  # training losses since the last evaluation
        self._epoch_of: int | None = None  # which epoch's batch list _epoch_batches holds
        self._epoch_batches: list[list[int]] = []

    def _check_config(self) -> None:
        """The cheap checks, before any data or model is loaded."""
        cfg = self.cfg
        self.method = get_method(cfg.method)
        for t in cfg.tasks:
            get_task(t)
        unknown = sorted(set(cfg.train.task_weights) - set(cfg.tasks))
        if unknown:
            raise ConfigError(f"train.task_weights names {', '.join(unknown)}, not among tasks {list(cfg.tasks)}")
        for split in cfg.train.predict_splits:
            for t in cfg.tasks:
                path = split_file(data_dir(cfg.data.dir), t, split)
                if not path.is_file():
                    raise ConfigError(f"train.predict_splits has {split!r} but {path} does not exist; "
                                      "set train.predict_splits=[] to skip prediction")

    def _backbone(self):
        cfg = self.cfg
        if cfg.model.path is not None:
            return load_pretrained(cfg.model.path, cfg.model.trust_pickle)
        texts = [v for d in self.data.values() for e in d.train + d.val for v in e.fields.values()]
        texts += [p.source for ps in self.patterns.values() for p in ps]
        texts += [w for ps in self.patterns.values() for p in ps for w in p.verbalizer.values()]
        tiny = cfg.model.tiny
        return build_tiny(self.run_dir / "tiny-backbone", texts, tiny.hidden, tiny.layers, tiny.heads, seed=cfg.seed)

    def _training_features(self) -> tuple[list[Feature], dict[str, list[int]]]:
        """All (example, pattern) features, and which of them belong to each task."""
        t0 = time.time()
        features: list[Feature] = []
        items: dict[str, list[int]] = {}
        for name, d in self.data.items():
            feats = self.encoder.encode(d.train)
            items[name] = list(range(len(features), len(features) + len(feats)))
            features.extend(feats)
        log.info("encoded %d training features in %.1fs (%s)", len(features), time.time() - t0,
                 ", ".join(f"{t}: {len(v)}" for t, v in items.items()))
        return features, items

    def _optimizer(self):
        """AdamW (see build_optimizer), linear warmup then linear decay to 0."""
        tr = self.cfg.train
        optimizer = build_optimizer(self.model, tr.lr, tr.weight_decay)
        warmup = int(tr.warmup_ratio * self.total_steps)

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            return max(0.0, (self.total_steps - step) / max(1, self.total_steps - warmup))

        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)

    # -- state ---------------------------------------------------------------------------------

    def meta(self, metrics: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "method": self.cfg.method,
            "cln_dim": self.cfg.model.cln_dim,
            "tasks": {t: {"labels": list(get_task(t).labels)} for t in self.encoder.tasks},
            "patterns": [p.to_dict() for p in self.encoder.patterns],
            "max_length": self.cfg.model.max_length,
            "step": self.step,
            "metrics": metrics,
            "data_dir": str(data_dir(self.cfg.data.dir)),
        }

    def _save(self, name: str, metrics: dict[str, Any] | None, with_state: bool) -> None:
        """Rank 0 writes; every rank's RNG state goes into the training state (dropout differs per rank)."""
        state = None
        if with_state:
            rng_states = self.dist.gather(torch.get_rng_state())
            tensors, opt_info = ckpt_io.optimizer_to_flat(self.optimizer)
            tensors.update({f"rng.torch.{r}": t for r, t in enumerate(rng_states)})
            state = (tensors, {"optimizer": opt_info, "scheduler": self.scheduler.state_dict(), "step": self.step,
                               "micro": self.micro, "best": self.best, "history": self.history,
                               "train_seconds": self.train_seconds, "examples_seen": self.examples_seen,
                               "losses": self.losses, "world": self.dist.world,
                               "wall_seconds": self.wall_before + time.time() - self.started})
        if self.dist.main:
            ckpt_io.save_checkpoint(self.run_dir / name, self.model, self.tokenizer, self.meta(metrics),
                                    OmegaConf.to_yaml(self.cfg, resolve=True), state)
        self.dist.barrier()

    def _load_weights(self, ckpt: Path) -> None:
        _, _, saved, _, _ = ckpt_io.load_checkpoint(ckpt)
        self.model.mlm.load_state_dict(saved.state_dict())
        ckpt_io.load_method_state(self.model, ckpt)

    def _resume(self) -> None:
        last = self.run_dir / "checkpoint-last"
        if not last.is_dir():
            raise ConfigError(f"train.resume=true but {last} does not exist; run with hydra.run.dir=<the run to resume>")
        tensors, state = ckpt_io.load_train_state(last)
        if state["world"] != self.dist.world:
            raise ConfigError(f"{last} was written by {state['world']} process(es); resume it with as many "
                              f"(this run has {self.dist.world})")
        self._load_weights(last)
        ckpt_io.optimizer_from_flat(self.optimizer, tensors, state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(tensors[f"rng.torch.{self.dist.rank}"])
        self.step, self.micro, self.best = state["step"], state["micro"], state["best"]
        self.history, self.train_seconds = state["history"], state["train_seconds"]
        self.wall_before = state.get("wall_seconds", 0.0)
        self.examples_seen, self.losses = state["examples_seen"], state["losses"]
        log.info("resumed from %s at step %d", last, self.step)

    # -- loop ----------------------------------------------------------------------------------

    def _evaluate(self) -> dict[str, Any]:
        tr = self.cfg.train
        t0 = time.time()
        result = evaluate(self.model, self.encoder, {t: d.val for t, d in self.data.items()}, tr.eval_batch_size,
                          tr.precision, self.device, self.pad_multiple, self.dist)
        entry = {"step": self.step, "epoch": round(self.micro / len(self.batches), 4),
                 "train_loss": sum(self.losses) / len(self.losses) if self.losses else None, **result,
                 "train_seconds": round(self.train_seconds, 2), "eval_seconds": round(time.time() - t0, 2),
                 "train_examples_per_s": round(self.examples_seen / max(self.train_seconds, 1e-9), 1)}
        self.history.append(entry)
        self.losses = []
        log.info("step %d | %s | mean macro-F1 %.4f", self.step,
                 " | ".join(f"{t} F1 {s['macro_f1']:.4f} acc {s['accuracy']:.4f}" for t, s in result["tasks"].items()),
                 result["score"])
        if self.best is None or result["score"] > self.best:
            self.best = result["score"]
            self._save("checkpoint-best", entry, with_state=False)
        self._save("checkpoint-last", entry, with_state=True)
        self._write_metrics()
        return entry

    def _write_metrics(self, test: dict[str, Any] | None = None, finished: bool = False) -> None:
        """metrics.json, the run's source of truth (pet_mtl.report reads it): every evaluation, the best one,
        the test-set result of checkpoint-best where the regime has a test set, and the run's wall time."""
        if not self.dist.main:
            return
        best = max(self.history, key=lambda e: e["score"])
        doc = {"method": self.cfg.method, "regime": self.cfg.data.regime, "seed": self.cfg.seed,
               "finished": finished, "history": self.history, "best": best, "test": test,
               "wall_seconds": round(self.wall_before + time.time() - self.started, 2)}
        ckpt_io.atomic_write_text(self.run_dir / "metrics.json", json.dumps(doc, indent=1))

    def _test(self) -> dict[str, Any]:
        """Score checkpoint-best once on the regime's test set (few-shot): model selection never sees it.
        Leaves the model holding checkpoint-best's weights."""
        self._load_weights(self.run_dir / "checkpoint-best")
        tr = self.cfg.train
        result = evaluate(self.model, self.encoder, {t: d.test for t, d in self.data.items()}, tr.eval_batch_size,
                          tr.precision, self.device, self.pad_multiple, self.dist)
        log.info("test (checkpoint-best) | %s | mean macro-F1 %.4f",
                 " | ".join(f"{t} F1 {s['macro_f1']:.4f}" for t, s in result["tasks"].items()), result["score"])
        return {"step": max(self.history, key=lambda e: e["score"])["step"], **result}

    def _batch(self, index: int) -> list[Feature]:
        """The index-th batch of the endless epoch stream (epochs are recomputed from the seed, so resumable)."""
        epoch, pos = divmod(index, len(self.batches))
        if self._epoch_of != epoch:
            self._epoch_batches, self._epoch_of = self.batches.epoch(epoch), epoch
        return [self.features[i] for i in self._epoch_batches[pos]]

    def _train_step(self) -> tuple[float, int]:
        """One optimizer step over grad_accum x world batches; (mean loss, examples) summed over ranks."""
        tr = self.cfg.train
        loss_sum, n_ex = 0.0, 0
        weights = self.task_weight.to(self.device)
        for k in range(tr.grad_accum):
            feats = self._batch(self.micro + self.dist.rank)
            self.micro += self.dist.world
            batch = {key: v.to(self.device) for key, v in
                     collate(feats, self.tokenizer.pad_token_id, self.pad_multiple).items()}
            sync = self.ddp.no_sync() if self.ddp is not self.model and k < tr.grad_accum - 1 else nullcontext()
            with sync:
                with autocast(self.device, tr.precision):
                    scores = self.ddp(**batch)
                loss = label_loss(scores.float(), batch["labels"], weights[batch["task"]])
                (loss / tr.grad_accum).backward()
            loss_sum += loss.item() / tr.grad_accum
            n_ex += len(feats)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), tr.max_grad_norm, foreach=True)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum, n_ex = self.dist.sum([loss_sum, n_ex])
        return loss_sum / self.dist.world, int(n_ex)

    def fit(self) -> dict[str, Any]:
        tr = self.cfg.train
        if tr.resume:
            self._resume()
        log.info("training %d steps (batch %d x accum %d x %d process(es), %d batches/epoch, sampling %s) on %s",
                 self.total_steps, tr.batch_size, tr.grad_accum, self.dist.world, len(self.batches), tr.sampling,
                 self.device)
        bar = None
        if tr.progress and self.dist.main:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.total_steps, initial=self.step, desc="train", dynamic_ncols=True)
        self.model.train()
        loss_ema = None
        while self.step < self.total_steps:
            t0 = time.time()
            loss, n_ex = self._train_step()
            self.step += 1
            self.train_seconds += time.time() - t0
            self.examples_seen += n_ex
            self.losses.append(loss)
            loss_ema = loss if loss_ema is None else 0.95 * loss_ema + 0.05 * loss
            speed = self.examples_seen / max(self.train_seconds, 1e-9)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_ema:.4f}", ex_s=f"{speed:.0f}")
            elif tr.log_every and self.step % tr.log_every == 0:
                log.info("step %d/%d loss %.4f lr %.2e %.0f ex/s", self.step, self.total_steps, loss_ema,
                         self.scheduler.get_last_lr()[0], speed)
            if (tr.eval_every and self.step % tr.eval_every == 0) or self.step == self.total_steps:
                self._evaluate()
        if bar is not None:
            bar.close()
        test = None
        if all(d.test for d in self.data.values()):
            test = self._test()
        self._write_metrics(test, finished=True)
        best = max(self.history, key=lambda e: e["score"])
        return {"best": best, "last": self.history[-1], "test": test, "run_dir": str(self.run_dir),
                "checkpoint": str(self.run_dir / "checkpoint-best"), "main": self.dist.main}
