"""Experiment trackers a run reports to (`train.report_to=[tensorboard, mlflow]`): the same scalars the log and
metrics.json hold (loss, learning rate, speed every `log_every` steps; per-task macro-F1 and accuracy at each
evaluation), written by rank 0. A registry, so another tracker is one class and one `register_tracker` line.

Each lives in the run directory unless told otherwise: TensorBoard event files in `<run>/tensorboard`, MLflow a
local file store in `<run>/mlruns` (or `MLFLOW_TRACKING_URI`), so nothing leaves the machine unless the user points
it elsewhere. Their packages are extras (`pip install "pet_mtl[tensorboard]"`, `"pet_mtl[mlflow]"`).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pet_mtl.core.errors import ConfigError


class Tracker:
    def log_params(self, params: Mapping[str, Any]) -> None:
        """The run's resolved config, flattened, once at the start."""

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class TensorBoard(Tracker):
    def __init__(self, run_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("train.report_to=[tensorboard] needs the tensorboard package: "
                              "pip install \"pet_mtl[tensorboard]\"") from None
        self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class MLflow(Tracker):
    """One MLflow run per pet_mtl run, named after its directory, in the experiment `pet_mtl`."""

    def __init__(self, run_dir: Path):
        try:
            import mlflow
        except ImportError:
            raise ConfigError("train.report_to=[mlflow] needs the mlflow package: pip install \"pet_mtl[mlflow]\"") from None
        self.mlflow = mlflow
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # a local folder, no server: the run's own
            mlflow.set_tracking_uri((run_dir / "mlruns").resolve().as_uri())
        mlflow.set_experiment("pet_mtl")
        self.run = mlflow.start_run(run_name=run_dir.name)

    def log_params(self, params: Mapping[str, Any]) -> None:
        # MLflow keeps values of at most a few hundred characters; a long list is cut, not refused
        self.mlflow.log_params({k: str(v)[:250] for k, v in params.items()})

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.mlflow.log_metrics({k.replace("/", "."): float(v) for k, v in metrics.items()}, step=step)

    def close(self) -> None:
        self.mlflow.end_run()


TRACKERS: dict[str, Callable[[Path], Tracker]] = {}


def register_tracker(name: str, factory: Callable[[Path], Tracker]) -> None:
    TRACKERS[name] = factory


register_tracker("tensorboard", TensorBoard)
register_tracker("mlflow", MLflow)


def build_trackers(names: list[str], run_dir: Path) -> list[Tracker]:
    unknown = [n for n in names if n not in TRACKERS]
    if unknown:
        raise ConfigError(f"train.report_to={names}: {', '.join(unknown)} is not a tracker; expected some of "
                          f"{', '.join(TRACKERS)}")
    return [TRACKERS[n](run_dir) for n in dict.fromkeys(names)]


def report_to(train_cfg) -> list[str]:
    """The trackers a training config names: `train.report_to`, plus tensorboard for the older
    `train.tensorboard=true`."""
    names = list(train_cfg.report_to)
    return names + ["tensorboard"] if train_cfg.tensorboard and "tensorboard" not in names else names
