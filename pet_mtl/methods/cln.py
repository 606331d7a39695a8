"""Conditional LayerNorm: a learned task embedding shifts the gain and bias of every LayerNorm (or RMSNorm) of the
encoder.

For LayerNorm output y = norm(x) * g + b, task t gives y_t = y + norm(x) * dg(e_t) + db(e_t), with dg and db
linear maps of the task embedding e_t, initialised to zero: at initialisation the model is exactly the pretrained
one (the offsets add exact zeros), and the task signal is learned from there.

The LayerNorms are patched with forward hooks, not replaced: the backbone keeps its own modules, class and
state-dict keys, so any transformers BERT-family model works unmodified, `save_pretrained` still writes a plain
backbone, and the conditioning's parameters live (and are saved) beside it. `conditioned(scorer)` adds it to any
output style: method=cln is heads + CLN, method=pet_cln the cloze + CLN.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from pet_mtl.backbones.contract import Backbone
from pet_mtl.core.errors import ConfigError
from pet_mtl.methods.base import (
    Featurizer,
    Method,
    MethodOptions,
    Scorer,
    ScorerFactory,
)
from pet_mtl.methods.cloze import cloze_featurizer, cloze_scorer
from pet_mtl.methods.heads import heads_scorer, text_featurizer


class TaskLayerNorm(nn.Module):
    def __init__(self, backbone: Backbone, n_tasks: int, dim: int):
        super().__init__()
        norms = backbone.norms()
        if not norms:
            raise ConfigError(f"method with cln: {type(backbone.model).__name__} has no torch.nn.LayerNorm or RMSNorm "
                              "to condition")
        self.task_embedding = nn.Embedding(n_tasks, dim)
        sizes = [m.normalized_shape[-1] if isinstance(m, nn.LayerNorm) else m.weight.shape[-1] for m in norms]
        self.gain = nn.ModuleList(nn.Linear(dim, n) for n in sizes)
        self.shift = nn.ModuleList(nn.Linear(dim, n) for n in sizes)
        for proj in (*self.gain, *self.shift):
            nn.init.zeros_(proj.weight)
            nn.init.zeros_(proj.bias)
        self._task_vec: torch.Tensor | None = None  # [B, dim] while a batch runs under on()
        self._hooks = [m.register_forward_hook(self._hook(i)) for i, m in enumerate(norms)]

    @contextmanager
    def on(self, task: torch.Tensor):
        """Condition every patched LayerNorm on `task` ([B] task indices) for the forwards inside the block."""
        self._task_vec = self.task_embedding(task)
        try:
            yield
        finally:
            self._task_vec = None

    def _hook(self, i: int):
        def hook(module: nn.LayerNorm, args, output: torch.Tensor):
            if self._task_vec is None:  # outside on(): the plain backbone
                return None
            x = args[0]
            normed = normalized(module, x)
            shape = (x.size(0),) + (1,) * (x.dim() - 2) + (-1,)
            dg = self.gain[i](self._task_vec).view(shape)
            db = self.shift[i](self._task_vec).view(shape)
            return output + normed * dg.to(normed.dtype) + db.to(normed.dtype)

        return hook


def normalized(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """x normalised as the layer does before its gain: LayerNorm centres and scales, RMSNorm (Llama, Qwen) only
    scales by the root mean square, in fp32 as those models compute it."""
    if isinstance(norm, nn.LayerNorm):
        return F.layer_norm(x, norm.normalized_shape, None, None, norm.eps)
    eps = getattr(norm, "variance_epsilon", getattr(norm, "eps", 1e-6))
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def conditioned(scorer: ScorerFactory) -> ScorerFactory:
    """The same scorer with every LayerNorm of its encoder conditioned on the row's task."""

    def conditioned_scorer(backbone: Backbone, featurizer: Featurizer, options: MethodOptions) -> Scorer:
        model = scorer(backbone, featurizer, options)
        model.conditioning = TaskLayerNorm(backbone, len(featurizer.tasks), options.cln_dim)
        return model

    conditioned_scorer.__qualname__ = f"conditioned({scorer.__qualname__})"
    return conditioned_scorer


CLN = Method("cln", "per-task heads plus conditional LayerNorm from a task embedding", text_featurizer,
             conditioned(heads_scorer), uses_patterns=False, sparse_gradients=True,
             backbone_kinds=("masked", "causal"))
PET_CLN = Method("pet_cln", "pattern cloze plus conditional LayerNorm", cloze_featurizer, conditioned(cloze_scorer),
                 uses_patterns=True, needs_mlm_head=True)
