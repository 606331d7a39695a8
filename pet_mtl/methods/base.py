"""The method contract: what every way of sharing one model across tasks provides, and nothing more.

A method is two factories:
  featurizer(backbone, patterns, tasks, max_length, options) -> Featurizer   examples -> `Feature`s
  scorer(backbone, featurizer, options) -> Scorer                     collated batch -> [B, C] label scores
Both see the model only through the backbone contract (backbones/contract.py): its tokenizer, whether it takes token
type ids, vocabulary logits at chosen positions, a pooled state, its normalisation layers.
Everything else (data, sampling, the training loop, evaluation, checkpoints, prediction) is shared and calls only
these. Scores are logits over the most labels any task has (C); a task's missing labels score NEG, so one
cross-entropy (`label_loss`) trains every task in a mixed batch and an argmax over a task's own labels predicts.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from pet_mtl.backbones.contract import Backbone
from pet_mtl.data.readers import Example
from pet_mtl.methods.features import Feature
from pet_mtl.prompts import Pattern

NEG = -1e9  # score of labels a task does not have (multi-task batches pad the label axis)


@runtime_checkable
class Featurizer(Protocol):
    """Turns one task's examples into features; `Feature.example` indexes the examples list, and a method may give
    an example several features (one per pattern) whose scores inference averages."""

    tokenizer: Any
    tasks: list[str]
    max_length: int

    def encode(self, examples: Sequence[Example], with_labels: bool = True) -> list[Feature]: ...

    def describe(self) -> list[str]:
        """Lines a run logs at its start: what the model will see (patterns, slot lengths, label words' tokens)."""
        ...


@dataclass(frozen=True)
class MethodOptions:
    """Method settings that shape parameters or the input encoding, so a checkpoint must record them to rebuild its
    model and to feed it at prediction what it saw in training."""

    #: size of the task embedding that drives conditional LayerNorm (methods with cln)
    cln_dim: int = 32
    #: plain-text methods: a two-field task (OCNLI) is a tokenizer pair with token type ids 0/1, as BERT was
    #: pretrained on pairs; a checkpoint written before this option existed is read with False (what it saw)
    segment_ids: bool = True
    #: dropout on the [CLS] state before the task heads, on top of the encoder's own (0: as a plain classifier)
    head_dropout: float = 0.0
    #: initial weights of the task heads: bert | torch (pet_mtl.methods.heads.HEAD_INITS)
    head_init: str = "bert"
    #: the learned prompt tokens reparametrised through an encoder while they train (P-tuning): lstm | mlp | None
    prompt_encoder: str | None = None


class Scorer(nn.Module):
    """What every method's model is: a masked LM (`self.mlm`, saved with save_pretrained as a plain backbone) plus
    method-specific parameters (heads, task conditioning: saved beside it), mapping a collated batch to [B, C]
    label scores. The model is read through `self.backbone` (the contract), never reached into. `conditioning`
    (None, or a module with `.on(task)`, see cln.py) wraps every forward, so conditional LayerNorm combines with any
    output style."""

    max_labels: int

    def __init__(self, backbone: Backbone):
        super().__init__()
        self.mlm = backbone.model
        self.backbone = backbone  # not a module: the model is registered once, as mlm
        self.conditioning: nn.Module | None = None
        #: the LoRA adapters injected into mlm (pet_mtl/backbones/adapters.py), when any: a checkpoint then saves
        #: only them and the base they were trained on
        self.adapter: Any = None
        #: learned prompt tokens (methods/soft_prompts.py) when the patterns have soft(): saved with the method
        self.prompts: nn.Module | None = None

    def forward(self, input_ids, attention_mask, slot_positions, head, task, token_type_ids=None,
                prompt_positions=None, prompt_rows=None, **_) -> torch.Tensor:
        # token_type_ids reach `scores` only when the featurizer made them, so a scorer of one-segment inputs
        # need not know about them
        segments = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        prompts = (self.prompts.on(prompt_positions, prompt_rows)
                   if self.prompts is not None and prompt_positions is not None else nullcontext())
        with prompts, self.conditioning.on(task) if self.conditioning is not None else nullcontext():
            return self.scores(input_ids, attention_mask, slot_positions, head, task, **segments)

    def scores(self, input_ids, attention_mask, slot_positions, head, task, token_type_ids=None) -> torch.Tensor:
        raise NotImplementedError

    def extra_state(self) -> dict[str, torch.Tensor]:
        """The parameters that are not the masked LM's (they go to method.safetensors in a checkpoint)."""
        own = {id(t) for t in self.mlm.state_dict(keep_vars=True).values()}
        return {k: v for k, v in self.state_dict(keep_vars=True).items() if id(v) not in own}


class FeaturizerFactory(Protocol):
    def __call__(self, backbone: Backbone, patterns: Mapping[str, list[Pattern]], tasks: list[str],
                 max_length: int, options: MethodOptions) -> Featurizer: ...


class ScorerFactory(Protocol):
    def __call__(self, backbone: Backbone, featurizer: Featurizer, options: MethodOptions) -> Scorer: ...


@dataclass(frozen=True)
class Method:
    name: str
    summary: str
    featurizer: FeaturizerFactory
    scorer: ScorerFactory
    #: load and validate the run's pattern set (methods that read plain text skip it, so no pattern can block them)
    uses_patterns: bool
    #: some parameters get no gradient in some steps (heads of tasks absent from a batch, an unused MLM head):
    #: DistributedDataParallel must then look for them
    sparse_gradients: bool = False
    #: scores through the language model's vocabulary head (a folder without one is refused at loading)
    needs_mlm_head: bool = False
    #: the kinds of backbone it can use (masked, causal), the first the one it is made for
    backbone_kinds: tuple[str, ...] = ("masked",)
    #: the shipped pattern set (conf/patterns/<name>.yaml) it uses when the run names none (null: `default`)
    default_patterns: str | None = None

