"""PET's last step: teachers label unlabelled rows with soft distributions, one student learns from them.

Teachers are checkpoints (pattern models, seeds, methods: any pet_mtl checkpoint with the run's tasks). Each scores
the run's `data.unlabelled` rows (unlabelled.py: validation and held-out texts are never read); its label
log-probabilities, divided by the temperature T, give a softened distribution, and the teachers' distributions are
averaged, weighted by each teacher's validation score (mean macro-F1 at its checkpoint, as PET weights its pattern
models by accuracy) or equally (`distill.weighted=false`). The student (any method) then trains on the gold rows plus
the soft rows (methods/base.soft_label_loss: cross-entropy against the distribution at temperature T, x T^2). The
student is one model, so its submission obeys the competition's single-model rule.

The soft labels are computed once and kept in <run dir>/soft_labels.json (written atomically, reused on resume when
the teachers, T and rows are the same), so a killed distillation resumes without scoring again.
"""
from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any, Mapping

import torch

from pet_mtl.core.errors import ConfigError
from pet_mtl.core.io import atomic_write_text
from pet_mtl.core.tasks import get_task
from pet_mtl.data.corpus import documents
from pet_mtl.data.readers import Example
from pet_mtl.data.regimes import TaskData
from pet_mtl.data.unlabelled import sources
from pet_mtl.inference.checkpoint import load_meta, load_scorer, resolve
from pet_mtl.inference.predictor import Predictor

log = logging.getLogger("pet_mtl")
SOFT_LABELS = "soft_labels.json"


def unlabelled_examples(cfg: Any, data: Mapping[str, TaskData]) -> dict[str, list[Example]]:
    """Every row of the run's unlabelled files as an Example (one pass; bad lines are skipped and counted),
    a seeded sample of distill.max_rows_per_task where set."""
    out: dict[str, list[Example]] = {t: [] for t in cfg.tasks}
    for src in sources(cfg, data):
        task, bad = src.task, []

        def note(lineno: int, problem: str) -> None:
            bad.append(lineno)
            if len(bad) <= 3:
                log.warning("%s:%d: %s (bad line, skipped)", src.path, lineno, problem)

        out[task.name] += [Example(task.name, f"{src.path.name}:{lineno}", dict(zip(task.fields, segments)), None,
                                   f"{src.path}:{lineno}") for lineno, segments in documents(src, bad=note)]
        if bad:
            log.warning("%s: %d bad lines skipped", src.path, len(bad))
    cap = cfg.distill.max_rows_per_task
    for name, rows in out.items():
        if cap and len(rows) > cap:
            # indices, not rows: the same draw as sampling the rows, kept in file order without a quadratic search
            picked = random.Random(f"{cfg.seed}/distill/{name}").sample(range(len(rows)), cap)
            out[name] = [rows[i] for i in sorted(picked)]
    return out


def teacher_weights(teachers: list[str], weighted: bool) -> list[float]:
    """Each teacher's share of the average: its validation score (normalised), or equal shares."""
    if not weighted:
        return [1.0 / len(teachers)] * len(teachers)
    scores = []
    for t in teachers:
        metrics = load_meta(resolve(t)).get("metrics") or {}
        if not isinstance(metrics.get("score"), (int, float)):
            raise ConfigError(f"distill.weighted=true, but teacher {t} records no validation score; "
                              "use distill.weighted=false")
        scores.append(float(metrics["score"]))
    return [s / sum(scores) for s in scores]


def soften(teacher_scores: list[torch.Tensor], weights: list[float], temperature: float) -> torch.Tensor:
    """The weighted average of the teachers' distributions softmax(log p / T) ([N, labels] each)."""
    return sum(w * (s.log_softmax(-1) / temperature).softmax(-1) for s, w in zip(teacher_scores, weights))


def model_scores(checkpoint: str | Path, examples: Mapping[str, list[Example]], cfg: Any,
                 device: torch.device) -> dict[str, torch.Tensor]:
    """A checkpoint's label scores ([N, labels], before calibration) of each task's rows that are not empty."""
    _, meta, featurizer, model = load_scorer(checkpoint)
    missing = [t for t in examples if examples[t] and t not in meta["tasks"]]
    if missing:
        raise ConfigError(f"teacher {checkpoint} has no {', '.join(missing)}: every teacher must know the student's "
                          "tasks")
    predictor = Predictor(featurizer, model.to(device).eval(), cfg.train.eval_batch_size, cfg.train.precision, device)
    return {t: predictor.scores(rows).float().cpu() for t, rows in examples.items() if rows}


def soft_labels(cfg: Any, data: Mapping[str, TaskData], run_dir: Path, device: torch.device, is_main: bool,
                barrier) -> tuple[dict[str, list[Example]], dict[str, list[list[float]]]]:
    """(unlabelled examples, their soft labels) per task, from <run dir>/soft_labels.json when it was made by the
    same teachers, temperature and rows."""
    d = cfg.distill
    teachers = [str(resolve(t)) for t in d.teachers]
    examples = unlabelled_examples(cfg, data)
    if not any(examples.values()):
        raise ConfigError("distillation needs unlabelled rows: data.unlabelled.<task>=[...] (e.g. [a,b], the test files)")
    key = {"teachers": teachers, "temperature": d.temperature, "weighted": d.weighted,
           "rows": {t: [ex.id for ex in rows] for t, rows in examples.items()}}
    path = run_dir / SOFT_LABELS
    if is_main and not (path.is_file() and json.loads(path.read_text(encoding="utf-8"))["key"] == key):
        weights = teacher_weights(teachers, d.weighted)
        per_teacher: dict[str, list[torch.Tensor]] = {t: [] for t in examples}
        for teacher, w in zip(teachers, weights):
            for t, scores in model_scores(teacher, examples, cfg, device).items():
                per_teacher[t].append(scores)
            log.info("teacher %s (weight %.3f) labelled %s", teacher, w,
                     ", ".join(f"{len(r)} {t}" for t, r in examples.items()))
        probs = {t: soften(s, weights, d.temperature).tolist() if s else [] for t, s in per_teacher.items()}
        atomic_write_text(path, json.dumps({"key": key, "probs": probs}))
    barrier()
    probs = json.loads(path.read_text(encoding="utf-8"))["probs"]
    for t, rows in examples.items():
        assert len(probs[t]) == len(rows) and all(len(p) == get_task(t).num_labels for p in probs[t])
    return examples, probs
