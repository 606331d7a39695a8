"""The classic multi-task baseline: shared encoder, one linear classifier per task on the [CLS] state (method=heads).

Input is the task's plain text, no pattern: the model learns which task a row is only through which head scores it.
A two-field task (OCNLI) is the tokenizer's sentence pair, `longest_first` truncation and, unless
model.segment_ids=false, token type ids 0/1: the encoding BERT was pretrained on, and the one a plain classifier
uses (without them OCNLI lost 2 points in the parity runs, benchmarks/RESULTS.md). Each row is scored by its own
task's head alone, so a row's loss reaches only that head (loss masking by task), and the heads of tasks absent
from a batch get no gradient at all.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from pet_mtl.backbones.contract import Backbone, has_token_types
from pet_mtl.core.errors import ConfigError
from pet_mtl.core.tasks import get_task
from pet_mtl.data.readers import Example
from pet_mtl.methods.base import NEG, Featurizer, Method, MethodOptions, Scorer
from pet_mtl.methods.features import Feature, clip_fields, second_segment
from pet_mtl.prompts import Pattern


class TextFeaturizer:
    """Examples to `Feature`s of their plain text, one feature per example; no slot (slot_len 0)."""

    def __init__(self, tokenizer, tasks: Sequence[str], max_length: int, segment_ids: bool = False,
                 token_types: bool | None = None):
        """`token_types`: whether the model embeds token types (the backbone contract's `takes_token_types`;
        None: whether the tokenizer makes them)."""
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.segment_ids = segment_ids and (has_token_types(tokenizer) if token_types is None else token_types)
        self.tasks = list(tasks)
        for t in self.tasks:
            if len(get_task(t).fields) > 2:
                raise ConfigError(f"a plain-text method encodes one text or a pair; task {t} has {get_task(t).fields}")

    def describe(self) -> list[str]:
        return [f"input: each task's plain text ({', '.join(f'{t}: ' + ' + '.join(get_task(t).fields) for t in self.tasks)}"
                f"), no pattern; truncated to {self.max_length} tokens; pairs "
                + ("with token type ids 0/1" if self.segment_ids else "without token type ids")]

    def encode(self, examples: Sequence[Example], with_labels: bool = True) -> list[Feature]:
        if not examples:
            return []
        task = get_task(examples[0].task)
        columns = [[clip_fields(ex, self.max_length).fields[f] for ex in examples] for f in task.fields]
        pair = self.segment_ids and len(columns) == 2
        enc = self.tokenizer(*columns, truncation="longest_first", max_length=self.max_length,
                             return_token_type_ids=pair)
        starts = [second_segment(types) for types in enc["token_type_ids"]] if pair else None
        t = self.tasks.index(task.name)
        return [Feature(tuple(ids), 0, 0, t, t, task.label_index(ex.label) if with_labels and ex.label is not None else -1, i,
                        second_segment=starts[i] if pair else None)
                for i, (ex, ids) in enumerate(zip(examples, enc["input_ids"]))]


def _bert_init(head: nn.Linear, config: Any) -> None:
    nn.init.normal_(head.weight, std=getattr(config, "initializer_range", 0.02))
    nn.init.zeros_(head.bias)


#: model.head_init -> how a new task head's weights start: `bert` as transformers initialises its classifiers;
#: `torch` leaves nn.Linear's own (Kaiming-uniform) initialisation, as a plain PyTorch classifier does
HEAD_INITS: dict[str, Callable[[nn.Linear, Any], None]] = {"bert": _bert_init, "torch": lambda head, config: None}


def check_head_init(name: str) -> None:
    if name not in HEAD_INITS:
        raise ConfigError(f"model.head_init={name!r}: expected one of {', '.join(HEAD_INITS)}")


class HeadsModel(Scorer):
    def __init__(self, backbone: Backbone, tasks: Sequence[str], head_dropout: float = 0.0, head_init: str = "bert"):
        super().__init__(backbone)
        check_head_init(head_init)
        self.tasks = list(tasks)
        config = backbone.config
        self.dropout = nn.Dropout(head_dropout)
        self.heads = nn.ModuleDict({t: nn.Linear(config.hidden_size, get_task(t).num_labels) for t in self.tasks})
        for head in self.heads.values():
            HEAD_INITS[head_init](head, config)
        self.max_labels = max(get_task(t).num_labels for t in self.tasks)

    def scores(self, input_ids, attention_mask, slot_positions, head, task, token_type_ids=None) -> torch.Tensor:
        hidden = self.backbone.hidden(input_ids, attention_mask, token_type_ids)
        cls = self.dropout(self.backbone.pool(hidden, attention_mask))
        out = torch.full((cls.size(0), self.max_labels), NEG, dtype=torch.float32, device=cls.device)
        for t in task.unique().tolist():
            rows = (task == t).nonzero().squeeze(1)
            logits = self.heads[self.tasks[t]](cls[rows]).float()
            out = out.index_put((rows[:, None], torch.arange(logits.size(1), device=cls.device)[None]), logits)
        return out


def text_featurizer(backbone: Backbone, patterns: Mapping[str, list[Pattern]], tasks: list[str],
                    max_length: int, options: MethodOptions) -> TextFeaturizer:
    return TextFeaturizer(backbone.tokenizer, tasks, max_length, options.segment_ids, backbone.takes_token_types)


def heads_scorer(backbone: Backbone, featurizer: Featurizer, options: MethodOptions) -> HeadsModel:
    return HeadsModel(backbone, featurizer.tasks, options.head_dropout, options.head_init)


HEADS = Method("heads", "shared encoder, one classifier per task, loss masked by task", text_featurizer,
               heads_scorer, uses_patterns=False, sparse_gradients=True, backbone_kinds=("masked", "causal"))
