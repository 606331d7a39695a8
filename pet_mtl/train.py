"""`python -m pet_mtl.train [overrides]`: train one masked LM on all tasks, keep the best checkpoint.

With no overrides: a tiny random BERT on the demo data in examples/demo, then a submission for its test A.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from pet_mtl.cli import (
    CONF_DIR,
    check_training_command_line,
    friendly_errors,
    record_resume,
    refuse_finished_run_dir,
    resumed_argv,
)

log = logging.getLogger("pet_mtl")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
@friendly_errors
def main(cfg: DictConfig) -> float:
    from pet_mtl.core.resources import data_dir
    from pet_mtl.inference.submission import write_submission
    from pet_mtl.metrics import calibrated_score, calibrated_task_score
    from pet_mtl.training.trainer import Trainer

    trainer = Trainer(cfg, Path(HydraConfig.get().runtime.output_dir))
    record_resume(trainer, trainer.run_dir)
    summary = trainer.fit()
    if not summary["is_main"]:  # under torchrun, rank 0 reports and predicts
        return summary["best"]["score"]
    run_dir = Path(summary["run_dir"])
    best = summary["best"]
    print(f"run directory:   {run_dir}")
    print(f"best checkpoint: {summary['checkpoint']} (step {best['step']})")
    print("validation:      " + ", ".join(f"{t} macro-F1 {s['macro_f1']:.4f}" for t, s in best["tasks"].items())
          + f"; mean {best['score']:.4f}")
    calibrated = calibrated_score(summary["calibration"])
    if calibrated is not None:
        print("calibrated:      " + ", ".join(f"{t} macro-F1 {calibrated_task_score(r):.4f}"
                                              for t, r in summary["calibration"].items())
              + f"; mean {calibrated:.4f} (predict's decisions: the biases of checkpoint-best/calibration.json, "
              "2-fold cross-fitted on the validation split)")
    if summary["held_out"] is not None:
        held = summary["held_out"]
        print("held-out:        " + ", ".join(f"{t} macro-F1 {s['macro_f1']:.4f}" for t, s in held["tasks"].items())
              + f"; mean {held['score']:.4f} (checkpoint-best on the regime's held-out set)")
    for split in cfg.train.predict_splits:
        zip_path = write_submission(summary["checkpoint"], data_dir(cfg.data.dir), split, run_dir / f"submission-{split}",
                                    cfg.train.eval_batch_size, cfg.train.precision, cfg.train.device)
        print(f"submission ({split}): {zip_path}")
    return best["score"]


if __name__ == "__main__":
    sys.argv[1:] = resumed_argv(sys.argv[1:], "hydra.run.dir")
    check_training_command_line(sys.argv[1:])
    refuse_finished_run_dir(sys.argv[1:])
    main()
