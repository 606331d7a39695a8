"""Inference: features in, label scores out; then labels, per-task metrics. The one scoring path.

Training (evaluation during a run), prediction, submissions and the benchmarks all score through here, so every
prediction is computed the way the scoring oracle (tests/test_scoring.py) checks. Nothing here trains.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from pet_mtl.core.console import console_is_terminal
from pet_mtl.core.distributed import Dist
from pet_mtl.core.precision import autocast
from pet_mtl.core.tasks import get_task
from pet_mtl.data.readers import Example
from pet_mtl.methods import Featurizer, Scorer
from pet_mtl.methods.features import Feature, collate
from pet_mtl.metrics import classification_scores, competition_score


@torch.inference_mode()
def score_features(model: Scorer, features: Sequence[Feature], batch_size: int, pad_id: int,
                   pad_to_multiple_of: int, precision: str, device: torch.device, dist: Dist | None = None,
                   progress: str | None = None,
                   forward: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None = None,
                   width: int | None = None) -> torch.Tensor:
    """[N, C] label scores in input order; batches are formed from length-sorted features to cut padding, and
    under torchrun each rank scores every world-th batch and the results are gathered. `progress`: a bar with
    this description (rank 0). `forward` (batch -> [B, width]) replaces the model's own forward for callers that
    read something else from the same batches (the workbench scores candidate label words), so there is one
    batching loop."""
    dist = dist or Dist()
    was_training = model.training
    model.eval()
    order = sorted(range(len(features)), key=lambda i: len(features[i].input_ids))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    mine_batches = batches[dist.rank::dist.world]
    if progress and dist.is_main and console_is_terminal():
        from tqdm.auto import tqdm

        mine_batches = tqdm(mine_batches, desc=progress, unit="batch", leave=False, dynamic_ncols=True)
    mine = []
    for idx in mine_batches:
        batch = collate([features[i] for i in idx], pad_id, pad_to_multiple_of)
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast(device, precision):
            mine.append((idx, (model(**batch) if forward is None else forward(batch)).float().cpu()))
    out = torch.empty(len(features), model.max_labels if width is None else width)
    for part in dist.gather(mine):
        for idx, scores in part:
            out[idx] = scores
    model.train(was_training)
    return out


def example_scores(features: Sequence[Feature], scores: torch.Tensor, n_examples: int) -> torch.Tensor:
    """Average each example's label scores over its features (the patterns it was rendered with: the ensemble)."""
    total = torch.zeros(n_examples, scores.size(1))
    count = torch.zeros(n_examples, 1)
    ex = torch.tensor([f.example for f in features])
    total.index_add_(0, ex, scores)
    count.index_add_(0, ex, torch.ones(len(features), 1))
    return total / count


def score_predictions(examples: Sequence[Example], preds: Sequence[int]) -> dict[str, float]:
    """Macro-F1 and accuracy of one task's label indices against the examples' own labels, with per-class
    precision, recall, F1, support and the confusion matrix."""
    task = get_task(examples[0].task)
    return classification_scores(list(preds), [task.label_index(e.label) for e in examples], task.labels)


@dataclass
class Predictor:
    """A method's featurizer and model on a device, with the batch settings to run them: examples in, label scores,
    labels or metrics out. `pad_to_multiple_of` is the resolved multiple (see `pad_multiple`)."""

    featurizer: Featurizer
    model: Scorer
    batch_size: int = 128
    precision: str = "fp32"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    pad_to_multiple_of: int = 1
    dist: Dist = field(default_factory=Dist)
    #: show a progress bar per task
    progress: bool = False
    #: per task, [labels] biases added to the label log-probabilities before the argmax (inference/calibration.py)
    biases: dict[str, torch.Tensor] = field(default_factory=dict)

    #: rows featurized and scored at a time: features are the bulk of inference's memory (~2.6 KB a row), so a
    #: file of millions of rows costs what this many do; a task's validation split fits in one chunk
    chunk_rows: int = 8192

    def stream(self, examples: Iterable[Example]) -> Iterator[tuple[list[Example], torch.Tensor]]:
        """(rows, their [n, labels] scores) chunk by chunk, in input order, for one task's rows read lazily."""
        it = iter(examples)
        while chunk := list(itertools.islice(it, self.chunk_rows)):
            feats = self.featurizer.encode(chunk, with_labels=False)
            scores = score_features(self.model, feats, self.batch_size, self.featurizer.tokenizer.pad_token_id,
                                    self.pad_to_multiple_of, self.precision, self.device, self.dist,
                                    f"{chunk[0].task} ({len(chunk)} rows)" if self.progress else None)
            yield chunk, example_scores(feats, scores, len(chunk))[:, :get_task(chunk[0].task).num_labels]

    def scores(self, examples: Sequence[Example]) -> torch.Tensor:
        """[N, labels of the task] scores of one task's examples, in input order (averaged over patterns)."""
        return torch.cat([scores for _, scores in self.stream(examples)])

    def calibrated(self, task: str, log_probs: torch.Tensor, calibrate: bool = True) -> torch.Tensor:
        """One task's [N, labels] log-probabilities plus its calibration biases, if any (and `calibrate`): the
        argmax of these is the decision."""
        return log_probs + self.biases[task] if calibrate and task in self.biases else log_probs

    def decide(self, task: str, scores: torch.Tensor) -> list[int]:
        """Label indices from one task's [N, labels] scores: the argmax of the log-probabilities plus the task's
        calibration biases, if any."""
        return self.calibrated(task, scores.log_softmax(-1)).argmax(-1).tolist()

    def predict(self, examples: Sequence[Example]) -> list[int]:
        """Label indices of one task's examples, in input order."""
        return self.decide(examples[0].task, self.scores(examples))

    def evaluate(self, sets: Mapping[str, Sequence[Example]]) -> dict[str, Any]:
        """Per-task macro-F1 and accuracy of labelled examples, and the competition score (their mean)."""
        per_task = {name: score_predictions(examples, self.predict(examples)) for name, examples in sets.items()}
        return {"tasks": per_task, "score": competition_score(per_task)}
