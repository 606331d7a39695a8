"""What a training run tells its user while it runs: the start summary, the progress bar, loss lines, evaluations,
metrics.json, pictures (see plots.py; redrawn at most every PLOT_EVERY_S seconds, and at the end) and
(optionally) TensorBoard. Only rank 0 of a torchrun job speaks.

Honest progress: the bar counts optimizer steps and its ETA leaves evaluation time out (evaluations get their own
bar); its loss, like the log lines, is the mean over the last `train.log_every` steps, and the loss lines go to
train.log whether or not the bar is shown.
"""
from __future__ import annotations

import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pet_mtl.core.console import console_is_terminal
from pet_mtl.core.io import atomic_write_text
from pet_mtl.core.tasks import get_task
from pet_mtl.training import plots
from pet_mtl.training.trackers import build_trackers

log = logging.getLogger("pet_mtl")
#: pictures are redrawn at an evaluation at most this often (they take about a second), and always at the end
PLOT_EVERY_S = 60.0


class RunLog:
    def __init__(self, run_dir: Path, is_main: bool, progress: bool, log_every: int, report_to: Sequence[str] = (),
                 name: str = "train", unit: str = "ex/s", plots: bool = True):
        self.run_dir = run_dir
        self.plots = plots
        self.name, self.unit = name, unit  # the bar's label; what the speed counts (examples, tokens)
        self.is_main = is_main
        self.progress = progress and is_main and console_is_terminal()
        self.log_every = log_every
        self.window: deque[float] = deque(maxlen=max(1, log_every))
        self.bar = None
        self._last: tuple | None = None  # the latest evaluation, for the pictures
        self._plotted = time.time()
        self.trackers = build_trackers(list(report_to), run_dir) if is_main else []

    def log_params(self, params: Mapping[str, Any]) -> None:
        for tracker in self.trackers:
            tracker.log_params(params)

    def _track(self, metrics: Mapping[str, float], step: int) -> None:
        for tracker in self.trackers:
            tracker.log_metrics(metrics, step)

    def start(self, lines: Sequence[str]) -> None:
        for line in lines:
            log.info("%s", line)

    @contextlib.contextmanager
    def training(self, total: int, done: int) -> Iterator[None]:
        """The progress bar for the loop; the console's log lines are written above it (the root logger's console
        handler, where Hydra puts it, routed through tqdm) so each line shows once and the bar stays whole."""
        if not self.progress:
            yield
            return
        from tqdm.auto import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        with logging_redirect_tqdm(loggers=[logging.getLogger()]):
            self.bar = tqdm(total=total, initial=done, desc=self.name, dynamic_ncols=True)
            try:
                yield
            finally:
                self.bar.close()
                self.bar = None

    def step(self, step: int, total: int, loss: float, lr: float, speed: float) -> None:
        self.window.append(loss)
        mean = sum(self.window) / len(self.window)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix({"loss": f"{mean:.4f}", self.unit: f"{speed:.0f}"})
        if self.log_every and step % self.log_every == 0 and self.is_main:
            log.info("step %d/%d loss %.4f (mean of the last %d steps) lr %.2e %.0f %s", step, total, mean,
                     len(self.window), lr, speed, self.unit)
            self._track({"train/loss": mean, "train/lr": lr, f"train/{self.unit.replace('/', '_per_')}": speed}, step)

    @contextlib.contextmanager
    def evaluating(self) -> Iterator[bool]:
        """Around an evaluation: the training bar's clock stops (its ETA counts training only); yields whether the
        evaluation should show its own bar."""
        t0 = time.time()
        try:
            yield self.progress
        finally:
            if self.bar is not None:
                paused = time.time() - t0
                self.bar.start_t += paused
                self.bar.last_print_t += paused

    def evaluation(self, entry: Mapping[str, Any], history: Sequence[Mapping[str, Any]], tasks: Sequence[str]) -> None:
        log.info("step %d | %s | mean macro-F1 %.4f", entry["step"], " | ".join(
            f"{t} F1 {s['macro_f1']:.4f} acc {s['accuracy']:.4f}" for t, s in entry["tasks"].items()), entry["score"])
        for t, s in entry["tasks"].items():
            never = [code for code, c in s.get("per_class", {}).items() if c["support"] and not c["recall"]]
            if never:
                names = get_task(t).label_names
                log.info("  %s: never right on %s (F1 0)", t,
                         ", ".join(c if names.get(c, c) == c else f"{c} {names[c]}" for c in never))
        if not self.is_main:
            return
        self._last = (entry, history, tasks)
        if self.plots and time.time() - self._plotted >= PLOT_EVERY_S:
            self._plot()
        self._track({**{f"val/{t}/{k}": s[k] for t, s in entry["tasks"].items() for k in ("macro_f1", "accuracy")},
                     "val/score": entry["score"]}, entry["step"])

    def _plot(self) -> None:
        entry, history, tasks = self._last
        plots.learning_curve(history, self.run_dir / "learning_curve.png")
        for t in tasks:
            plots.confusion_matrix(t, entry["tasks"][t], self.run_dir / f"confusion_{t}.png", get_task(t).label_names)
        self._plotted = time.time()

    def write_metrics(self, doc: Mapping[str, Any]) -> None:
        """metrics.json, the run's source of truth (pet_mtl.report reads it)."""
        if self.is_main:
            atomic_write_text(self.run_dir / "metrics.json", json.dumps(doc, indent=1))

    def close(self) -> None:
        """At the end of the run: the pictures of its last evaluation, whatever PLOT_EVERY_S skipped."""
        if self.is_main and self.plots and self._last is not None:
            self._plot()
        for tracker in self.trackers:
            tracker.close()
