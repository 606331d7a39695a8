"""The registry of ways to share one model across tasks, chosen by `method=` in the config.

  method    featurizer        scorer                 task signal to the encoder
  pet       cloze (patterns)  MLM head at the slot   the pattern text
  heads     plain text        a classifier per task  none (each task's own head on [CLS])
  cln       plain text        a classifier per task  a task embedding through conditional LayerNorm
  pet_cln   cloze (patterns)  MLM head at the slot   the pattern text and conditional LayerNorm
  causal    prompt (patterns) a causal LM's likelihood the task prefix in the prompt
                              of each label word

The contract is in base.py: a `Method` is a featurizer factory (examples -> features) and a scorer factory
(batch -> [B, C] label scores). Adding a method:
  1. write pet_mtl/methods/<name>.py with a featurizer, a `Scorer` subclass and `NAME = Method("<name>", ...)`;
  2. add it to the `register(...)` line below.
Nothing else changes: `build_scorer` is the one place that wires patterns -> featurizer -> model, for training,
checkpoint loading and the benchmarks alike (tests/test_methods.py registers a toy method to prove it).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from pet_mtl.backbones.contract import Backbone
from pet_mtl.core.errors import ConfigError
from pet_mtl.methods.base import Featurizer, Method, MethodOptions, Scorer
from pet_mtl.methods.causal import CAUSAL
from pet_mtl.methods.cln import CLN, PET_CLN
from pet_mtl.methods.cloze import PET
from pet_mtl.methods.heads import HEADS
from pet_mtl.methods.soft_prompts import SoftPrompts
from pet_mtl.prompts import Pattern

METHODS: dict[str, Method] = {}


def register(*methods: Method) -> None:
    for m in methods:
        if m.name in METHODS and METHODS[m.name] is not m:
            raise ValueError(f"method {m.name!r} is registered already")
        METHODS[m.name] = m


register(PET, HEADS, CLN, PET_CLN, CAUSAL)


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"method={name!r}: expected one of {', '.join(METHODS)} (pet_mtl/methods)") from None


def build_scorer(method: str | Method, tokenizer: Any, mlm: nn.Module, patterns: Mapping[str, list[Pattern]],
                 tasks: list[str], max_length: int, options: MethodOptions = MethodOptions()
                 ) -> tuple[Featurizer, Scorer]:
    """(featurizer, model) of a method for these tasks; `patterns` may be empty for methods that use none."""
    m = get_method(method) if isinstance(method, str) else method
    if m.uses_patterns:
        missing = [t for t in tasks if not patterns.get(t)]
        if missing:
            raise ConfigError(f"method={m.name} needs a pattern for every task; none for {', '.join(missing)}")
    backbone = Backbone(mlm, tokenizer)
    if backbone.kind not in m.backbone_kinds:
        raise ConfigError(f"method={m.name} needs a {m.backbone_kinds[0]} LM; {type(mlm).__name__} is a "
                          f"{backbone.kind} LM" + ("; use method=causal" if backbone.kind == "causal" else ""))
    featurizer = m.featurizer(backbone, patterns, list(tasks), max_length, options)
    model = m.scorer(backbone, featurizer, options)
    table = getattr(featurizer, "prompts", None)
    if table is not None and table.rows:  # the patterns' soft() tokens: one table for all of them
        if backbone.kind == "causal" and backbone.candidate_pass != "packed":
            raise ConfigError(f"soft() tokens need a causal LM that takes a 4D attention mask (the candidates packed "
                              f"after the prompt); {type(mlm).__name__} scores through its key/value cache")
        model.prompts = SoftPrompts(table, mlm.get_input_embeddings(), tokenizer.all_special_ids,
                                    options.prompt_encoder)
    return featurizer, model


__all__ = ["METHODS", "Featurizer", "Method", "MethodOptions", "Scorer", "build_scorer", "get_method", "register"]
