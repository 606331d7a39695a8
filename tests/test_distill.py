"""Distillation: soft labels by hand, the soft loss by hand, a student lifted by teacher-labelled rows, the CLI."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
from conftest import write_synthetic
from helpers import make_cfg

from pet_mtl.methods.base import NEG
from pet_mtl.training.distillation import SOFT_LABELS, soften
from pet_mtl.training.losses import soft_label_loss
from pet_mtl.training.trainer import Trainer


def test_soft_labels_are_the_weighted_average_of_softened_teacher_distributions():
    a = torch.tensor([[2.0, 0.0, -1.0]])
    b = torch.tensor([[0.0, 1.0, 3.0]])
    T = 2.0

    def softened(row):
        logp = [x - math.log(sum(math.exp(v) for v in row)) for v in row for x in [v]]
        z = [math.exp(v / T) for v in logp]
        return [v / sum(z) for v in z]

    expected = [0.25 * x + 0.75 * y for x, y in zip(softened([2.0, 0.0, -1.0]), softened([0.0, 1.0, 3.0]))]
    assert soften([a, b], [0.25, 0.75], T)[0].tolist() == pytest.approx(expected, rel=1e-6)


def test_soft_loss_matches_a_hand_computation():
    scores = torch.tensor([[1.0, 2.0, NEG], [0.5, -0.5, 1.0]])
    labels = torch.tensor([1, -1])
    soft = torch.tensor([[0.0, 0.0, 0.0], [0.2, 0.3, 0.5]])
    is_soft = torch.tensor([False, True])
    weights = torch.tensor([1.0, 2.0])
    T = 2.0
    gold = -(2.0 - math.log(math.exp(1.0) + math.exp(2.0)))
    z = [v / T for v in (0.5, -0.5, 1.0)]
    logp = [v - math.log(sum(math.exp(u) for u in z)) for v in z]
    soft_ce = -sum(q * l for q, l in zip((0.2, 0.3, 0.5), logp)) * T ** 2
    assert soft_label_loss(scores, labels, soft, is_soft, weights, T).item() == pytest.approx(
        (gold + 2 * soft_ce) / 3, rel=1e-6)


def run(tmp_path, name, model, data, *extra):
    out = tmp_path / name
    Trainer(make_cfg(f"model.path={model}", f"data.dir={data}", "tasks=[ocemotion]", "method=heads",
                     "train.batch_size=16", "train.lr=2e-3", "train.eval_every=0", "train.progress=false",
                     "train.predict_splits=[]", "train.calibrate=false", *extra), out).fit()
    return out, json.loads((out / "metrics.json").read_text())["best"]["score"]


def test_a_student_learns_from_teacher_labelled_rows_what_its_few_gold_rows_cannot_teach(tiny_dir, tmp_path):
    data = write_synthetic(tmp_path / "data", {"ocnli": 2, "ocemotion": 40, "tnews": 2})
    teacher, teacher_f1 = run(tmp_path, "teacher", tiny_dir, data, "train.max_steps=120")
    assert teacher_f1 > 0.8  # the keyword rule is learnable from all rows
    train_file = data / "OCEMOTION_train.csv"
    few = ["data.max_train_per_task=14", "train.max_steps=120"]  # 2 gold rows per label
    _, gold_only = run(tmp_path, "gold-only", tiny_dir, data, *few)
    student, distilled = run(tmp_path, "student", tiny_dir, data, *few, f"distill.teachers=[{teacher}]",
                             f"data.unlabelled.ocemotion=[{train_file}]")
    assert distilled > gold_only + 0.15, (gold_only, distilled)
    labels = json.loads((student / SOFT_LABELS).read_text())
    assert labels["key"]["teachers"] == [str(teacher / "checkpoint-best")]
    assert len(labels["probs"]["ocemotion"]) == 280 - 28  # every row of the file but the 28 validation rows


def test_distill_command_needs_teachers_and_runs_with_them(tiny_dir, synthetic_dir, trained_run, tmp_path):
    p = subprocess.run([sys.executable, "-m", "pet_mtl.distill", f"model.path={tiny_dir}"], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 2 and "needs teachers=[" in p.stderr
    out = tmp_path / "student"
    p = subprocess.run([sys.executable, "-m", "pet_mtl.distill", f"teachers=[{trained_run}]", "method=heads",
                        "data.unlabelled.tnews=[a,b]", f"model.path={tiny_dir}", f"data.dir={synthetic_dir}",
                        "train.max_steps=2", "train.progress=false", "train.predict_splits=[a]",
                        f"hydra.run.dir={out}"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert (out / SOFT_LABELS).is_file() and (out / "submission-a" / "submit.zip").is_file()
    assert json.loads((out / "checkpoint-best" / "pet_mtl.json").read_text())["method"] == "heads"


def test_a_capped_sample_of_unlabelled_rows_is_seeded_and_keeps_file_order(synthetic_dir):
    """distill.max_rows_per_task: a seeded sample of each task's unlabelled rows, in the files' order."""
    from pet_mtl.data.regimes import load_task_data
    from pet_mtl.training.distillation import unlabelled_examples

    def rows(*extra):
        cfg = make_cfg(f"data.dir={synthetic_dir}", "data.unlabelled.tnews=[a,b]", *extra)
        return unlabelled_examples(cfg, load_task_data(cfg))["tnews"]

    everything = [e.id for e in rows()]
    assert len(everything) == 24  # test files a and b, 12 rows each
    picked = [e.id for e in rows("distill.max_rows_per_task=7", "seed=1")]
    assert len(picked) == 7 == len(set(picked)) and set(picked) <= set(everything)
    assert picked == [i for i in everything if i in picked]  # file order
    assert picked == [e.id for e in rows("distill.max_rows_per_task=7", "seed=1")]  # the seed decides it
    assert picked != [e.id for e in rows("distill.max_rows_per_task=7", "seed=2")]
    assert len(rows("distill.max_rows_per_task=100")) == 24  # a cap above the rows takes them all
