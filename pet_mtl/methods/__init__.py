"""The registry of ways to share one model across tasks, chosen by `method=` in the config.

A method is an output style (how a batch becomes label scores) plus, optionally, conditional LayerNorm:

  method    output   task signal to the encoder
  pet       cloze    the pattern text (the MLM head fills the slot with a label word)
  heads     heads    none (each task's own classifier on [CLS])
  cln       heads    a task embedding through conditional LayerNorm
  pet_cln   cloze    the pattern text and conditional LayerNorm

Everything else (data, sampling, loop, evaluation, checkpoints, prediction) is shared. Adding a method means
adding an entry to METHODS (and, for a new output style, an entry to OUTPUTS).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import nn

from ..errors import ConfigError
from ..features import ClozeEncoder
from ..model import ClozeModel, Scorer
from ..patterns import Pattern
from .cln import TaskLayerNorm
from .heads import HeadsModel, TextEncoder


@dataclass(frozen=True)
class Output:
    """How examples become features and features become label scores."""

    uses_patterns: bool
    encoder: Callable[..., object]  # (tokenizer, patterns by task, tasks, max_length) -> encoder
    model: Callable[..., Scorer]  # (mlm, encoder) -> Scorer


OUTPUTS: dict[str, Output] = {
    "cloze": Output(True, lambda tok, patterns, tasks, max_length: ClozeEncoder(tok, patterns, max_length),
                    lambda mlm, enc: ClozeModel(mlm, *enc.label_tensors())),
    "heads": Output(False, lambda tok, patterns, tasks, max_length: TextEncoder(tok, tasks, max_length),
                    lambda mlm, enc: HeadsModel(mlm, enc.tasks)),
}


@dataclass(frozen=True)
class Method:
    name: str
    output: str
    cln: bool
    summary: str

    @property
    def uses_patterns(self) -> bool:
        return OUTPUTS[self.output].uses_patterns

    def encoder(self, tokenizer, patterns: dict[str, list[Pattern]], tasks: Sequence[str], max_length: int):
        return OUTPUTS[self.output].encoder(tokenizer, patterns, list(tasks), max_length)

    def model(self, mlm: nn.Module, encoder, cln_dim: int) -> Scorer:
        model = OUTPUTS[self.output].model(mlm, encoder)
        if self.cln:
            model.conditioning = TaskLayerNorm(mlm.base_model, len(encoder.tasks), cln_dim)
        return model


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("pet", "cloze", False, "pattern cloze answered by the MLM head"),
        Method("heads", "heads", False, "shared encoder, one classifier per task, loss masked by task"),
        Method("cln", "heads", True, "per-task heads plus conditional LayerNorm from a task embedding"),
        Method("pet_cln", "cloze", True, "pattern cloze plus conditional LayerNorm"),
    )
}


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"method={name!r}: expected one of {', '.join(METHODS)} (pet_mtl/methods)") from None
