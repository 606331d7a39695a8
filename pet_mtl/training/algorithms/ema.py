"""An exponential moving average of the trained weights (train.ema): evaluation, checkpoints and predictions use it.

Averaging the last stretch of the trajectory is meant to smooth the noise of the last batches; with the linear decay
to zero it did not pay for pet at one epoch on the whole files (-0.3, benchmarks/RESULTS.md), so it is off by
default, for schedules where the last steps still move much. The average never feeds back into training: the optimizer steps the trained weights
as it would without it, so a run with and without `train.ema` follows the same trajectory (same seed), and the
difference of their scores is the averaging's alone.

A checkpoint holds what was evaluated (the averaged weights); `checkpoint-last`'s training state also holds the
trained weights, so a resumed run continues the trajectory, not the average.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from pet_mtl.training.plugins import Algorithm

log = logging.getLogger("pet_mtl")

#: the training state's tensors of the trained weights, under the parameter's name
TRAINED = "trained."


class WeightAverage:
    def __init__(self, model: nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"decay {decay}: expected a number in (0, 1)")
        self.decay = decay
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.average = [p.detach().clone() for p in self.params]
        self._trained: list[torch.Tensor] | None = None  # set while the average is in the model

    def rate(self, step: int) -> float:
        """The decay at optimizer step `step` (1-based): short early on, so the random start of a new head and the
        first steps' large moves leave the average quickly (TensorFlow's num_updates rule)."""
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, step: int) -> None:
        if self._trained is not None:
            raise RuntimeError("update() while the average is in the model")
        torch._foreach_lerp_(self.average, [p.detach() for p in self.params], 1.0 - self.rate(step))

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The averaged weights in the model for the block (evaluate, save), the trained ones back after it."""
        with torch.no_grad():
            self._trained = [p.detach().clone() for p in self.params]
            torch._foreach_copy_(self.params, self.average)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self.params, self._trained)
            self._trained = None

    def trained_tensors(self) -> dict[str, torch.Tensor]:
        """The trained weights, for the training state (inside `applied`, where the model holds the average)."""
        source = self._trained if self._trained is not None else [p.detach() for p in self.params]
        return {TRAINED + n: t for n, t in zip(self.names, source)}

    @torch.no_grad()
    def restore(self, tensors: dict[str, torch.Tensor]) -> None:
        """Resume: the model was loaded from a checkpoint (the average); the trained weights come from the state."""
        missing = [n for n in self.names if TRAINED + n not in tensors]
        if missing:
            raise KeyError(f"the training state has no trained weights for {missing[:3]} (was it saved with train.ema?)")
        torch._foreach_copy_(self.average, [p.detach() for p in self.params])
        torch._foreach_copy_(self.params, [tensors[TRAINED + n].to(p.device) for n, p in zip(self.names, self.params)])


class EMA(Algorithm):
    """train.ema as a plug-in: the average steps after every optimizer step, evaluations and checkpoints see it,
    and the last evaluation also scores the trained weights (metrics.json `without_ema`)."""

    name = "ema"

    def __init__(self, model: nn.Module, decay: float):
        self.average = WeightAverage(model, decay)

    def after_step(self, run) -> None:
        self.average.update(run.state.step + 1)

    def before_evaluation(self, run) -> dict:
        if run.state.step != run.total_steps:
            return {}
        r = run.validate()
        log.info("trained weights, without the average | mean macro-F1 %.4f", r["score"])
        return {"without_ema": {"score": r["score"],
                                "tasks": {t: {"macro_f1": v["macro_f1"]} for t, v in r["tasks"].items()}}}

    def evaluation_context(self, run):
        return self.average.applied()

    def describe(self) -> list[str]:
        return [f"weight average: decay {self.average.decay:g} (evaluation and checkpoints use the average)"]

    def state_dict(self):
        return self.average.trained_tensors(), {}

    def load_state_dict(self, tensors, state) -> None:
        self.average.restore(tensors)
