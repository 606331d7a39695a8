"""Where a model runs: `auto` picks the GPU when torch sees one, so a user with a GPU does not train on the CPU by
default and a user without one is not told to change a setting. A named device the machine lacks is refused in one
line before any model is loaded, rather than at the first tensor moved."""
from __future__ import annotations

import torch

from pet_mtl.core.errors import ConfigError

#: what a device setting may say (torch's own spellings, plus auto)
DEVICE_HELP = "auto (the GPU when there is one, else the CPU), cpu, cuda or cuda:N"


def resolve_device(configured: str, key: str = "device") -> torch.device:
    if configured == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(configured)
    except (RuntimeError, TypeError):
        raise ConfigError(f"{key}={configured!r}: expected {DEVICE_HELP}") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"{key}={configured!r}: expected {DEVICE_HELP}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{key}={configured}, but torch sees no CUDA GPU on this machine; use {key}=auto or cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"{key}={configured}, but this machine has {torch.cuda.device_count()} GPU(s) "
                              f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    return device


def resolve_precision(configured: str, device: torch.device) -> str:
    """`auto`: bf16 on a GPU that computes in it, else fp32 (on CPUs bf16 autocast can be 30x slower: measured on
    AMD EPYC, benchmarks/RESULTS.md)."""
    if configured != "auto":
        return configured
    return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"


def settle(train_cfg, device: torch.device) -> None:
    """A run's `auto` device and precision replaced by what they resolved to, so its checkpoints record the concrete
    values and a resume compares those (a run saved as `cpu` before `auto` was the default resumes under it)."""
    if train_cfg.device == "auto":
        train_cfg.device = device.type
    train_cfg.precision = resolve_precision(train_cfg.precision, device)
