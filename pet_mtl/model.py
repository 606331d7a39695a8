"""The PET scorer: one masked LM answers every task through its own MLM head.

Label score = joint log-probability of the label's (padded) verbalizer tokens at the slot positions: the sum
over slot positions of log-softmax over the full vocabulary. The encoder runs on the whole sequence, but the
MLM head (transform + vocabulary projection) runs only on the slot positions: for a 64-token TNEWS title with a
2-token slot that is 32x less head work, and the head is the costliest layer of a small Chinese BERT
(256 x 21,128). The result is identical to gathering from a full forward (tests/test_scoring.py is the oracle).
"""
from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

NEG = -1e9  # score of labels a task does not have (multi-task batches pad the label axis)


def mlm_head(mlm: nn.Module) -> nn.Module | None:
    """The child module that maps hidden states to vocabulary logits (BERT `cls`, RoBERTa `lm_head`, ...).

    Found generically as the top-level child, other than the encoder, that contains the output embeddings;
    None when a model's head cannot be applied on its own (then the scorer falls back to the full forward).
    """
    out = mlm.get_output_embeddings()
    base = getattr(mlm, "base_model_prefix", None)
    heads = [m for name, m in mlm.named_children() if name != base and any(x is out for x in m.modules())]
    return heads[0] if len(heads) == 1 else None


class Scorer(nn.Module):
    """What every method's model is: a masked LM (`self.mlm`, saved with save_pretrained) plus method-specific
    parameters (heads, task conditioning), mapping a collated batch to [B, C] label scores, C = the most labels
    any task has; a task's missing labels score NEG, so one cross-entropy serves every task in a mixed batch.

    `conditioning` (None, or a module with `.on(task)`, see methods/cln.py) is applied around the forward, so
    conditional LayerNorm combines with any output style.
    """

    max_labels: int

    def __init__(self, mlm: nn.Module):
        super().__init__()
        self.mlm = mlm
        self.conditioning: nn.Module | None = None

    def forward(self, input_ids, attention_mask, slot_positions, pattern, task, **_) -> torch.Tensor:
        with self.conditioning.on(task) if self.conditioning is not None else nullcontext():
            return self.scores(input_ids, attention_mask, slot_positions, pattern, task)

    def scores(self, input_ids, attention_mask, slot_positions, pattern, task) -> torch.Tensor:
        raise NotImplementedError

    def extra_state(self) -> dict[str, torch.Tensor]:
        """The parameters that are not the masked LM's (they go to method.safetensors in a checkpoint)."""
        own = {id(t) for t in self.mlm.state_dict(keep_vars=True).values()}
        return {k: v for k, v in self.state_dict(keep_vars=True).items() if id(v) not in own}


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


def label_loss(scores: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy over each example's own task's labels, optionally weighted per example (task weights)."""
    ce = F.cross_entropy(scores, labels, reduction="none")
    if weights is None:
        return ce.mean()
    return (ce * weights).sum() / weights.sum()
