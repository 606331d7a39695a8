"""LoRA adapters in a backbone, through peft: injected in place (the model keeps its class, so the backbone contract
and every method read it as before), the base frozen, and saved apart from the base with a fingerprint of the base's
weights, so an adapter is never applied to another model than the one it was trained on.

Why in place (`peft.inject_adapter_in_model`) rather than a `PeftModel` wrapper: the methods reach into the backbone
(the masked-LM head narrowed to the slot, the LayerNorms conditional normalisation shifts, the causal LM's
packed-candidate pass); a wrapper would move every one of those attributes one level down.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

import torch

from pet_mtl.core.errors import ConfigError

#: attention projections LoRA adapts when model.lora.target_modules is null and peft has no entry for the model type
#: (ERNIE, MegatronBERT and ALBERT name theirs as BERT does)
FALLBACK_TARGETS = (("query", "value"), ("q_proj", "v_proj"), ("query_proj", "value_proj"), ("c_attn",))
#: values sampled per tensor for the fingerprint: enough to tell any two trained models apart, cheap for 7B ones
FINGERPRINT_SAMPLES = 4096


@dataclass(frozen=True)
class Adapter:
    """What a checkpoint of a frozen base records: the base it was trained on and the LoRA adapters made in it (r 0:
    none, the backbone trained not at all, as in prompt tuning)."""

    base: str
    fingerprint: str
    r: int
    alpha: float
    dropout: float
    target_modules: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "target_modules": list(self.target_modules)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Adapter":
        return cls(str(d["base"]), str(d["fingerprint"]), int(d["r"]), float(d["alpha"]), float(d["dropout"]),
                   tuple(str(t) for t in d["target_modules"]))


def fingerprint(model: torch.nn.Module) -> str:
    """A hash of the model's weights: every name, shape and dtype, and an evenly strided sample of each tensor's
    values (all of a small one). Two checkpoints of one architecture differ in it unless their weights agree."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // FINGERPRINT_SAMPLES)
        h.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        h.update(flat[::step][:FINGERPRINT_SAMPLES].to(torch.float64).cpu().numpy().tobytes())
    return h.hexdigest()[:24]


def default_targets(model: torch.nn.Module) -> tuple[str, ...]:
    """The attention projections LoRA adapts by default: peft's choice for the model type, else the first of the
    usual names the model has."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_TARGETS

    targets = PEFT_TARGETS.get(getattr(model.config, "model_type", ""))
    if targets:
        return tuple(targets)
    linear = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    for names in FALLBACK_TARGETS:
        if set(names) <= linear:
            return names
    raise ConfigError(f"model.lora: no default target modules for a {type(model).__name__}; name its attention "
                      f"projections, e.g. model.lora.target_modules=[{','.join(sorted(linear)[:2])}] "
                      f"(its linear layers: {', '.join(sorted(linear)[:12])})")


def add_lora(model: torch.nn.Module, base: str, r: int, alpha: float, dropout: float,
             target_modules: list[str] | tuple[str, ...] | None) -> Adapter:
    """Inject LoRA adapters into `model` in place and freeze everything of it but them; the returned record names
    the base (path and fingerprint, taken before the injection)."""
    base_print = fingerprint(model)
    targets = inject_lora(model, r, alpha, dropout, target_modules)
    return Adapter(base, base_print, r, alpha, dropout, targets)


def inject_lora(model: torch.nn.Module, r: int, alpha: float, dropout: float,
                target_modules: list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """The adapters alone, into `model` in place, everything else of it frozen; returns the adapted modules' names
    (a checkpoint's loader, which has checked the base's fingerprint already, calls this)."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        raise ConfigError("model.lora.r > 0 needs peft: pip install \"pet_mtl[lora]\" (or pip install peft)") from None
    from transformers.pytorch_utils import Conv1D

    targets = tuple(target_modules) if target_modules else default_targets(model)
    # GPT-2 keeps its projections transposed (Conv1D): the adapters must be too
    transposed = any(isinstance(m, Conv1D) and name.rsplit(".", 1)[-1] in targets for name, m in model.named_modules())
    try:
        inject_adapter_in_model(LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets),
                                           fan_in_fan_out=transposed), model)
    except ValueError as e:  # a target module the model does not have
        raise ConfigError(f"model.lora.target_modules={list(targets)}: {str(e).splitlines()[0][:300]}") from None
    for name, p in model.named_parameters():
        p.requires_grad = "lora_" in name
    return targets


def frozen_base(model: torch.nn.Module, base: str) -> Adapter:
    """The record of a run that trains nothing of the backbone (train.train_only=prompts): no adapters (r 0), the
    base named and fingerprinted all the same, so its checkpoints hold only what was trained."""
    return Adapter(base, fingerprint(model), 0, 0.0, 0.0, ())


def adapter_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The adapter's own tensors (what a LoRA checkpoint saves of the backbone)."""
    return {k: v for k, v in model.state_dict().items() if "lora_" in k}


def merge_lora(model: torch.nn.Module) -> torch.nn.Module:
    """Fold every adapter into its base layer's weight and put the plain layer back: the model is then an ordinary
    transformers model (save_pretrained writes what any tool loads)."""
    from peft.tuners.lora import LoraLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, module.get_base_layer())
    for p in model.parameters():
        p.requires_grad = True
    return model


def parameter_counts(model: torch.nn.Module) -> tuple[int, int]:
    """(trained, total) parameters."""
    return (sum(p.numel() for p in model.parameters() if p.requires_grad),
            sum(p.numel() for p in model.parameters()))
