"""Losses from label scores: cross-entropy, R-Drop's consistency term, soft labels for distillation.

Each takes [B, C] label scores (a method's output) and per-example weights (task weights); training/objectives
composes them into the objective a run optimises.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def label_loss(scores: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy over each example's own task's labels, optionally weighted per example (task weights)."""
    ce = F.cross_entropy(scores, labels, reduction="none")
    if weights is None:
        return ce.mean()
    return (ce * weights).sum() / weights.sum()


def rdrop_loss(first: torch.Tensor, second: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None,
               alpha: float) -> torch.Tensor:
    """R-Drop (Liang et al. 2021): the two dropout passes' cross-entropies, averaged, plus `alpha` times the
    symmetric KL divergence between their label distributions (per example, weighted like the cross-entropy). A
    task's missing labels (NEG) have probability 0 in both passes and add nothing."""
    ce = (label_loss(first, labels, weights) + label_loss(second, labels, weights)) / 2
    return ce + alpha * symmetric_kl(first, second, weights)


def symmetric_kl(first: torch.Tensor, second: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """The symmetric KL divergence between two passes' label distributions, per row, then the (weighted) mean."""
    a, b = F.log_softmax(first, dim=-1), F.log_softmax(second, dim=-1)
    kl = (F.kl_div(a, b, log_target=True, reduction="none") + F.kl_div(b, a, log_target=True, reduction="none")).sum(-1) / 2
    return kl.mean() if weights is None else (kl * weights).sum() / weights.sum()


def soft_label_loss(scores: torch.Tensor, labels: torch.Tensor, soft: torch.Tensor, is_soft: torch.Tensor,
                    weights: torch.Tensor | None, temperature: float) -> torch.Tensor:
    """A batch mixing gold rows and soft (distilled) rows: gold rows' cross-entropy, soft rows' cross-entropy
    against the teachers' distribution at temperature T, scaled by T^2 so its gradients keep the gold rows' size
    (Hinton et al. 2015; PET's distillation does the same); the weighted mean over all rows."""
    per_row = torch.zeros(len(scores), dtype=scores.dtype, device=scores.device)
    gold = ~is_soft
    if gold.any():
        per_row[gold] = F.cross_entropy(scores[gold], labels[gold], reduction="none")
    if is_soft.any():
        log_p = F.log_softmax(scores[is_soft] / temperature, dim=-1)[:, : soft.shape[1]]
        per_row[is_soft] = -(soft[is_soft] * log_p).sum(-1) * temperature ** 2
    if weights is None:
        return per_row.mean()
    return (per_row * weights).sum() / weights.sum()
