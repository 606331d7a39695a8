"""Checks of a config against its own schema: deprecated keys, value ranges, what a resume may change.

Cross-module checks (a method name, a sampling rule) live with their registries; these read the config alone.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from omegaconf import DictConfig, ListConfig, OmegaConf

from pet_mtl.core.config import RENAMED, Config, flatten
from pet_mtl.core.errors import ConfigError

log = logging.getLogger("pet_mtl")

def apply_renames(cfg: DictConfig) -> None:
    """Move values given under a deprecated key to its new name (in place), warning once per key."""
    for old, new in RENAMED.items():
        value = OmegaConf.select(cfg, old)
        if value is None:
            continue
        default = OmegaConf.select(OmegaConf.structured(Config), new)
        if isinstance(default, (list, ListConfig)) and not isinstance(value, (list, ListConfig)):
            value = [value]  # one folder becomes a list of one
        current = OmegaConf.select(cfg, new)
        if current != default and current != value:
            raise ConfigError(f"{old}={value} (deprecated) and {new}={current} disagree; give only {new}")
        log.warning("%s is deprecated and will be removed in the next release; use %s=%s", old, new, value)
        OmegaConf.update(cfg, new, value)
        OmegaConf.update(cfg, old, None)


def check_ranges(cfg: DictConfig, ranges: dict[str, tuple[Callable[[Any], bool], str]]) -> None:
    for key, (ok, expected) in ranges.items():
        value = OmegaConf.select(cfg, key)
        if not ok(value):
            raise ConfigError(f"{key}={value}: expected {expected}")


#: keys that change how a run is watched or where it runs, not what it computes
RESUME_NEUTRAL = {"train.resume", "train.resume_changes", "train.overwrite", "train.progress", "train.log_every", "train.num_threads",
                  "train.predict_splits", "train.eval_batch_size", "train.tensorboard",
                  "train.report_to"}


#: what a resumed run may change when train.resume_changes names it: how the rest of the run trains (length,
#: schedule, evaluation); the model, the method, its patterns and the data are the saved weights' and position's
RESUMABLE_CHANGES = ("train.",)


def check_resume(saved: dict[str, Any], current: dict[str, Any], allowed: list[str], where: str) -> None:
    """Refuse to resume a run (its config saved at `where`) with a config that would compute something else: every
    key that differs must be one that changes nothing (RESUME_NEUTRAL) or one the user allowed."""
    was, now = flatten(saved), flatten(current)
    differ = [k for k in sorted(set(was) | set(now)) if was.get(k, "<absent>") != now.get(k, "<absent>")
              and k not in RESUME_NEUTRAL]
    fixed = [k for k in differ if not k.startswith(RESUMABLE_CHANGES)]
    changed = [k for k in differ if not any(k == x or k.startswith(f"{x}.") for x in allowed)]
    if fixed:  # the saved weights and data position would not fit them: never offered, never allowed
        raise ConfigError(f"train.resume=true, but this config differs from the run's ({where}) in "
                          + ", ".join(f"{k}: {was.get(k)} -> {now.get(k)}" for k in fixed)
                          + "; these decide the model or its data and cannot change on resume: give only the run "
                          "directory and train.resume=true (the run's own overrides are read from it), or start a new "
                          "run")
    if changed:
        raise ConfigError(f"train.resume=true, but this config differs from the run's ({where}) in "
                          + ", ".join(f"{k}: {was.get(k)} -> {now.get(k)}" for k in changed)
                          + f"; resume with the run's values, or allow them: train.resume_changes=[{','.join(changed)}]")
