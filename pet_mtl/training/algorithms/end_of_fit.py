"""What a classification run does with its best checkpoint once training ends: the held-out score (few-shot
regimes) and the calibration biases (train.calibrate). Both read checkpoint-best as saved, freshly loaded."""
from __future__ import annotations

import logging
from typing import Any

from pet_mtl.inference import calibration
from pet_mtl.training.plugins import Algorithm

log = logging.getLogger("pet_mtl")


class HeldOut(Algorithm):
    """Score checkpoint-best once on the regime's held-out set: model selection never sees it. The run's own model
    keeps the last weights."""

    name = "held_out"

    def on_fit_end(self, run) -> dict[str, Any]:
        result = run.best_predictor().evaluate({t: d.held_out for t, d in run.data.items()})
        log.info("held-out (checkpoint-best) | %s | mean macro-F1 %.4f",
                 " | ".join(f"{t} F1 {s['macro_f1']:.4f}" for t, s in result["tasks"].items()), result["score"])
        return {"held_out": {"step": run.best_entry()["step"], **result}}


class Calibrate(Algorithm):
    """Label biases for macro-F1, fitted on the validation split, saved with checkpoint-best (calibration.json)."""

    name = "calibrate"

    def on_fit_end(self, run) -> dict[str, Any]:
        fitted = calibration.fit_and_save(run.best_predictor(), {t: d.val for t, d in run.data.items()},
                                          run.run_dir / "checkpoint-best", run.dist.is_main)
        return {"calibration": fitted}


class EarlyStopping(Algorithm):
    """End the run once `patience` evaluations in a row have not beaten the best one (checkpoint-best is that one).
    Decided from the evaluation history alone, which resume restores, so it holds no state of its own."""

    name = "early_stopping"

    def __init__(self, patience: int):
        self.patience = patience
        self.stopped: dict[str, Any] | None = None

    def stop_training(self, run) -> str | None:
        history = run.state.history
        best = max(range(len(history)), key=lambda i: history[i]["score"])  # the first of equal bests
        if len(history) - 1 - best < self.patience:
            return None
        self.stopped = {"step": run.state.step, "best_step": history[best]["step"], "patience": self.patience}
        return (f"{self.patience} evaluation(s) without beating step {history[best]['step']}'s "
                f"{history[best]['score']:.4f} (train.patience={self.patience})")

    def on_fit_end(self, run) -> dict[str, Any]:
        return {"stopped_early": self.stopped}

    def describe(self) -> list[str]:
        return [f"early stopping: after {self.patience} evaluation(s) without a better mean macro-F1"]
