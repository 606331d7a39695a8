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


def classification_scores(predictions: Sequence[int], references: Sequence[int],
                          label_codes: Sequence[str] | None = None) -> dict:
    """macro_f1 and accuracy through our evaluate module; with the task's label codes also `per_class` (precision,
    recall, F1 and support by code) and `confusion` (rows: gold, columns: predicted, in label-code order)."""
    out = _metric().compute(predictions=list(map(int, predictions)), references=list(map(int, references)),
                            num_classes=len(label_codes) if label_codes else None)
    scores = {"macro_f1": float(out["macro_f1"]), "accuracy": float(out["accuracy"])}
    if label_codes:
        scores["per_class"] = {code: {k: round(v, 6) if isinstance(v, float) else v for k, v in c.items()}
                               for code, c in zip(label_codes, out["per_class"])}
        scores["confusion"] = out["confusion"]
    return scores


def competition_score(per_task: Mapping[str, Mapping[str, float]]) -> float:
    """The leaderboard number: the unweighted mean of the tasks' macro-F1."""
    return sum(s["macro_f1"] for s in per_task.values()) / len(per_task)


def calibrated_task_score(report: Mapping[str, object]) -> float:
    """What a task's calibrated decisions score on the validation split (one entry of metrics.json's
    `calibration`): the cross-fitted macro-F1 where its biases were applied, its plain argmax where they were not."""
    return float(report["cross_fitted"] if report["applied"] else report["before"])


def calibrated_score(calibration: Mapping[str, Mapping[str, object]] | None) -> float | None:
    """The mean over tasks of `calibrated_task_score`; None for a run without calibration."""
    if not calibration:
        return None
    return sum(calibrated_task_score(r) for r in calibration.values()) / len(calibration)
