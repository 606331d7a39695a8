"""The registry of training algorithms: name -> factory(run) -> Algorithm, or None when the run has it off.

Built in, in event order: the held-out score and calibration (end of fit), early stopping, the weight average (train.ema), the
auxiliary masked-LM loss (train.mlm_weight). A factory is called once the run's model, data and tokenizer exist;
it reads `run.cfg` and may refuse the run (ConfigError) with the reason. Add one with `register_algorithm`.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pet_mtl.training.plugins import Algorithm

Factory = Callable[[Any], "Algorithm | None"]
ALGORITHMS: dict[str, Factory] = {}


def register_algorithm(name: str, factory: Factory) -> None:
    if name in ALGORITHMS and ALGORITHMS[name] is not factory:
        raise ValueError(f"algorithm {name!r} is registered already")
    ALGORITHMS[name] = factory


def _held_out(run):
    from pet_mtl.training.algorithms.end_of_fit import HeldOut

    return HeldOut() if all(d.held_out for d in run.data.values()) else None


def _calibrate(run):
    from pet_mtl.training.algorithms.end_of_fit import Calibrate

    return Calibrate() if run.cfg.train.calibrate else None


def _early_stopping(run):
    from pet_mtl.training.algorithms.end_of_fit import EarlyStopping

    return EarlyStopping(run.cfg.train.patience) if run.cfg.train.patience else None


def _ema(run):
    from pet_mtl.training.algorithms.ema import EMA

    return EMA(run.model, run.cfg.train.ema) if run.cfg.train.ema else None


def _aux_mlm(run):
    from pet_mtl.training.algorithms.aux_mlm import AuxiliaryMLM

    if not run.cfg.train.mlm_weight:
        return None
    return AuxiliaryMLM(run.cfg, run.data, run.tokenizer, run.model.mlm, run.dist.world)


register_algorithm("held_out", _held_out)
register_algorithm("calibrate", _calibrate)
register_algorithm("early_stopping", _early_stopping)
register_algorithm("ema", _ema)
register_algorithm("aux_mlm", _aux_mlm)


def build_algorithms(run: Any) -> list[Algorithm]:
    return [a for a in (factory(run) for factory in ALGORITHMS.values()) if a is not None]
