"""The training loop: features in, checkpoints and metrics.json out. Training only: scoring lives in inference.py.

One `Trainer` owns a run directory. It evaluates every `train.eval_every` optimizer steps and at the end, appends
to metrics.json, keeps `checkpoint-best` (highest mean macro-F1) and `checkpoint-last` (with the optimizer,
scheduler, RNG states and the `TrainState`, so `train.resume=true` continues exactly where the run stopped).
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import yaml
from omegaconf import OmegaConf

from pet_mtl.backbones.loading import build_tiny, load_pretrained
from pet_mtl.core.config import Config
from pet_mtl.core.distributed import Dist
from pet_mtl.core.errors import ConfigError, TrainingError
from pet_mtl.core.io import remove_leftovers
from pet_mtl.core.precision import autocast, pad_multiple
from pet_mtl.core.resources import data_dir
from pet_mtl.core.tasks import get_task
from pet_mtl.core.validate import check_resume
from pet_mtl.data.regimes import load_task_data
from pet_mtl.data.sampling import MultiTaskBatches
from pet_mtl.inference import calibration
from pet_mtl.inference import checkpoint as ckpt_io
from pet_mtl.inference.predictor import Predictor
from pet_mtl.methods import MethodOptions, build_scorer, get_method
from pet_mtl.methods.features import Feature, collate
from pet_mtl.prompts import load_pattern_set
from pet_mtl.training.algorithms.ema import WeightAverage
from pet_mtl.training.checks import check as check_config
from pet_mtl.training.losses import label_loss, rdrop_loss, soft_label_loss
from pet_mtl.training.optim import build_optimizer, warmup_linear
from pet_mtl.training.runlog import RunLog
from pet_mtl.training.state import (
    TrainState,
    load_train_state,
    optimizer_from_flat,
    train_state_tensors,
    write_train_state,
)

log = logging.getLogger("pet_mtl")


class Trainer:
    def __init__(self, cfg: Config, run_dir: Path):
        self.cfg = cfg
        self.started = time.time()
        self.dist = Dist.from_env(cfg.train.device.split(":")[0])
        if not self.dist.main:
            log.setLevel(logging.WARNING)
        self.run_dir = Path(self.dist.gather(str(run_dir))[0])  # ranks may disagree on Hydra's ${now:...}
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.dist.main:  # temporary folders left by a process killed while saving
            remove_leftovers(self.run_dir / "checkpoint-best")
            remove_leftovers(self.run_dir / "checkpoint-last")
        self.device = self.dist.device(cfg.train.device)
        check_config(cfg)
        self.method = get_method(cfg.method)
        tr = cfg.train
        if tr.num_threads:
            torch.set_num_threads(tr.num_threads)
        torch.manual_seed(cfg.seed)
        self.patterns = {}
        if self.method.uses_patterns:  # a method that reads plain text is never blocked by a pattern file
            patterns = OmegaConf.to_container(cfg.patterns) if OmegaConf.is_config(cfg.patterns) else cfg.patterns
            self.patterns = load_pattern_set(patterns, cfg.tasks, list(cfg.pattern_roots), cfg.label_scoring)
        self.data = load_task_data(cfg)
        self.tokenizer, mlm = self._backbone()
        self.options = MethodOptions(cln_dim=cfg.model.cln_dim, segment_ids=cfg.model.segment_ids,
                                     head_dropout=cfg.model.head_dropout, head_init=cfg.model.head_init)
        self.featurizer, model = build_scorer(self.method, self.tokenizer, mlm, self.patterns, list(cfg.tasks),
                                              cfg.model.max_length, self.options)
        self.model = model.to(self.device)
        self.ddp = self.dist.wrap(self.model, self.device, find_unused_parameters=self.method.sparse_gradients)
        self.soft_rows: dict[str, list] = {}  # distillation: per task, the unlabelled rows and their soft labels
        if cfg.distill.teachers:  # the teachers label the unlabelled rows once (cached in the run directory)
            if tr.rdrop:
                raise ConfigError("train.rdrop with distillation is not supported yet; use one of them")
            from pet_mtl.training.distillation import soft_labels

            rows, probs = soft_labels(cfg, self.data, self.run_dir, self.device, self.dist.main, self.dist.barrier)
            self.soft_rows = {t: list(zip(rows[t], probs[t])) for t in rows if rows[t]}
        self.features, items = self._training_features()
        self.task_weight = torch.tensor([float(tr.task_weights.get(t, 1.0)) for t in self.featurizer.tasks])
        self.batches = MultiTaskBatches(items, [len(f.input_ids) for f in self.features], tr.batch_size,
                                        tr.sampling, tr.temperature, cfg.seed, tr.group_by_length,
                                        batch_tasks=tr.batch_tasks)
        per_step = tr.grad_accum * self.dist.world
        self.total_steps = tr.max_steps or max(1, math.ceil(tr.epochs * len(self.batches) / per_step))
        self.optimizer = build_optimizer(self.model, tr.lr, tr.weight_decay)
        self.scheduler = warmup_linear(self.optimizer, self.total_steps, tr.warmup_ratio)
        self.pad_multiple = pad_multiple(tr.pad_to_multiple_of, tr.precision, self.device)
        self.state = TrainState(world=self.dist.world)
        self.ema = WeightAverage(self.model, tr.ema) if tr.ema else None
        self.runlog = RunLog(self.run_dir, self.dist.main, tr.progress, tr.log_every, tr.tensorboard)
        self.aux = None
        if tr.mlm_weight:  # PET's auxiliary masked-LM loss on unlabelled text
            if self.dist.world > 1:
                raise ConfigError("train.mlm_weight > 0 runs in one process for now (its extra forward is outside "
                                  "DistributedDataParallel); train without torchrun, or with train.mlm_weight=0")
            from pet_mtl.training.algorithms.aux_mlm import AuxiliaryMLM

            self.aux = AuxiliaryMLM(cfg, self.data, self.tokenizer, self.model.mlm)

    def _backbone(self):
        cfg = self.cfg
        if cfg.model.path is not None:
            return load_pretrained(cfg.model.path, cfg.model.trust_pickle, strict=cfg.model.strict)
        texts = [v for d in self.data.values() for e in d.train + d.val for v in e.fields.values()]
        for p in (p for ps in self.patterns.values() for p in ps):
            texts += [p.source, *p.verbalizer.values()]
        tiny = cfg.model.tiny
        return build_tiny(self.run_dir / "tiny-backbone", texts, tiny.hidden, tiny.layers, tiny.heads, seed=cfg.seed)

    def _training_features(self) -> tuple[list[Feature], dict[str, list[int]]]:
        """All training features, and which of them belong to each task."""
        t0 = time.time()
        features: list[Feature] = []
        items: dict[str, list[int]] = {}
        for name, d in self.data.items():
            feats = self.featurizer.encode(d.train)
            if name in self.soft_rows:  # distillation: the teacher-labelled rows join
                rows, probs = zip(*self.soft_rows[name])
                feats += [dataclasses.replace(f, soft=tuple(probs[f.example]))
                          for f in self.featurizer.encode(list(rows), with_labels=False)]
            items[name] = list(range(len(features), len(features) + len(feats)))
            features.extend(feats)
        log.info("encoded %d training features in %.1fs (%s)", len(features), time.time() - t0,
                 ", ".join(f"{t}: {len(v)}" for t, v in items.items()))
        return features, items

    def predictor(self, featurizer=None, model=None, progress: bool = False) -> Predictor:
        """This run's featurizer and model (or a loaded checkpoint's), with the run's evaluation settings."""
        tr = self.cfg.train
        return Predictor(self.featurizer if featurizer is None else featurizer,
                         self.model if model is None else model, tr.eval_batch_size, tr.precision, self.device,
                         self.pad_multiple, self.dist, progress)

    # -- state ---------------------------------------------------------------------------------

    def meta(self, metrics: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "method": self.method.name,
            "method_options": dataclasses.asdict(self.options),
            "tasks": {t: {"labels": list(get_task(t).labels)} for t in self.featurizer.tasks},
            "patterns": [p.to_dict() for t in self.featurizer.tasks for p in self.patterns.get(t, [])],
            "max_length": self.cfg.model.max_length,
            "step": self.state.step,
            "metrics": metrics,
            "data_dir": str(data_dir(self.cfg.data.dir)),
        }

    def _save(self, name: str, metrics: dict[str, Any] | None, with_state: bool) -> None:
        """Rank 0 writes; every rank's RNG state goes into the training state (dropout differs per rank)."""
        state = None
        if with_state and self.cfg.train.checkpoint_last == "full":
            rng_states = self.dist.gather(torch.get_rng_state())
            tensors, opt_info = train_state_tensors(self.optimizer, rng_states)
            if self.ema is not None:  # the checkpoint's model is the average; resume continues the trained weights
                tensors.update(self.ema.trained_tensors())
            progress = dataclasses.replace(self.state, wall_seconds=self._wall_seconds(),
                                           aux_stream=self.aux.state() if self.aux is not None else self.state.aux_stream)
            state = (tensors, {"optimizer": opt_info, "scheduler": self.scheduler.state_dict(),
                               "progress": progress.to_json()})
        if self.dist.main:
            ckpt_io.save_checkpoint(self.run_dir / name, self.model, self.tokenizer, self.meta(metrics),
                                    OmegaConf.to_yaml(self.cfg, resolve=True),
                                    None if state is None else lambda tmp: write_train_state(tmp, *state))
        self.dist.barrier()

    def _resume(self) -> None:
        last = self.run_dir / "checkpoint-last"
        if not last.is_dir():
            raise ConfigError(f"train.resume=true but {last} does not exist; run with hydra.run.dir=<the run to resume>"
                              " (a run with train.checkpoint_last=none keeps none)")
        check_resume(yaml.safe_load((last / "config.yaml").read_text(encoding="utf-8")),
                     OmegaConf.to_container(self.cfg, resolve=True), list(self.cfg.train.resume_changes),
                     str(last / "config.yaml"))
        tensors, saved = load_train_state(last)
        progress = TrainState.from_json(saved["progress"])
        if progress.world != self.dist.world:
            raise ConfigError(f"{last} was written by {progress.world} process(es); resume it with as many "
                              f"(this run has {self.dist.world})")
        ckpt_io.load_weights(self.model, last)
        optimizer_from_flat(self.optimizer, tensors, saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        if self.ema is not None:
            self.ema.restore(tensors)
        torch.set_rng_state(tensors[f"rng.torch.{self.dist.rank}"])
        self.state = progress  # its wall_seconds are the earlier processes'; this one's are added on saving
        if self.aux is not None:
            self.aux.restore(progress.aux_stream)
        log.info("resumed from %s at step %d", last, self.state.step)

    def _wall_seconds(self) -> float:
        return self.state.wall_seconds + time.time() - self.started

    # -- loop ----------------------------------------------------------------------------------

    def _evaluate(self) -> dict[str, Any]:
        """Score the validation split, keep the checkpoints, append to metrics.json; with train.ema all of it on the
        averaged weights, and at the end of training the trained weights' score beside them (what averaging bought)."""
        if self.ema is None:
            return self._evaluate_model()
        without = None
        if self.state.step == self.total_steps:
            r = self._validate()
            without = {"score": r["score"], "tasks": {t: {"macro_f1": v["macro_f1"]} for t, v in r["tasks"].items()}}
            log.info("trained weights, without the average | mean macro-F1 %.4f", r["score"])
        with self.ema.applied():
            return self._evaluate_model(without)

    def _validate(self) -> dict[str, Any]:
        """The model as it is now, scored on every task's validation split."""
        with self.runlog.evaluating() as show:
            return self.predictor(progress=show).evaluate({t: d.val for t, d in self.data.items()})

    def _evaluate_model(self, without_ema: dict[str, Any] | None = None) -> dict[str, Any]:
        st = self.state
        t0 = time.time()
        result = self._validate()
        entry = {"step": st.step, "epoch": round(st.micro / len(self.batches), 4),
                 "train_loss": sum(st.losses) / len(st.losses) if st.losses else None,
                 **({"mlm_loss": sum(st.mlm_losses) / len(st.mlm_losses)} if st.mlm_losses else {}), **result,
                 "train_seconds": round(st.train_seconds, 2), "eval_seconds": round(time.time() - t0, 2),
                 "train_examples_per_s": round(st.examples_seen / max(st.train_seconds, 1e-9), 1),
                 **({"without_ema": without_ema} if without_ema else {})}
        st.history.append(entry)
        st.losses, st.mlm_losses = [], []
        self.runlog.evaluation(entry, st.history, self.featurizer.tasks)
        if st.best is None or result["score"] > st.best:
            st.best = result["score"]
            self._save("checkpoint-best", entry, with_state=False)
        if self.cfg.train.checkpoint_last != "none":
            self._save("checkpoint-last", entry, with_state=True)
        self._write_metrics()
        return entry

    def _best_entry(self) -> dict[str, Any]:
        return max(self.state.history, key=lambda e: e["score"])

    def _write_metrics(self, held_out: dict[str, Any] | None = None, finished: bool = False,
                       calibrated: dict[str, Any] | None = None) -> None:
        """metrics.json, the run's source of truth (pet_mtl.report reads it): every evaluation, the best one,
        checkpoint-best's score on the regime's held-out set where it has one, and the run's wall time."""
        self.runlog.write_metrics({"method": self.method.name, "regime": self.cfg.data.regime, "seed": self.cfg.seed,
                                   "finished": finished, "history": self.state.history, "best": self._best_entry(),
                                   "held_out": held_out, "calibration": calibrated,
                                   "wall_seconds": round(self._wall_seconds(), 2)})

    def _held_out(self, best: Predictor) -> dict[str, Any]:
        """Score checkpoint-best, freshly loaded from disk, once on the regime's held-out set (few-shot): model
        selection never sees it. The trainer's own model keeps the last weights."""
        result = best.evaluate({t: d.held_out for t, d in self.data.items()})
        log.info("held-out (checkpoint-best) | %s | mean macro-F1 %.4f",
                 " | ".join(f"{t} F1 {s['macro_f1']:.4f}" for t, s in result["tasks"].items()), result["score"])
        return {"step": self._best_entry()["step"], **result}

    def _loss(self, batch: dict[str, torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
        """The batch's loss; with train.rdrop > 0 the batch goes through the model twice in one forward (stacked,
        so the two copies get independent dropout) and R-Drop's consistency term joins the cross-entropy."""
        rdrop = self.cfg.train.rdrop
        with autocast(self.device, self.cfg.train.precision):
            scores = self.ddp(**({k: torch.cat([v, v]) for k, v in batch.items()} if rdrop else batch)).float()
        if "soft" in batch:
            return soft_label_loss(scores, batch["labels"], batch["soft"], batch["is_soft"], weights,
                                   self.cfg.distill.temperature)
        if not rdrop:
            return label_loss(scores, batch["labels"], weights)
        first, second = scores.chunk(2)
        return rdrop_loss(first, second, batch["labels"], weights, rdrop)

    def _aux_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """loss + train.mlm_weight x the masked-LM loss on a batch of unlabelled text (no-op without it)."""
        if self.aux is None:
            return loss
        mlm = self.aux.loss(self.device)
        self.state.mlm_losses.append(mlm.item())
        return loss + self.cfg.train.mlm_weight * mlm

    def _train_step(self) -> tuple[float, int]:
        """One optimizer step over grad_accum x world batches; (mean loss, examples) summed over ranks."""
        tr = self.cfg.train
        loss_sum, n_ex = 0.0, 0
        weights = self.task_weight.to(self.device)
        for k in range(tr.grad_accum):
            feats = [self.features[i] for i in self.batches.batch(self.state.micro + self.dist.rank)]
            self.state.micro += self.dist.world
            batch = {key: v.to(self.device) for key, v in
                     collate(feats, self.tokenizer.pad_token_id, self.pad_multiple).items()}
            sync = self.ddp.no_sync() if self.ddp is not self.model and k < tr.grad_accum - 1 else nullcontext()
            with sync:
                loss = self._aux_loss(self._loss(batch, weights[batch["task"]]))
                if not torch.isfinite(loss):  # stop before the optimizer or a checkpoint takes it in
                    raise TrainingError(f"the training loss became {loss.item()} at step {self.state.step + 1}; "
                                        "nothing of this step was saved. Lower train.lr, check train.task_weights, "
                                        "or try train.precision=fp32")
                (loss / tr.grad_accum).backward()
            loss_sum += loss.item() / tr.grad_accum
            n_ex += len(feats)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), tr.max_grad_norm, foreach=True)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.state.step + 1)
        loss_sum, n_ex = self.dist.sum([loss_sum, n_ex])
        return loss_sum / self.dist.world, int(n_ex)

    def _plan(self) -> list[str]:
        """What the run will do, said before it starts: where, on which rows, through which patterns, in which steps."""
        tr, cfg = self.cfg.train, self.cfg
        rows = [f"{t}: {len(d.train)} train, {len(d.val)} validation"
                + (f", {len(d.held_out)} held-out" if d.held_out else "") + " rows" for t, d in self.data.items()]
        per_step = tr.batch_size * tr.grad_accum * self.dist.world
        return [f"run directory: {self.run_dir}", f"method {self.method.name} ({self.method.summary}); "
                f"regime {cfg.data.regime}; {'; '.join(rows)}", *self.featurizer.describe(),
                f"plan: {self.total_steps} steps of {per_step} examples (batch {tr.batch_size} x accum {tr.grad_accum}"
                f" x {self.dist.world} process(es)), {len(self.batches)} batches per epoch, sampling {tr.sampling}, "
                f"{tr.batch_tasks}-task batches, evaluation every {tr.eval_every or self.total_steps} steps and at the end, "
                f"on {self.device}", *(self.aux.describe() if self.aux is not None else [])]

    def fit(self) -> dict[str, Any]:
        tr, st = self.cfg.train, self.state
        if tr.resume:
            self._resume()
            st = self.state
        self.runlog.start(self._plan())
        self.model.train()
        with self.runlog.training(self.total_steps, st.step):
            while st.step < self.total_steps:
                t0 = time.time()
                loss, n_ex = self._train_step()
                st.step += 1
                st.train_seconds += time.time() - t0
                st.examples_seen += n_ex
                st.losses.append(loss)
                self.runlog.step(st.step, self.total_steps, loss, self.scheduler.get_last_lr()[0],
                                 st.examples_seen / max(st.train_seconds, 1e-9))
                if (tr.eval_every and st.step % tr.eval_every == 0) or st.step == self.total_steps:
                    self._evaluate()
        held_out = calibrated = None
        if tr.calibrate or all(d.held_out for d in self.data.values()):
            _, _, featurizer, model = ckpt_io.load_scorer(self.run_dir / "checkpoint-best")
            best = self.predictor(featurizer, model.to(self.device))
            held_out = self._held_out(best) if all(d.held_out for d in self.data.values()) else None
            if tr.calibrate:  # label biases for macro-F1, fitted on the validation split, saved with the weights
                calibrated = calibration.fit_and_save(best, {t: d.val for t, d in self.data.items()},
                                                      self.run_dir / "checkpoint-best", self.dist.main)
        self._write_metrics(held_out, finished=True, calibrated=calibrated)
        self.runlog.close()
        return {"best": self._best_entry(), "last": st.history[-1], "held_out": held_out,
                "run_dir": str(self.run_dir), "checkpoint": str(self.run_dir / "checkpoint-best"),
                "main": self.dist.main}
