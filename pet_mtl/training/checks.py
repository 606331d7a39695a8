"""The cheap checks of a training config that reach other stages' registries, before any data or model is loaded."""
from __future__ import annotations

import collections

from omegaconf import DictConfig

from pet_mtl.core.config import TRAIN_RANGES, finite
from pet_mtl.core.errors import ConfigError
from pet_mtl.core.resources import data_dir
from pet_mtl.core.tasks import get_task, test_file
from pet_mtl.core.validate import apply_renames, check_ranges
from pet_mtl.data.readers import iter_examples
from pet_mtl.data.sampling import check_batching
from pet_mtl.methods.heads import check_head_init
from pet_mtl.methods.soft_prompts import check_prompt_encoder
from pet_mtl.prompts import SCORING_RULES


def check(cfg: DictConfig) -> None:
    """The cheap checks of a training config, before any data or model is loaded (deprecated keys renamed first)."""
    apply_renames(cfg)
    check_ranges(cfg, TRAIN_RANGES)

    check_head_init(cfg.model.head_init)
    check_batching(cfg.train.sampling, cfg.train.batch_tasks)
    check_prompt_encoder(cfg.model.prompt_encoder)
    if cfg.train.train_only not in (None, "prompts"):
        raise ConfigError(f"train.train_only={cfg.train.train_only!r}: expected prompts (train only the patterns' "
                          "soft() tokens) or null")
    if cfg.train.checkpoint_last not in ("full", "weights", "none"):
        raise ConfigError(f"train.checkpoint_last={cfg.train.checkpoint_last!r}: expected full, weights or none")
    if cfg.train.resume and cfg.train.checkpoint_last != "full":
        raise ConfigError(f"train.resume=true needs train.checkpoint_last=full (the run keeps "
                          f"{cfg.train.checkpoint_last!r}: no training state to resume from)")

    if cfg.label_scoring not in SCORING_RULES:
        raise ConfigError(f"label_scoring={cfg.label_scoring!r}: expected one of {', '.join(SCORING_RULES)}")
    if not cfg.tasks or len(set(cfg.tasks)) != len(cfg.tasks):
        raise ConfigError(f"tasks={list(cfg.tasks)}: expected one or more distinct task names")
    for t in [*cfg.tasks, *cfg.train.task_weights]:
        get_task(t)
    weights = {t: cfg.train.task_weights.get(t, 1.0) for t in cfg.tasks}
    if not all(finite(w) and w >= 0 for w in weights.values()) or not any(weights.values()):
        raise ConfigError(f"train.task_weights={weights}: expected finite weights >= 0, not all 0")
    for split in cfg.train.predict_splits:
        for t in cfg.tasks:
            path = test_file(data_dir(cfg.data.dir), t, split)
            if not path.is_file():
                raise ConfigError(f"train.predict_splits has {split!r} but {path} does not exist; "
                                  "set train.predict_splits=[] to skip prediction")
            # every row read now (a cheap pass), so a broken test file stops the run before training, not after
            collections.deque(iter_examples(path, get_task(t), False), maxlen=0)
