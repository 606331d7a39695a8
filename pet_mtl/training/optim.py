"""The optimizer and learning-rate schedule every method trains with (training only)."""
from __future__ import annotations

import torch


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW without weight decay on biases and LayerNorm gains, fused where torch has a fused kernel.

    The fused kernel matters on CPU: for zh-mini-mlm's 8.8M parameters a step takes 9 ms fused against 47 ms for
    the default per-tensor loop, about 12% of a whole training step (benchmarks/RESULTS.md).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
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
