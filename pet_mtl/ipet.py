"""`python -m pet_mtl.ipet data.unlabelled.tnews=[a,b] ... [ipet.generations=3] [ipet.variants=[...]] [train overrides]`

iPET (Schick & Schuetze 2021): generations of models. Generation 0 trains one model per `ipet.variants` entry (a
pattern set, a seed...) on the gold rows. In generation g >= 1, model j trains on the gold rows plus pseudo-labelled
unlabelled rows: the ensemble of generation g-1 *without model j* (its distributions averaged, weighted by validation
score) labels the rows, and the most confident rows of each predicted label are taken, the same number per label
(label-balanced), gold rows x `ipet.scale`^g per task in all. Finally the last generation is distilled into one
student (`python -m pet_mtl.distill`'s step) unless `ipet.distill=false`.

Every model is a plain `python -m pet_mtl.train` run in <run dir>/gen<g>/model<j>/ (its pseudo-labels beside it in
pseudo-<task>.jsonl, written atomically), and the student one in <run dir>/student/. Resumable per generation: a
rerun of the same command skips finished runs, resumes a killed one from its checkpoint-last, and reuses each
model's saved scores of the unlabelled rows (unlabelled_scores.json).
"""
from __future__ import annotations

import json
import logging
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from pet_mtl.cli import (
    CONF_DIR,
    check_training_command_line,
    friendly_errors,
)
from pet_mtl.core.device import resolve_device

log = logging.getLogger("pet_mtl")
SCORES = "unlabelled_scores.json"


def balanced_confident(examples: Sequence[Any], probs: torch.Tensor, n: int) -> list[tuple[Any, int]]:
    """(example, label index) for the n most confident rows, n // labels per predicted label (a label predicted
    for fewer rows gives all it has). Deterministic: ties go to the earlier row."""
    labels = probs.shape[1]
    confidence, predicted = probs.max(-1)
    out = []
    for label in range(labels):
        rows = [i for i in torch.argsort(-confidence, stable=True).tolist() if predicted[i] == label]
        out += [(examples[i], label) for i in rows[: n // labels]]
    return out


def finished(run: Path) -> bool:
    try:
        return bool(json.loads((run / "metrics.json").read_text(encoding="utf-8")).get("finished"))
    except (OSError, ValueError):
        return False


def train_run(run: Path, overrides: list[str]) -> None:
    """A `python -m pet_mtl.train` run in `run`: skipped when finished, resumed when killed after a checkpoint."""
    if finished(run):
        log.info("%s: finished, kept", run)
        return
    resume = ["train.resume=true"] if (run / "checkpoint-last" / "train_state").is_dir() else []
    # a run of this iPET's own killed before its first resumable checkpoint starts over in its directory
    restart = ["train.overwrite=true"] if not resume and run.exists() else []
    cmd = [sys.executable, "-m", "pet_mtl.train", *overrides, f"hydra.run.dir={run}", *resume, *restart]
    log.info("%s %s", "resuming" if resume else "training", shlex.join(cmd[2:]))
    p = subprocess.run(cmd)
    if p.returncode != 0:
        raise SystemExit(f"error: the run in {run} failed (exit {p.returncode}); fix it and rerun this command: "
                         "finished runs are kept")


def unlabelled_scores(run: Path, examples: Mapping[str, list[Any]], cfg: Any) -> dict[str, torch.Tensor]:
    """A model's label log-probabilities of the unlabelled rows, computed once and kept beside its run."""
    from pet_mtl.core.io import atomic_write_text
    from pet_mtl.training.distillation import model_scores

    path = run / SCORES
    ids = {t: [ex.id for ex in rows] for t, rows in examples.items()}
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved["ids"] == ids:
            return {t: torch.tensor(v) for t, v in saved["scores"].items()}
    scores = {t: s.log_softmax(-1) for t, s in model_scores(run, examples, cfg, resolve_device(cfg.train.device, "train.device")).items()}
    atomic_write_text(path, json.dumps({"ids": ids, "scores": {t: s.tolist() for t, s in scores.items()}}))
    return scores


def pseudo_labels(out: Path, examples: Mapping[str, list[Any]], gold: Mapping[str, int], teachers: list[Path],
                  cfg: Any, generation: int) -> dict[str, str]:
    """Write the label-balanced confident pseudo-labels of `teachers`' ensemble for one model; task -> file."""
    from pet_mtl.core.io import atomic_write_text, json_line
    from pet_mtl.core.tasks import get_task
    from pet_mtl.training.distillation import soften, teacher_weights

    weights = teacher_weights([str(t) for t in teachers], cfg.distill.weighted)
    scores = [unlabelled_scores(t, examples, cfg) for t in teachers]
    files = {}
    out.mkdir(parents=True, exist_ok=True)
    for task, rows in examples.items():
        if not rows:
            continue
        probs = soften([s[task] for s in scores], weights, 1.0)
        n = min(len(rows), round(gold[task] * cfg.ipet.scale ** generation))
        chosen = balanced_confident(rows, probs, n)
        t = get_task(task)
        if not chosen:  # fewer rows to take than the task has labels
            log.info("%s: no pseudo-labelled %s rows (%d to share among %d labels)", out, task, n, t.num_labels)
            continue
        keys = t.json_fields
        lines = [json_line({"id": ex.id, **{keys[f]: ex.fields[f] for f in t.fields}, "label": t.labels[label]})
                 for ex, label in chosen]
        path = out / f"pseudo-{task}.jsonl"
        atomic_write_text(path, "".join(lines))
        files[task] = str(path)
        log.info("%s: %d pseudo-labelled %s rows (%d per label at most) from %d teachers", out, len(chosen), task,
                 n // t.num_labels, len(teachers))
    return files


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
@friendly_errors
def main(cfg: DictConfig) -> None:
    from pet_mtl.core.validate import apply_renames
    from pet_mtl.data.regimes import load_task_data
    from pet_mtl.training.distillation import unlabelled_examples

    out = Path(HydraConfig.get().runtime.output_dir)
    base = [o for o in HydraConfig.get().overrides.task if not o.lstrip("+").startswith(("ipet.", "hydra."))]
    apply_renames(cfg)
    data = load_task_data(cfg)
    examples = unlabelled_examples(cfg, data)
    if not any(examples.values()):
        from pet_mtl.core.errors import ConfigError

        raise ConfigError("iPET needs unlabelled rows: data.unlabelled.<task>=[...] (e.g. [a,b], the test files)")
    gold = {t: len(d.train) for t, d in data.items()}
    previous: list[Path] = []
    for g in range(cfg.ipet.generations):
        current = []
        for j, variant in enumerate(cfg.ipet.variants):
            run = out / f"gen{g}" / f"model{j}"
            extra = []
            if g > 0 and not finished(run):  # a finished run is kept as it is
                teachers = [p for k, p in enumerate(previous) if k != j] or previous
                files = pseudo_labels(run, examples, gold, teachers, cfg, g)
                extra = [f"data.pseudo_labelled.{t}={f}" for t, f in files.items()]
            train_run(run, [*base, *shlex.split(variant), *extra, "train.predict_splits=[]"])
            current.append(run)
        previous = current
    if cfg.ipet.distill:
        teachers = ",".join(str(p) for p in previous)
        train_run(out / "student", [*base, f"distill.teachers=[{teachers}]"])
        print(f"student: {out / 'student'}")
    print(f"iPET generations: {', '.join(str(out / f'gen{g}') for g in range(cfg.ipet.generations))}")


if __name__ == "__main__":
    check_training_command_line(sys.argv[1:])
    main()
