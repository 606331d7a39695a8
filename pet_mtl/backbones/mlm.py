"""The masked-LM objective's forward: vocabulary logits at the masked positions only.

PET scores label words from vocabulary logits at a few slot positions, and the masked-LM objective needs them at
the ~15% masked positions only; projecting just those positions through the head (rather than every token) is
most of the saving on a small Chinese BERT, whose head (hidden x 21,128) is its costliest layer. Both go through
the backbone contract (contract.py), which knows how to narrow any masked LM's head and checks that it may.
"""
from __future__ import annotations

import torch

from pet_mtl.backbones.contract import Backbone


class MaskedLM(torch.nn.Module):
    """A masked LM whose forward returns (logits, labels) at the masked positions only, the same loss as the full
    forward's for a fraction of the head's work. A module of its own so that DDP wraps the whole computation."""

    def __init__(self, backbone: Backbone):
        super().__init__()
        self.mlm = backbone.model
        self.backbone = backbone  # not a module: the model is registered once, as mlm

    def forward(self, labels: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        where = labels != -100
        return self.backbone.logits_where(where, input_ids, attention_mask, token_type_ids), labels[where]


class CausalLM(torch.nn.Module):
    """A causal LM's next-token objective in MaskedLM's shape: (logits, targets) where position i predicts token
    i + 1 and that token has a label, projected through the head at those positions only."""

    def __init__(self, backbone: Backbone):
        super().__init__()
        self.mlm = backbone.model
        self.backbone = backbone

    def forward(self, labels: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        following = labels[:, 1:]
        where = torch.zeros_like(labels, dtype=torch.bool)
        where[:, :-1] = (following != -100) & attention_mask[:, 1:].bool()
        targets = following[where[:, :-1]]
        return self.backbone.logits_where(where, input_ids, attention_mask), targets


def language_model(backbone: Backbone) -> torch.nn.Module:
    """The backbone's own pretraining objective: masked-LM for a masked LM, next-token for a causal one."""
    return CausalLM(backbone) if backbone.kind == "causal" else MaskedLM(backbone)


def masked_lm_loss(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy over MaskedLM's masked positions, in fp32 whatever autocast produced the logits (a 21,128-way
    softmax in bf16 loses the small probabilities the loss is made of)."""
    return torch.nn.functional.cross_entropy(logits.float(), labels, reduction=reduction)
