"""Per-task scores and the competition score (mean of the tasks' macro-F1)."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Mapping, Sequence

MODULE_DIR = Path(__file__).resolve().parent / "macro_f1"


@functools.lru_cache(maxsize=1)
def _metric():
    import evaluate  # imported lazily: it pulls in `datasets`, slow to import and not needed to predict

    return evaluate.load(str(MODULE_DIR))


def classification_scores(predictions: Sequence[int], references: Sequence[int]) -> dict:
    """macro_f1 and accuracy through our evaluate module."""
    out = _metric().compute(predictions=list(map(int, predictions)), references=list(map(int, references)))
    return {"macro_f1": float(out["macro_f1"]), "accuracy": float(out["accuracy"])}


def competition_score(per_task: Mapping[str, Mapping[str, float]]) -> float:
    """The leaderboard number: the unweighted mean of the tasks' macro-F1."""
    return sum(s["macro_f1"] for s in per_task.values()) / len(per_task)
