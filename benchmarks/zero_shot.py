"""PET before any training: the backbone's own MLM head scoring the verbalizers on a regime's report set.

`python benchmarks/zero_shot.py [hydra overrides]`, e.g. `data=fewclue model.path=../shared/models/zh-mini-mlm`.
It is the prior that method=pet starts from (method=heads starts from random classifiers): the reference point
for the few-shot comparison in RESULTS.md. Prints per-task macro-F1 on the test set (few-shot) or validation set.
"""
from __future__ import annotations

import json
import sys

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from pet_mtl.backbone import load_pretrained
from pet_mtl.cli import CONF_DIR
from pet_mtl.engine import evaluate
from pet_mtl.methods import get_method
from pet_mtl.patterns import PATTERNS_ROOT, load_pattern_set
from pet_mtl.regimes import load_task_data


def main(overrides: list[str]) -> None:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    patterns = load_pattern_set(OmegaConf.to_container(cfg.patterns), cfg.tasks, cfg.pattern_root or PATTERNS_ROOT)
    tokenizer, mlm = load_pretrained(cfg.model.path)
    method = get_method("pet")
    encoder = method.encoder(tokenizer, patterns, cfg.tasks, cfg.model.max_length)
    model = method.model(mlm, encoder, 0)
    data = load_task_data(cfg)
    sets = {t: d.test if d.test else d.val for t, d in data.items()}
    result = evaluate(model, encoder, sets, 128, "fp32", torch.device("cpu"), 1)
    print(json.dumps({"scored_on": "test" if all(d.test for d in data.values()) else "val",
                      "rows": {t: len(v) for t, v in sets.items()}, **result}, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
