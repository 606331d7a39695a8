"""PET's output style: one masked LM answers every task through its own MLM head (method=pet).

Label score = joint log-probability of the label's (padded) verbalizer tokens at the slot positions: the sum
over slot positions of log-softmax over the full vocabulary. The encoder runs on the whole sequence, but the
MLM head (transform + vocabulary projection) runs only on the slot positions: for a 64-token TNEWS title with a
2-token slot that is 32x less head work, and the head is the costliest layer of a small Chinese BERT
(256 x 21,128). The result is identical to gathering from a full forward (tests/test_scoring.py is the oracle).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..features import ClozeFeaturizer
from ..patterns import Pattern
from .base import NEG, Featurizer, Method, MethodOptions, Scorer


def mlm_head(mlm: nn.Module) -> nn.Module | None:
    """The child module that maps hidden states to vocabulary logits (BERT `cls`, RoBERTa `lm_head`, ...).

    Found generically as the top-level child, other than the encoder, that contains the output embeddings;
    None when a model's head cannot be applied on its own (then the scorer falls back to the full forward).
    """
    out = mlm.get_output_embeddings()
    base = getattr(mlm, "base_model_prefix", None)
    heads = [m for name, m in mlm.named_children() if name != base and any(x is out for x in m.modules())]
    return heads[0] if len(heads) == 1 else None


class ClozeModel(Scorer):
    def __init__(self, mlm: nn.Module, label_ids: torch.Tensor, label_mask: torch.Tensor, slot_mask: torch.Tensor):
        super().__init__(mlm)
        self.head = mlm_head(mlm)
        self.max_labels = label_ids.size(1)
        self.register_buffer("label_ids", label_ids, persistent=False)
        self.register_buffer("label_mask", label_mask, persistent=False)
        self.register_buffer("slot_mask", slot_mask, persistent=False)

    def slot_logits(self, input_ids, attention_mask, slot_positions) -> torch.Tensor:
        """[B, S, V] vocabulary logits at the slot positions."""
        if self.head is None:
            logits = self.mlm(input_ids=input_ids, attention_mask=attention_mask).logits
            return logits.gather(1, slot_positions[..., None].expand(-1, -1, logits.size(-1)))
        hidden = self.mlm.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        at_slots = hidden.gather(1, slot_positions[..., None].expand(-1, -1, hidden.size(-1)))
        return self.head(at_slots)

    def scores(self, input_ids, attention_mask, slot_positions, pattern, task) -> torch.Tensor:
        """[B, C] label scores; labels a pattern's task lacks score NEG."""
        logp = self.slot_logits(input_ids, attention_mask, slot_positions).float().log_softmax(-1)  # [B, S, V]
        S = logp.size(1)
        cand = self.label_ids[pattern][:, :, :S]  # [B, C, S]
        per_pos = logp.gather(2, cand.transpose(1, 2))  # [B, S, C]
        scores = torch.where(self.slot_mask[pattern][:, :S, None], per_pos, 0.0).sum(1)
        return scores.masked_fill(~self.label_mask[pattern], NEG)


def cloze_featurizer(tokenizer: Any, patterns: Mapping[str, list[Pattern]], tasks: list[str],
                     max_length: int) -> ClozeFeaturizer:
    return ClozeFeaturizer(tokenizer, {t: patterns[t] for t in tasks}, max_length)


def cloze_scorer(mlm: nn.Module, featurizer: Featurizer, options: MethodOptions) -> ClozeModel:
    assert isinstance(featurizer, ClozeFeaturizer), "the cloze scorer reads the cloze featurizer's label words"
    return ClozeModel(mlm, *featurizer.label_tensors())


PET = Method("pet", "pattern cloze answered by the MLM head", cloze_featurizer, cloze_scorer, uses_patterns=True)
