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
