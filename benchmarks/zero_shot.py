"""PET before any training: the backbone's own MLM head scoring the verbalizers on a regime's report set (or, with
method=causal and a causal LM, its likelihood of each label word after the prompt).

`python benchmarks/zero_shot.py [hydra overrides]`, e.g. `data=fewclue model.path=../shared/models/zh-mini-mlm`,
or `data=fewclue method=causal model.path=../shared/models/zh-mini-clm [patterns=causal_noprefix]`.
It is the prior that method=pet starts from (method=heads starts from random classifiers): the reference point
for the few-shot comparison in RESULTS.md. Prints per-task macro-F1 on the held-out set (few-shot) or validation set, argmax and with contextual calibration.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout this script sits in, not an install

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from pet_mtl.backbones.loading import load_pretrained
from pet_mtl.cli import CONF_DIR
from pet_mtl.core.tasks import get_task
from pet_mtl.data.readers import Example
from pet_mtl.data.regimes import load_task_data
from pet_mtl.inference import calibration
from pet_mtl.inference.predictor import Predictor
from pet_mtl.methods import build_scorer, get_method
from pet_mtl.prompts import load_pattern_set
from pet_mtl.training.trainer import method_patterns

#: inputs that say nothing, whose label distribution contextual calibration flattens
CONTENT_FREE = ["N/A", "无"]


def main(overrides: list[str]) -> None:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    method = get_method(cfg.method if cfg.method in ("pet", "causal") else "pet")
    patterns = load_pattern_set(method_patterns(method, OmegaConf.to_container(cfg.patterns)), cfg.tasks,
                                list(cfg.pattern_roots), cfg.label_scoring)
    tokenizer, mlm = load_pretrained(cfg.model.path, kinds=method.backbone_kinds)
    featurizer, model = build_scorer(method, tokenizer, mlm, patterns, list(cfg.tasks), cfg.model.max_length)
    data = load_task_data(cfg)
    sets = {t: d.held_out if d.held_out else d.val for t, d in data.items()}
    predictor = Predictor(featurizer, model)
    result = predictor.evaluate(sets)
    # contextual calibration (Zhao et al. 2021): biases that make content-free inputs uniform over the labels
    contextual = {}
    for t, rows in sets.items():
        task = get_task(t)
        gold = torch.tensor([task.label_index(e.label) for e in rows])
        free = [Example(t, f"cf{i}", {f: text for f in task.fields}, None) for i, text in enumerate(CONTENT_FREE)]
        bias = calibration.contextual(predictor.scores(free))
        preds = (predictor.scores(rows).log_softmax(-1) + bias).argmax(-1)
        contextual[t] = calibration.macro_f1(preds, gold, task.num_labels)
    contextual["mean"] = sum(contextual.values()) / len(sets)
    print(json.dumps({"scored_on": "held-out" if all(d.held_out for d in data.values()) else "val",
                      "rows": {t: len(v) for t, v in sets.items()}, **result,
                      "contextual_macro_f1": contextual}, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
