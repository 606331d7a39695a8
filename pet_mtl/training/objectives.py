"""The label objectives of a classification run, and the registry that composes them from the config.

Composition: the registry's factories run in order, each given the objective built so far (None at first) and
returning a new one (which may wrap it) or None (keep it). Built in: soft labels when the run distils
(distill.teachers), else cross-entropy; the gold word's likelihood beside it (train.gold_word_weight > 0); then
R-Drop around whichever it is (train.rdrop > 0), so R-Drop works with distillation too. A user adds an objective with `register_objective("name", factory)`.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from pet_mtl.training.losses import label_loss, soft_label_loss, symmetric_kl
from pet_mtl.training.plugins import Objective


class CrossEntropy(Objective):
    """Each row's cross-entropy over its own task's labels, weighted by its task's weight (batch["weights"])."""

    def loss(self, output: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return label_loss(output.float(), batch["labels"], batch.get("weights"))


class SoftLabels(Objective):
    """Distillation: gold rows' cross-entropy, teacher-labelled rows' soft cross-entropy at temperature T."""

    def __init__(self, temperature: float):
        self.temperature = temperature

    def loss(self, output: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        scores = output.float()
        if "soft" not in batch:
            return label_loss(scores, batch["labels"], batch.get("weights"))
        return soft_label_loss(scores, batch["labels"], batch["soft"], batch["is_soft"], batch.get("weights"),
                               self.temperature)

    def describe(self) -> str:
        return f"SoftLabels(T={self.temperature:g})"


class RDrop(Objective):
    """R-Drop (Liang et al. 2021): the batch runs twice in one forward (stacked, so the copies get independent
    dropout); the inner objective's loss of each pass, averaged, plus alpha x the symmetric KL between the passes'
    label distributions."""

    def __init__(self, inner: Objective, alpha: float):
        self.inner, self.alpha = inner, alpha

    def prepare(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: torch.cat([v, v]) for k, v in self.inner.prepare(batch).items()}

    def loss(self, output: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        first, second = output.float().chunk(2)
        ce = (self.inner.loss(first, batch) + self.inner.loss(second, batch)) / 2
        return ce + self.alpha * symmetric_kl(first, second, batch.get("weights"))

    def describe(self) -> str:
        return f"RDrop({self.inner.describe()}, alpha={self.alpha:g})"


class GoldWordLikelihood(Objective):
    """The inner objective plus weight x the language-model loss of each labelled row's gold word: minus its label
    score, which for the methods that score words (pet's slot, causal's continuation) is the log-likelihood of the
    gold word's tokens. GPT-style fine-tuning trains the generation itself; the cross-entropy over labels only
    trains the words' differences."""

    def __init__(self, inner: Objective, weight: float):
        self.inner, self.weight = inner, weight

    def prepare(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.inner.prepare(batch)

    def loss(self, output: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        scores, labels = output.float(), batch["labels"]
        gold = labels >= 0
        nll = -scores[gold.nonzero().squeeze(1), labels[gold]]
        term = nll.mean() if len(nll) else scores.sum() * 0.0
        return self.inner.loss(output, batch) + self.weight * term

    def describe(self) -> str:
        return f"GoldWordLikelihood({self.inner.describe()}, weight={self.weight:g})"


def gold_word_factory(cfg: Any, inner: Objective | None) -> Objective | None:
    weight = cfg.train.gold_word_weight
    if not weight:
        return None
    from pet_mtl.core.errors import ConfigError
    from pet_mtl.methods import get_method

    if not get_method(cfg.method).needs_mlm_head:
        raise ConfigError(f"train.gold_word_weight > 0 trains a label word's likelihood; method={cfg.method} scores "
                          "with classifiers, not words (use it with method=causal, pet or pet_cln)")
    return GoldWordLikelihood(inner, weight)


Factory = Callable[[Any, "Objective | None"], "Objective | None"]
#: name -> factory(cfg, objective so far) -> a new objective, or None to keep the one so far; run in this order
OBJECTIVES: dict[str, Factory] = {}


def register_objective(name: str, factory: Factory) -> None:
    if name in OBJECTIVES and OBJECTIVES[name] is not factory:
        raise ValueError(f"objective {name!r} is registered already")
    OBJECTIVES[name] = factory


register_objective("soft_labels", lambda cfg, inner: SoftLabels(cfg.distill.temperature) if cfg.distill.teachers
                   else None)
register_objective("cross_entropy", lambda cfg, inner: CrossEntropy() if inner is None else None)
register_objective("gold_word", gold_word_factory)
register_objective("rdrop", lambda cfg, inner: RDrop(inner, cfg.train.rdrop) if cfg.train.rdrop else None)


def build_objective(cfg: Any) -> Objective:
    objective = None
    for factory in OBJECTIVES.values():
        objective = factory(cfg, objective) or objective
    assert objective is not None, "no objective: the registry's cross_entropy entry was removed"
    return objective
