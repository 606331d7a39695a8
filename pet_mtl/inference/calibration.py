"""Decisions tuned for macro-F1: per-task label biases added to the label log-probabilities before the argmax.

Macro-F1 weighs every class alike, so a model that almost never predicts a rare class (OCEMOTION `fear`, 594 of
35,694 rows) loses that class's whole F1 even when its scores rank the class's rows high. Three rules:
- `fit_biases`: coordinate ascent on the validation split: for one label at a time, the bias (from a grid) that
  maximises macro-F1 given the others, repeated until no label improves; the biases are saved with the checkpoint
  (`calibration.json`) and predict applies them unless `calibrate=false`.
- `logit_adjustment`: bias = -tau * log(prior), the label prior of the training rows (Menon et al. 2021).
- `contextual`: bias = -log p(label | content-free input) (Zhao et al. 2021), for zero- and few-shot use.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from pet_mtl.core.errors import CheckpointError
from pet_mtl.core.io import atomic_write_text

CALIBRATION = "calibration.json"
GRID = torch.linspace(-3.0, 3.0, 61)


def macro_f1_batch(preds: torch.Tensor, gold: torch.Tensor, n: int) -> torch.Tensor:
    """[G] macro-F1 of G rows of predictions [G, N] against one gold [N], over the classes present in gold or the
    row's predictions (the metric module's definition), from one bincount."""
    G = preds.size(0)
    index = torch.arange(G)[:, None] * n * n + gold[None] * n + preds
    cm = torch.bincount(index.flatten(), minlength=G * n * n).view(G, n, n).double()
    tp = cm.diagonal(dim1=1, dim2=2)
    total = cm.sum(1) + cm.sum(2)  # predicted + actual, per class
    f1 = torch.where(tp > 0, 2 * tp / total.clamp(min=1), torch.zeros_like(tp))
    present = total > 0
    return (f1 * present).sum(1) / present.sum(1).clamp(min=1)


def macro_f1(preds: torch.Tensor, gold: torch.Tensor, n: int) -> float:
    return float(macro_f1_batch(preds[None], gold, n)[0])


def fit_biases(log_probs: torch.Tensor, gold: torch.Tensor, rounds: int = 5) -> torch.Tensor:
    """[C] biases that raise macro-F1 of argmax(log_probs + biases) on these rows: coordinate ascent, each label's
    bias chosen from GRID given the others (all grid values scored at once), until no label improves."""
    n = log_probs.size(1)
    bias = torch.zeros(n)
    best = macro_f1(log_probs.argmax(-1), gold, n)
    for _ in range(rounds):
        improved = False
        for c in range(n):
            trials = bias.repeat(len(GRID), 1)
            trials[:, c] = GRID
            scores = macro_f1_batch((log_probs[None] + trials[:, None]).argmax(-1), gold, n)
            i = int(scores.argmax())
            if scores[i] > best + 1e-9:
                best, bias, improved = float(scores[i]), trials[i].clone(), True
        if not improved:
            break
    return bias


def logit_adjustment(label_counts: Sequence[int], tau: float = 1.0) -> torch.Tensor:
    prior = torch.tensor(label_counts, dtype=torch.float) + 1.0
    return -tau * (prior / prior.sum()).log()


def contextual(content_free_log_probs: torch.Tensor) -> torch.Tensor:
    """[C] biases from the label log-probabilities of content-free inputs ([K, C], averaged over the K inputs)."""
    return -content_free_log_probs.log_softmax(-1).exp().mean(0).log()


def save(ckpt: Path, biases: Mapping[str, Mapping[str, float]], how: str) -> None:
    atomic_write_text(ckpt / CALIBRATION, json.dumps({"rule": how, "biases": biases}, indent=1))


def load(ckpt: Path, labels: Mapping[str, Sequence[str]]) -> dict[str, torch.Tensor]:
    """Per task the [C] biases in label order; {} for a checkpoint without calibration."""
    path = ckpt / CALIBRATION
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        biases = {t: torch.tensor([float(doc["biases"][t][c]) for c in labels[t]]) for t in doc["biases"]
                  if t in labels}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(path, None, f"not a calibration file pet_mtl wrote ({type(e).__name__}: "
                              f"{str(e)[:200]})") from None
    for task, b in biases.items():
        if not bool(torch.isfinite(b).all()):
            raise CheckpointError(path, None, f"the {task} biases hold a value that is not a finite number "
                                  f"({', '.join(f'{c}={v:g}' for c, v in zip(labels[task], b.tolist()))})")
    return biases


def fit(predictor, sets: Mapping[str, Sequence]) -> tuple[dict[str, dict[str, float]], dict[str, dict]]:
    """Biases fitted on each task's labelled rows (all of them), and an honest estimate of what they are worth:
    2-fold cross-fitting (biases fitted on one half decide the other half), so the "after" score is measured on
    rows its biases never saw. A task whose cross-fitted score is no better than its plain argmax gets zero biases
    (on zh-mini-mlm fitted biases helped OCEMOTION's rare classes and cost OCNLI and TNEWS a little)."""
    from pet_mtl.core.tasks import get_task

    biases, report = {}, {}
    for task, examples in sets.items():
        t = get_task(task)
        log_probs = predictor.scores(examples).log_softmax(-1)
        gold = torch.tensor([t.label_index(e.label) for e in examples])
        halves = torch.randperm(len(examples), generator=torch.Generator().manual_seed(0)) % 2 == 0
        crossed = torch.empty(len(examples), dtype=torch.long)
        for fit_on in (halves, ~halves):
            b = fit_biases(log_probs[fit_on], gold[fit_on])
            crossed[~fit_on] = (log_probs[~fit_on] + b).argmax(-1)
        before, after = macro_f1(log_probs.argmax(-1), gold, t.num_labels), macro_f1(crossed, gold, t.num_labels)
        # a task whose cross-fitted score does not improve keeps its plain argmax (zero biases)
        full = fit_biases(log_probs, gold) if after > before else torch.zeros(t.num_labels)
        biases[task] = {code: round(float(v), 4) for code, v in zip(t.labels, full)}
        report[task] = {"before": before, "cross_fitted": after, "applied": after > before, "biases": biases[task]}
    return biases, report


def fit_and_save(predictor, sets: Mapping[str, Sequence], ckpt: Path, is_main: bool = True) -> dict[str, dict]:
    """`fit` on the validation sets, biases saved into the checkpoint (rank 0), the report logged and returned."""
    import logging

    biases, report = fit(predictor, sets)
    if is_main:
        save(ckpt, biases, "fit_biases on the validation split")
    logging.getLogger("pet_mtl").info("calibration (validation macro-F1, 2-fold cross-fitted) | %s", " | ".join(
        f"{t} {r['before']:.4f} -> {r['cross_fitted']:.4f}{'' if r['applied'] else ' (not applied)'}"
        for t, r in report.items()))
    return report
