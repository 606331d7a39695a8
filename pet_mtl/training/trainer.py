"""A classification run on the one loop (training/loop.py): features in, checkpoints and metrics.json out.

One `Trainer` owns a run directory. It evaluates every `train.eval_every` optimizer steps and at the end, appends
to metrics.json, keeps `checkpoint-best` (highest mean macro-F1) and `checkpoint-last` (with the optimizer,
scheduler, RNG states, the `TrainState` and each plug-in's state, so `train.resume=true` continues exactly where
the run stopped). The loss is the run's objective (training/objectives.py); the tricks around it are algorithms
(training/algorithms/). Scoring lives in inference/.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from pet_mtl.backbones.adapters import add_lora, frozen_base, parameter_counts
from pet_mtl.backbones.loading import build_tiny, check_positions, load_pretrained
from pet_mtl.core.config import Config
from pet_mtl.core.device import resolve_device, settle
from pet_mtl.core.distributed import Dist
from pet_mtl.core.errors import ConfigError
from pet_mtl.core.io import atomic_write_text, remove_leftovers
from pet_mtl.core.precision import pad_multiple
from pet_mtl.core.resources import CONF_DIR, DEMO_DIR, data_dir
from pet_mtl.core.rundir import TRAIN_CHOICES, RunDirectory, resume_command
from pet_mtl.core.tasks import get_task
from pet_mtl.data.regimes import load_task_data
from pet_mtl.data.sampling import MultiTaskBatches
from pet_mtl.inference import checkpoint as ckpt_io
from pet_mtl.inference.predictor import Predictor
from pet_mtl.methods import MethodOptions, build_scorer, get_method
from pet_mtl.methods.features import Feature, collate
from pet_mtl.metrics import calibrated_score, calibrated_task_score
from pet_mtl.prompts import load_pattern_set, read_yaml
from pet_mtl.training.algorithms import build_algorithms
from pet_mtl.training.checks import check as check_config
from pet_mtl.training.loop import Loop
from pet_mtl.training.objectives import build_objective
from pet_mtl.training.optim import build_optimizer, warmup_linear
from pet_mtl.training.runlog import RunLog
from pet_mtl.training.state import TrainState, write_train_state
from pet_mtl.training.trackers import report_to

log = logging.getLogger("pet_mtl")


def method_patterns(method, patterns: dict) -> dict:
    """The run's pattern set, or, when the run left it at the shipped `default` and the method has a set of its
    own (method=causal: prompts whose slot ends them), that set."""
    if method.default_patterns is None:
        return patterns
    shipped = Path(CONF_DIR) / "patterns"
    if patterns == (read_yaml(shipped / "default.yaml") or {}):
        return read_yaml(shipped / f"{method.default_patterns}.yaml") or {}
    return patterns


class Trainer(Loop):
    def __init__(self, cfg: Config, run_dir: Path):
        self.cfg = cfg
        self.started = time.time()
        self.dist = Dist.from_env(resolve_device(cfg.train.device, "train.device").type)
        if not self.dist.is_main:
            log.setLevel(logging.WARNING)
        self.run_dir = Path(self.dist.gather(str(run_dir))[0])  # ranks may disagree on Hydra's ${now:...}
        self.held = RunDirectory(self.run_dir, "train") if self.dist.is_main else None  # checks it, creates it
        if self.held is not None:
            self.held.refuse_results(cfg.train.resume, cfg.train.overwrite, TRAIN_CHOICES)
            remove_leftovers(self.run_dir / "checkpoint-best")  # of a process killed while saving
            remove_leftovers(self.run_dir / "checkpoint-last")
        else:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.device = self.dist.device(cfg.train.device)
        settle(cfg.train, self.device)
        check_config(cfg)
        self.method = get_method(cfg.method)
        tr = cfg.train
        if tr.num_threads:
            torch.set_num_threads(tr.num_threads)
        torch.manual_seed(cfg.seed)
        self.patterns = {}
        if self.method.uses_patterns:  # a method that reads plain text is never blocked by a pattern file
            patterns = OmegaConf.to_container(cfg.patterns) if OmegaConf.is_config(cfg.patterns) else cfg.patterns
            patterns = method_patterns(self.method, patterns)
            self.patterns = load_pattern_set(patterns, cfg.tasks, list(cfg.pattern_roots), cfg.label_scoring)
        self.data = load_task_data(cfg)
        self.tokenizer, mlm = self._backbone()
        check_positions("model.max_length", cfg.model.max_length, mlm.config)
        adapter = self._adapters(mlm)
        self.options = MethodOptions(cln_dim=cfg.model.cln_dim, segment_ids=cfg.model.segment_ids,
                                     head_dropout=cfg.model.head_dropout, head_init=cfg.model.head_init,
                                     prompt_encoder=cfg.model.prompt_encoder)
        self.featurizer, model = build_scorer(self.method, self.tokenizer, mlm, self.patterns, list(cfg.tasks),
                                              cfg.model.max_length, self.options)
        if tr.train_only == "prompts":  # prompt tuning: the learned tokens alone
            if model.prompts is None:
                raise ConfigError("train.train_only=prompts trains the patterns' soft() tokens, and these patterns "
                                  "have none: write {{ soft(8) }} (or soft('<text>')) into a template")
            for p in model.parameters():
                p.requires_grad = False
            for p in model.prompts.parameters():
                p.requires_grad = True
            if adapter is None:  # nothing of the backbone trains: checkpoints name it instead of copying it
                adapter = frozen_base(mlm, str(self._base_path()))
        model.adapter = adapter
        self.model = model.to(self.device)
        trained, total = parameter_counts(self.model)
        log.info("parameters: %s trained of %s (%.2f%%)%s%s", f"{trained:,}", f"{total:,}", 100 * trained / total,
                 "" if adapter is None or not adapter.r else f"; LoRA r={adapter.r} alpha={adapter.alpha:g} on "
                 f"{', '.join(adapter.target_modules)}, the backbone frozen",
                 "" if model.prompts is None else f"; {model.prompts.weight.size(0)} learned prompt token(s)"
                 + (" alone (train.train_only=prompts)" if tr.train_only == "prompts" else ""))
        self.ddp = self.dist.wrap(self.model, self.device, find_unused_parameters=self.method.sparse_gradients)
        self.objective = build_objective(cfg)
        self.soft_rows: dict[str, list] = {}  # distillation: per task, the unlabelled rows and their soft labels
        if cfg.distill.teachers:  # the teachers label the unlabelled rows once (cached in the run directory)
            from pet_mtl.training.distillation import soft_labels

            rows, probs = soft_labels(cfg, self.data, self.run_dir, self.device, self.dist.is_main, self.dist.barrier)
            self.soft_rows = {t: list(zip(rows[t], probs[t])) for t in rows if rows[t]}
        self.features, items = self._training_features()
        self.task_weight = torch.tensor([float(tr.task_weights.get(t, 1.0)) for t in self.featurizer.tasks])
        self.batches = MultiTaskBatches(items, [len(f.input_ids) for f in self.features], tr.batch_size,
                                        tr.sampling, tr.sampling_temperature, cfg.seed, tr.group_by_length,
                                        batch_tasks=tr.batch_tasks)
        per_step = tr.grad_accum * self.dist.world
        self.total_steps = tr.max_steps or max(1, math.ceil(tr.epochs * len(self.batches) / per_step))
        self.optimizer = build_optimizer(self.model, tr.lr, tr.weight_decay, tr.prompt_lr)
        self.scheduler = warmup_linear(self.optimizer, self.total_steps, tr.warmup_ratio)
        self.pad_multiple = pad_multiple(tr.pad_to_multiple_of, tr.precision, self.device)
        self.state = TrainState(world=self.dist.world)
        self.runlog = RunLog(self.run_dir, self.dist.is_main, tr.progress, tr.log_every, report_to(tr),
                             plots=tr.plots)
        self.algorithms = build_algorithms(self)
        self._best: Predictor | None = None

    def _backbone(self):
        cfg = self.cfg
        if cfg.model.path is not None:
            method = get_method(cfg.method)
            return load_pretrained(cfg.model.path, cfg.model.trust_pickle, strict=cfg.model.strict,
                                   needs_head=method.needs_mlm_head, kinds=method.backbone_kinds, kind=cfg.model.kind)
        if "masked" not in self.method.backbone_kinds:
            raise ConfigError(f"method={cfg.method} needs a {self.method.backbone_kinds[0]} LM: pass model.path=<its "
                              "folder> (e.g. ../shared/models/zh-mini-clm); the demo's tiny random model is a masked LM")
        texts = [v for d in self.data.values() for e in d.train + d.val for v in e.fields.values()]
        for p in (p for ps in self.patterns.values() for p in ps):
            texts += [p.source, *p.verbalizer.values()]
        tiny = cfg.model.tiny
        return build_tiny(self.run_dir / "tiny-backbone", texts, tiny.hidden, tiny.layers, tiny.heads, seed=cfg.seed)

    def _adapters(self, mlm):
        """model.lora.r > 0: LoRA adapters into the backbone, which is then frozen (the record goes with every
        checkpoint, naming the base by its absolute path and the fingerprint of its weights)."""
        lora = self.cfg.model.lora
        if not lora.r:
            return None
        return add_lora(mlm, str(self._base_path()), lora.r, lora.alpha, lora.dropout,
                        list(lora.target_modules) if lora.target_modules else None)

    def _base_path(self) -> Path:
        return Path(self.cfg.model.path).resolve() if self.cfg.model.path else self.run_dir / "tiny-backbone"

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

    def best_predictor(self) -> Predictor:
        """checkpoint-best as saved, freshly loaded from disk (loaded once; the run's own model keeps its weights)."""
        if self._best is None:
            _, _, featurizer, model = ckpt_io.load_scorer(self.run_dir / "checkpoint-best")
            self._best = self.predictor(featurizer, model.to(self.device))
        return self._best

    # -- the loop's parts ----------------------------------------------------------------------

    def next_batch(self) -> dict[str, torch.Tensor]:
        feats = [self.features[i] for i in self.batches.batch(self.state.micro + self.dist.rank)]
        self.state.micro += self.dist.world
        batch = {key: v.to(self.device) for key, v in
                 collate(feats, self.tokenizer.pad_token_id, self.pad_multiple).items()}
        batch["weights"] = self.task_weight.to(self.device)[batch["task"]]
        return batch

    def counts(self, batch: dict[str, torch.Tensor]) -> list[float]:
        return [len(batch["input_ids"])]

    def add_counts(self, counts: list[float]) -> None:
        self.state.examples_seen += int(counts[0])

    def speed(self) -> float:
        return self.state.examples_seen / max(self.state.train_seconds, 1e-9)

    def plan(self) -> list[str]:
        """What the run will do, said before it starts: where, on which rows, through which patterns, in which steps."""
        tr, cfg = self.cfg.train, self.cfg
        rows = [f"{t}: {len(d.train)} train, {len(d.val)} validation"
                + (f", {len(d.held_out)} held-out" if d.held_out else "") + " rows" for t, d in self.data.items()]
        per_step = tr.batch_size * tr.grad_accum * self.dist.world
        data = data_dir(cfg.data.dir)
        if cfg.model.path is None and data != DEMO_DIR:
            log.warning("model.path is not set: this run trains the tiny random model built for the demo, which "
                        "learns next to nothing on %s; pass model.path=<a pretrained model's folder>", data)
        backbone = (cfg.model.path if cfg.model.path is not None else
                    "a tiny random BERT built for the demo (model.path=null): for trying the commands only")
        return [f"run directory: {self.run_dir}", f"backbone: {backbone}", f"data: {data} (regime {cfg.data.regime}"
                + (f", FewCLUE splits from {cfg.data.fewclue_dir})" if cfg.data.regime == "fewshot" else ")"),
                f"method {self.method.name} ({self.method.summary}); "
                f"regime {cfg.data.regime}; {'; '.join(rows)}", *self.featurizer.describe(),
                f"plan: {self.total_steps} steps of {per_step} examples (batch {tr.batch_size} x accum {tr.grad_accum}"
                f" x {self.dist.world} process(es)), {len(self.batches)} batches per epoch, sampling {tr.sampling}, "
                f"{tr.batch_tasks}-task batches, evaluation every {tr.eval_every or self.total_steps} steps and at the end, "
                f"on {self.device} in {tr.precision}", f"objective: {self.objective.describe()}",
                *(line for a in self.algorithms for line in a.describe())]

    # -- evaluation, checkpoints, metrics ------------------------------------------------------

    def validate(self) -> dict[str, Any]:
        """The model as it is now, scored on every task's validation split."""
        with self.runlog.evaluating() as show:
            return self.predictor(progress=show).evaluate({t: d.val for t, d in self.data.items()})

    def evaluate(self) -> dict[str, Any]:
        """Score the validation split, keep the checkpoints, append to metrics.json. Algorithms add fields to the
        entry first, then wrap the scoring and saving (the weight average swaps itself in)."""
        st = self.state
        extra: dict[str, Any] = {}
        for algorithm in self.algorithms:
            extra.update(algorithm.before_evaluation(self))
        with self.evaluation_context():
            t0 = time.time()
            result = self.validate()
            entry = {"step": st.step, "epoch": round(st.micro / len(self.batches), 4),
                     "train_loss": sum(st.losses) / len(st.losses) if st.losses else None, **result,
                     "train_seconds": round(st.train_seconds, 2), "eval_seconds": round(time.time() - t0, 2),
                     "train_examples_per_s": round(st.examples_seen / max(st.train_seconds, 1e-9), 1), **extra}
            st.history.append(entry)
            st.losses = []
            self.runlog.evaluation(entry, st.history, self.featurizer.tasks)
            if st.best is None or result["score"] > st.best:
                st.best = result["score"]
                self._save("checkpoint-best", entry, with_state=False)
            if self.cfg.train.checkpoint_last != "none":
                self._save("checkpoint-last", entry, with_state=True)
            self._write_metrics()
        return entry

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
            state = self.train_state()
        if self.dist.is_main:
            def extra(tmp: Path) -> None:
                if state is not None:
                    write_train_state(tmp, *state)
                if name == "checkpoint-best":
                    (tmp / "README.md").write_text(self.model_card(metrics), encoding="utf-8")

            ckpt_io.save_checkpoint(self.run_dir / name, self.model, self.tokenizer, self.meta(metrics),
                                    OmegaConf.to_yaml(self.cfg, resolve=True), extra,
                                    plain_prompts=name != "checkpoint-last")
        self.dist.barrier()

    def model_card(self, metrics: dict[str, Any] | None, calibration: dict[str, Any] | None = None) -> str:
        """checkpoint-best/README.md: what the model is and how it scored, for whoever finds the folder."""
        cfg, tr = self.cfg, self.cfg.train
        command = (shlex.join(["python", "-m", f"pet_mtl.{Path(sys.argv[0]).stem}", *sys.argv[1:]])
                   if Path(sys.argv[0]).parent.name == "pet_mtl" else "(built in Python: pet_mtl.training.Trainer)")
        lines = [f"# pet_mtl {self.method.name} classifier: {', '.join(self.featurizer.tasks)}", "",
                 f"- backbone: `{cfg.model.path or 'a tiny random BERT built for the demo'}`",
                 f"- method: {self.method.name} ({self.method.summary})",
                 f"- data: `{data_dir(cfg.data.dir)}`, regime {cfg.data.regime}",
                 f"- training: step {self.state.step} of {self.total_steps}, batch {tr.batch_size} x {tr.grad_accum} "
                 f"x {self.dist.world}, lr {tr.lr:g}, seed {cfg.seed}, on {tr.device} in {tr.precision}",
                 f"- made by: `{command}`"]
        if self.patterns:
            lines += ["", "## Patterns", ""] + [f"- {t}: {', '.join(p.name for p in ps)}"
                                                 for t, ps in self.patterns.items() if ps]
        if metrics:
            lines += ["", f"## Validation macro-F1 (step {metrics['step']})", "",
                      "| task | argmax | calibrated |", "|---|---|---|"]
            for t, scores in metrics["tasks"].items():
                c = (calibration or {}).get(t)
                cal = "" if c is None else f"{calibrated_task_score(c):.4f}"
                lines.append(f"| {t} | {scores['macro_f1']:.4f} | {cal} |")
            cal = calibrated_score(calibration)
            lines.append(f"| mean | {metrics['score']:.4f} | {'' if cal is None else f'{cal:.4f}'} |")
            if calibration is None:
                lines += ["", "Calibrated: fitted at the end of training (train.calibrate), not yet."]
        lines += ["", "Use: `python -m pet_mtl.predict checkpoint=<this folder>` or "
                  "`pet_mtl.Classifier.from_pretrained(<this folder>).predict(task, texts)`.", ""]
        return "\n".join(lines)

    def resume(self) -> None:
        last = self.run_dir / "checkpoint-last"
        tensors, saved = self.read_checkpoint_last(last, "; run with hydra.run.dir=<the run to resume> (a run with "
                                                         "train.checkpoint_last=none keeps none)")
        ckpt_io.load_weights(self.model, last)
        self.restore_train_state(tensors, saved, last)
        log.info("resumed from %s at step %d", last, self.state.step)

    def save_interrupted(self) -> str:
        st, kept = self.state, self.cfg.train.checkpoint_last
        if kept == "full":
            with self.evaluation_context():
                self._save("checkpoint-last", st.history[-1] if st.history else None, with_state=True)
            if st.history:
                self._write_metrics()
            return f"checkpoint-last holds step {st.step}"
        last = st.history[-1]["step"] if st.history else None
        return (f"train.checkpoint_last={kept} keeps no resumable state"
                + (f"; checkpoint-best holds the best evaluation up to step {last}" if last else "; nothing was saved"))

    def resume_command(self) -> str:
        return resume_command("pet_mtl.train", "hydra.run.dir", self.run_dir)

    def best_entry(self) -> dict[str, Any]:
        return max(self.state.history, key=lambda e: e["score"])

    def _write_metrics(self, finished: bool = False, **extra: Any) -> None:
        """metrics.json, the run's source of truth (pet_mtl.report reads it): every evaluation, the best one,
        what the algorithms added at the end (checkpoint-best's held-out score, calibration), the wall time."""
        self.runlog.write_metrics({"method": self.method.name, "regime": self.cfg.data.regime, "seed": self.cfg.seed,
                                   "finished": finished, "history": self.state.history, "best": self.best_entry(),
                                   "held_out": None, "calibration": None, **extra,
                                   "wall_seconds": round(self.wall_seconds(), 2)})

    def finish(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        for algorithm in self.algorithms:
            extra.update(algorithm.on_fit_end(self))
        self._write_metrics(finished=True, **extra)
        if self.dist.is_main:  # the card again, now with the calibrated scores
            atomic_write_text(self.run_dir / "checkpoint-best" / "README.md",
                              self.model_card(self.best_entry(), extra.get("calibration")))
        self.runlog.close()
        st = self.state
        return {"best": self.best_entry(), "last": st.history[-1], "held_out": extra.get("held_out"),
                "calibration": extra.get("calibration"),
                "run_dir": str(self.run_dir), "checkpoint": str(self.run_dir / "checkpoint-best"),
                "is_main": self.dist.is_main}
