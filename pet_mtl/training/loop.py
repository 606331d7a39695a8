"""The one training loop: classification (training/trainer.py) and continued pretraining (pretraining/) both run it.

What the loop owns: gradient accumulation, clipping, the NaN guard, DistributedDataParallel (no gradient sync
until the last micro-batch of a step), the evaluation and save cadence, progress, and the resumable state
(optimizer moments, scheduler, every rank's RNG state, the run's counters, each plug-in's own state). What it
does not know: where batches come from, what is evaluated and how checkpoints are laid out (the subclass), and
what the loss is or which tricks run around it (an `Objective` and `Algorithm`s, training/plugins.py).

A subclass sets, in its __init__: cfg (whose `train` has the optimizer keys), dist, device, model, ddp, optimizer,
scheduler, objective, algorithms, state (a dataclass with step, train_seconds, wall_seconds, losses, history,
world), total_steps, runlog; and implements next_batch, counts, evaluate, save, plan and finish.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from pet_mtl.core.config import flatten
from pet_mtl.core.errors import CheckpointError, ConfigError, Interrupted, TrainingError
from pet_mtl.core.io import read_yaml
from pet_mtl.core.precision import autocast
from pet_mtl.core.validate import check_resume
from pet_mtl.training.state import load_train_state, optimizer_from_flat, train_state_tensors


@contextlib.contextmanager
def stop_requests() -> Iterator[list[int]]:
    """SIGINT (Ctrl-C) and SIGTERM during training are noted, not obeyed at once: the loop finishes its optimizer
    step, saves checkpoint-last there and exits. A second one stops at once (a checkpoint being written stays whole:
    it is swapped in atomically, so the previous one is then what resume reads)."""
    noted: list[int] = []
    if threading.current_thread() is not threading.main_thread():  # signals are the main thread's to handle
        yield noted
        return

    def note(signum, frame) -> None:
        if noted:
            raise KeyboardInterrupt
        noted.append(signum)
        logging.getLogger("pet_mtl").warning("%s: stopping after this step (again to stop at once)",
                                             signal.Signals(signum).name)

    previous = {s: signal.signal(s, note) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield noted
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class Loop:
    cfg: Any
    #: signals noted during the loop, and whether every rank saw one by the end of the last step
    _stop_signals: list[int] = []
    _stop_agreed: bool = False
    #: called once a resume has been accepted and restored (the entry point records the command line that did it)
    on_resumed: list = []
    objective: Any
    algorithms: list
    started: float

    # -- what a subclass provides --------------------------------------------------------------

    def next_batch(self) -> dict[str, torch.Tensor]:
        """This rank's next micro-batch, on the device, advancing the run's position in its data."""
        raise NotImplementedError

    def counts(self, batch: dict[str, torch.Tensor]) -> list[float]:
        """What a micro-batch adds to the run's counters (examples; tokens and masked tokens): summed over ranks."""
        raise NotImplementedError

    def add_counts(self, counts: list[float]) -> None:
        raise NotImplementedError

    def evaluate(self) -> None:
        raise NotImplementedError

    def save_due(self, done: bool) -> bool:
        """Whether to call `save` after this step (a classification run saves inside `evaluate`)."""
        return False

    def save(self, finished: bool) -> None:
        raise NotImplementedError

    def plan(self) -> list[str]:
        return []

    def before_first_step(self) -> None:
        """After resume and the plan, before the loop (pretraining scores the untrained model here)."""

    def finish(self) -> dict[str, Any]:
        raise NotImplementedError

    def resume(self) -> None:
        raise NotImplementedError

    def save_interrupted(self) -> str:
        """checkpoint-last at the current step, for a run the user stopped between two steps; returns what was
        saved, in words (a run that keeps no resumable checkpoint says which step its last one holds)."""
        raise NotImplementedError

    def resume_command(self) -> str:
        """The command that goes on from checkpoint-last."""
        raise NotImplementedError

    # -- the loop ------------------------------------------------------------------------------

    def train_step(self) -> tuple[float, list[float]]:
        """One optimizer step over grad_accum x world micro-batches: (mean loss, counters) summed over ranks."""
        tr = self.cfg.train
        loss_sum, counts = 0.0, None
        for k in range(tr.grad_accum):
            batch = self.next_batch()
            sync = self.ddp.no_sync() if hasattr(self.ddp, "no_sync") and k < tr.grad_accum - 1 else nullcontext()
            with sync:
                with autocast(self.device, tr.precision):
                    output = self.ddp(**self.objective.prepare(batch))
                loss = self.objective.loss(output, batch)
                for algorithm in self.algorithms:
                    loss = algorithm.after_loss(self, loss)
                if not torch.isfinite(loss):  # stop before the optimizer or a checkpoint takes it in
                    raise TrainingError(f"the {self.objective.name} became {loss.item()} at step {self.state.step + 1}"
                                        "; nothing of this step was saved. Lower train.lr, check train.task_weights, "
                                        "or try train.precision=fp32")
                (loss / tr.grad_accum).backward()
            loss_sum += loss.item() / tr.grad_accum
            c = self.counts(batch)
            counts = c if counts is None else [a + b for a, b in zip(counts, c)]
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), tr.max_grad_norm, foreach=True)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        for algorithm in self.algorithms:
            algorithm.after_step(self)
        # a stop request rides on the step's one all-reduce, so every rank stops after the same step
        summed = self.dist.sum([loss_sum, *counts, float(bool(self._stop_signals))])
        self._stop_agreed = summed[-1] > 0
        return summed[0] / self.dist.world, summed[1:-1]

    def evaluation_context(self) -> ExitStack:
        """Every algorithm's context around an evaluation and the checkpoints it writes."""
        stack = ExitStack()
        for algorithm in self.algorithms:
            stack.enter_context(algorithm.evaluation_context(self))
        return stack

    def fit(self) -> dict[str, Any]:
        held = getattr(self, "held", None)  # the run directory (core/rundir.py), released however the run ends
        try:
            return self._fit()
        finally:
            if held is not None:
                held.release()

    def _fit(self) -> dict[str, Any]:
        tr = self.cfg.train
        if tr.resume:
            self.resume()
            for callback in self.on_resumed:
                callback()
        st = self.state
        self.runlog.start(self.plan())
        self.runlog.log_params(flatten(OmegaConf.to_container(self.cfg, resolve=True)))
        self.before_first_step()
        self.model.train()
        with self.runlog.training(self.total_steps, st.step), stop_requests() as self._stop_signals:
            while st.step < self.total_steps:
                t0 = time.time()
                loss, counts = self.train_step()
                st.step += 1
                st.train_seconds += time.time() - t0
                self.add_counts(counts)
                st.losses.append(loss)
                self.runlog.step(st.step, self.total_steps, loss, self.scheduler.get_last_lr()[0], self.speed())
                done = st.step == self.total_steps
                evaluated = done or bool(tr.eval_every and st.step % tr.eval_every == 0)
                if evaluated:
                    self.evaluate()
                if self.save_due(done):
                    self.save(finished=done)
                reason = None if done or not evaluated else next(
                    (r for r in (a.stop_training(self) for a in self.algorithms) if r), None)
                if reason:
                    logging.getLogger("pet_mtl").info("stopping at step %d of %d: %s", st.step, self.total_steps,
                                                      reason)
                    break
                if self._stop_agreed and not done:
                    saved = self.save_interrupted()
                    raise Interrupted(f"interrupted at step {st.step} of {self.total_steps}: {saved}; go on with: "
                                      f"{self.resume_command()}")
        return self.finish()

    def speed(self) -> float:
        raise NotImplementedError

    def wall_seconds(self) -> float:
        return self.state.wall_seconds + time.time() - self.started

    # -- the resumable state -------------------------------------------------------------------

    def train_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """(tensors, JSON) of everything resume needs beside the weights. Every rank calls it (RNG states are
        gathered); inside `evaluation_context`, so an algorithm that swaps weights saves the trained ones."""
        tensors, opt_info = train_state_tensors(self.optimizer, self.dist.gather(torch.get_rng_state()))
        plugins = {}
        for algorithm in self.algorithms:
            own, doc = algorithm.state_dict()
            tensors.update({f"{algorithm.name}.{k}": v for k, v in own.items()})
            plugins[algorithm.name] = doc
        progress = dataclasses.replace(self.state, wall_seconds=self.wall_seconds())
        return tensors, {"optimizer": opt_info, "scheduler": self.scheduler.state_dict(),
                         "progress": dataclasses.asdict(progress), "algorithms": plugins}

    def read_checkpoint_last(self, last: Path, missing: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """checkpoint-last's training state, once its saved config has been checked against this run's (a resumed
        run must compute what the interrupted one would have; `train.resume_changes` names what may differ).
        `missing`: what to tell a user whose run has no checkpoint-last."""
        if not last.is_dir():
            raise ConfigError(f"train.resume=true but {last} does not exist{missing}")
        saved = read_yaml(last / "config.yaml", CheckpointError)
        if not isinstance(saved, dict):
            raise CheckpointError(last / "config.yaml", None, "not the run's saved config (expected a mapping)")
        check_resume(saved, OmegaConf.to_container(self.cfg, resolve=True), list(self.cfg.train.resume_changes),
                     str(last / "config.yaml"))
        return load_train_state(last)

    def restore_train_state(self, tensors: dict[str, torch.Tensor], saved: dict[str, Any], where: Any) -> None:
        """Resume from what `train_state` wrote, once the subclass has put the saved weights into the model."""
        progress = type(self.state)(**{f.name: saved["progress"][f.name] for f in dataclasses.fields(self.state)
                                       if f.name in saved["progress"]})
        if progress.world != self.dist.world:
            raise ConfigError(f"{where} was written by {progress.world} process(es); resume it with as many "
                              f"(this run has {self.dist.world})")
        optimizer_from_flat(self.optimizer, tensors, saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        plugins = saved.get("algorithms", {})
        for algorithm in self.algorithms:
            if algorithm.name not in plugins:
                raise ConfigError(f"{where} holds no state of {algorithm.name} (the run was saved without it)")
            prefix = f"{algorithm.name}."
            algorithm.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)},
                                      plugins[algorithm.name])
        torch.set_rng_state(tensors[f"rng.torch.{self.dist.rank}"])
        self.state = progress  # its wall_seconds are the earlier processes'; this one's are added on saving
