"""The two kinds of plug-in the training loop runs, so that a training trick is one class, not a branch in the loop.

An `Objective` turns a batch into the model's input and the model's output into the loss (cross-entropy, R-Drop,
soft labels, the masked-LM loss); objectives compose by wrapping one another (R-Drop wraps whichever label loss the
run has). An `Algorithm` reacts to the loop's events (after the loss, after the step, around an evaluation, at the
end of fit) and keeps its own state, which checkpoint-last saves and resume restores under its name. As Composer's
algorithms and fairseq's criterions divide the work: the loop knows accumulation, clipping, the NaN guard, DDP,
the evaluation cadence, save and resume; everything else is a plug-in.

Adding one: write the class, then register a factory with `register_objective` (training/objectives.py) or
`register_algorithm` (training/algorithms/__init__.py). A factory reads the run's config and returns the plug-in,
or None when its setting is off; a plug-in that cannot work with the run (another plug-in, several processes)
raises ConfigError from its factory, with the reason.
"""
from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch


class Objective:
    """A batch in, the model's input out (`prepare`); the model's output and the batch in, the loss out (`loss`)."""

    #: what the loss is called in messages (the NaN guard names it)
    name = "training loss"

    def prepare(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return batch

    def loss(self, output: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__


class Algorithm:
    """Events of the loop, each a no-op unless a subclass overrides it. `run` is the loop itself (a `Loop`): its
    model, device, state and config are there to read."""

    #: the key of this algorithm's state in checkpoint-last (tensors are saved as `<name>.<key>`)
    name = "algorithm"

    def after_loss(self, run: Any, loss: torch.Tensor) -> torch.Tensor:
        """The loss of one micro-batch, before backward: an algorithm may add a term of its own."""
        return loss

    def after_step(self, run: Any) -> None:
        """After the optimizer step (`run.state.step` is the step just taken, minus one until the loop counts it)."""

    def before_evaluation(self, run: Any) -> dict[str, Any]:
        """Before an evaluation: fields for the history entry (e.g. a loss averaged since the last one)."""
        return {}

    def evaluation_context(self, run: Any) -> AbstractContextManager:
        """Around an evaluation and the checkpoints it writes (the weight average swaps itself in here)."""
        return nullcontext()

    def stop_training(self, run: Any) -> str | None:
        """After each evaluation (and its checkpoints): a reason to end the run there (early stopping), or None.
        Every rank must answer alike (decide from what every rank has: the evaluation history)."""
        return None

    def on_fit_end(self, run: Any) -> dict[str, Any]:
        """After the last step and evaluation: keys for metrics.json (e.g. calibration, the held-out score)."""
        return {}

    def describe(self) -> list[str]:
        """Lines for the run's plan."""
        return []

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """(tensors, JSON-able state) that resume needs; called on every rank, inside `evaluation_context`."""
        return {}, {}

    def load_state_dict(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        """Resume: what `state_dict` returned (tensors without the name prefix); the model's weights are loaded."""
