"""The optimizer and learning-rate schedule every method trains with (training only)."""
from __future__ import annotations

import torch


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float,
                    prompt_lr: float | None = None) -> torch.optim.Optimizer:
    """AdamW without weight decay on biases and LayerNorm gains, fused where torch has a fused kernel; the learned
    prompt tokens (`model.prompts`) in a group of their own, at `prompt_lr` (default `lr`) and without decay (their
    rows are input embeddings, which decay would pull towards zero, away from any token).

    The fused kernel matters on CPU: for zh-mini-mlm's 8.8M parameters a step takes 9 ms fused against 47 ms for
    the default per-tensor loop, about 12% of a whole training step (benchmarks/RESULTS.md).
    """
    prompts = getattr(model, "prompts", None)
    prompt_ids = {id(p) for p in prompts.parameters()} if prompts is not None else set()
    params = [p for p in model.parameters() if p.requires_grad and id(p) not in prompt_ids]
    groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
              {"params": [p for p in model.parameters() if id(p) in prompt_ids and p.requires_grad],
               "weight_decay": 0.0, "lr": prompt_lr or lr}]
    groups = [g for g in groups if g["params"]]
    try:
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, ValueError):  # a device or dtype without a fused kernel
        return torch.optim.AdamW(groups, lr=lr)


def warmup_linear(optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float):
    """Linear warmup over the first `warmup_ratio` of the steps, then linear decay to 0 at `total_steps`."""
    warmup = int(warmup_ratio * total_steps)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
