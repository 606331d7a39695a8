"""The vocabulary head of a masked LM: the one place that knows how to reach it.

PET scores label words from vocabulary logits at a few slot positions, and the masked-LM objective needs them at
the ~15% masked positions only; projecting just those positions through the head (rather than every token) is
most of the saving on a small Chinese BERT, whose head (hidden x 21,128) is its costliest layer.
"""
from __future__ import annotations

import torch
from torch import nn


def split_mlm(model: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    """(encoder, vocabulary head) of a Hugging Face masked LM (BERT's bert/cls, RoBERTa's roberta/lm_head...), so
    the head can run on chosen positions only. Both the scorer and the masked-LM objective use this one accessor.

    Accepted only when the model is the plain shape: besides its base model exactly one top-level child, and that
    child holds the output embeddings. Anything else (a head split over two modules, as ELECTRA's generator; a
    head that takes the embeddings as an argument) gives None, and the caller runs the model's full forward,
    which is slower but never wrong.
    """
    base = getattr(model, "base_model", None)
    if base is None or base is model:
        return None
    others = [m for _, m in model.named_children() if m is not base]
    out = model.get_output_embeddings()
    if len(others) != 1 or out is None or not any(x is out for x in others[0].modules()):
        return None
    return base, others[0]


class MaskedLM(torch.nn.Module):
    """A masked LM whose forward returns (logits, labels) at the masked positions only. The vocabulary projection
    is most of a small model's compute (21,128 x hidden per token) and only the ~15% masked tokens have a loss:
    projecting just those gives the same loss for a fraction of the work. A module of its own so that DDP wraps the
    whole computation; models `split_mlm` does not understand are run whole and their logits selected."""

    def __init__(self, mlm: torch.nn.Module):
        super().__init__()
        self.mlm = mlm
        self._parts = split_mlm(mlm)  # a tuple: not registered twice as submodules

    def forward(self, labels: torch.Tensor, **inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        where = labels != -100
        if self._parts is None:
            return self.mlm(**inputs).logits[where], labels[where]
        encoder, head = self._parts
        return head(encoder(**inputs).last_hidden_state[where]), labels[where]


def masked_lm_loss(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy over MaskedLM's masked positions, in fp32 whatever autocast produced the logits (a 21,128-way
    softmax in bf16 loses the small probabilities the loss is made of)."""
    return torch.nn.functional.cross_entropy(logits.float(), labels, reduction=reduction)
