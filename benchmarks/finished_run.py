"""A finished run's rows, rebuilt from its own `.hydra/config.yaml`, and its checkpoint-best's scores of them.

The benchmark scripts that re-score finished runs (calibration.py, ensemble_gain.py, unlabelled_table.py) need the
exact rows the run was selected on (validation) or reported on (the few-shot held-out set); reading them back from
the run's config, rather than from the script's own flags, is what makes their numbers comparable to metrics.json.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout this script sits in

import torch  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from pet_mtl.core.tasks import get_task
from pet_mtl.data.regimes import load_task_data
from pet_mtl.inference.checkpoint import load_scorer
from pet_mtl.inference.predictor import Predictor


def config(run: Path) -> DictConfig:
    return OmegaConf.load(run / ".hydra" / "config.yaml")


def rows(run: Path, which: str = "val") -> dict[str, list]:
    """The run's rows per task: `val` (its validation split) or `held_out` (the few-shot regime's report set)."""
    data = load_task_data(config(run))
    picked = {t: getattr(d, which) for t, d in data.items()}
    if not all(picked.values()):
        raise SystemExit(f"{run}: its regime has no {which} rows")
    return picked


def gold(examples: dict[str, list]) -> dict[str, torch.Tensor]:
    return {t: torch.tensor([get_task(t).label_index(e.label) for e in ex]) for t, ex in examples.items()}


def predictor(run: Path) -> Predictor:
    """checkpoint-best as saved (no calibration biases applied: callers compare rules on the plain scores)."""
    _, _, featurizer, model = load_scorer(run / "checkpoint-best")
    return Predictor(featurizer, model.eval())


def log_probs(run: Path, examples: dict[str, list]) -> dict[str, torch.Tensor]:
    p = predictor(run)
    return {t: p.scores(ex).float().log_softmax(-1) for t, ex in examples.items()}
