"""The Python API: `pet_mtl.Classifier` gives exactly what `python -m pet_mtl.predict` writes for the same rows,
calibration included, and says in one line what an input lacks."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import synthetic_rows, write_tsv

import pet_mtl
from pet_mtl.core.errors import ConfigError, InputError
from pet_mtl.core.tasks import TASKS


@pytest.fixture(scope="module")
def calibrated_ckpt(trained_run, tmp_path_factory):
    """The trained run's checkpoint-best with calibration biases large enough to move decisions in every task."""
    ckpt = tmp_path_factory.mktemp("api") / "checkpoint"
    shutil.copytree(trained_run / "checkpoint-best", ckpt)
    biases = {t: {code: (1.5 if i == 1 else 0.0) for i, code in enumerate(task.labels)} for t, task in TASKS.items()}
    (ckpt / "calibration.json").write_text(json.dumps({"rule": "test", "biases": biases}), encoding="utf-8")
    return ckpt


@pytest.fixture(scope="module")
def clf(calibrated_ckpt):
    return pet_mtl.Classifier.from_pretrained(calibrated_ckpt)


def rows_of(task: str) -> list[tuple[str, ...]]:
    return [r[:-1] for r in synthetic_rows(task, 3, seed=7)]


def test_predict_from_python_is_what_the_cli_writes_with_and_without_calibration(calibrated_ckpt, tmp_path):
    files = {t: write_tsv(tmp_path / f"{t}.tsv", rows_of(t)) for t in TASKS}
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "pet_mtl.predict", f"checkpoint={calibrated_ckpt}", f"output_dir={out}",
                        *(f"+files.{t}={f}" for t, f in files.items()), "save_scores=true",
                        "progress=false", f"hydra.run.dir={tmp_path / 'log'}"], capture_output=True, text=True,
                       timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert p.returncode == 0, p.stderr[-2000:]
    clf = pet_mtl.Classifier.from_pretrained(calibrated_ckpt, device="auto", batch_size=4)
    assert clf.tasks == list(TASKS) and all(clf.calibrated(t) for t in TASKS)
    moved = 0
    for task, t in TASKS.items():
        written = [json.loads(line) for line in (out / f"{task}_predict.json").read_text().splitlines()]
        scores = [json.loads(line) for line in (out / f"{task}_scores.jsonl").read_text().splitlines()]
        inputs = rows_of(task) if len(t.fields) > 1 else [r[0] for r in rows_of(task)]
        got = clf.predict(task, inputs)
        assert [g["label"] for g in got] == [w["label"] for w in written]
        assert all(g["name"] == t.label_names[g["label"]] for g in got)
        assert all(math.isclose(sum(g["probs"].values()), 1.0, rel_tol=1e-5) for g in got)
        plain = clf.predict(task, inputs, batch_size=1, calibrate=False)
        for g, s in zip(plain, scores):  # uncalibrated: the saved log-probabilities, exponentiated
            assert g["probs"] == pytest.approx({c: math.exp(v) for c, v in s["log_probs"].items()}, abs=1e-6)
            assert g["label"] == max(s["log_probs"], key=s["log_probs"].get)
        moved += sum(a["label"] != b["label"] for a, b in zip(got, plain))
    assert moved > 0  # the biases decided some rows: a classifier that ignored them would fail above


def test_every_input_form_of_a_pair_task_is_the_same_row(clf):
    premise, hypothesis = rows_of("ocnli")[0]
    as_tuple = clf.predict("ocnli", [(premise, hypothesis)])
    assert clf.predict("ocnli", [{"hypothesis": hypothesis, "premise": premise}]) == as_tuple
    assert clf.predict("ocnli", (premise, hypothesis)) == as_tuple  # one pair, not a list of pairs
    assert clf.predict("ocnli", {"premise": premise, "hypothesis": hypothesis}) == as_tuple
    assert clf.predict("tnews", "一条新闻标题")[0]["label"] in clf.labels("tnews")
    assert clf.labels("tnews") == list(TASKS["tnews"].labels) and clf.predict("tnews", []) == []


@pytest.mark.parametrize("task, inputs, expected", [
    ("ocnli", ["只有一句"], "input 0: ocnli takes 2 texts (premise, hypothesis): give a tuple or a dict of them"),
    ("ocnli", [("前提", "假设"), {"premise": "前提"}], "input 1: ocnli takes the fields premise, hypothesis; missing hypothesis"),
    ("ocnli", [{"premise": "a", "hypothesis": "b", "label": "0"}], "unknown label"),
    ("ocnli", [("一", "二", "三")], "input 0: ocnli takes 2 text(s) (premise, hypothesis), found 3"),
    ("tnews", ["好", "  "], "input 1: the title must be a non-empty text"),
    ("tnews", [None], "input 0: expected a text, a tuple or a dict of tnews's fields (title), found NoneType"),
    ("ocemotion", [("开心", 3)], "input 0: ocemotion takes 1 text(s) (text), found 2"),
])
def test_an_input_the_task_does_not_take_is_one_line_naming_it(clf, task, inputs, expected):
    with pytest.raises(InputError) as e:
        clf.predict(task, inputs)
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_what_cannot_work_is_refused_before_anything_is_scored(clf, calibrated_ckpt):
    with pytest.raises(ConfigError, match="task 'cmnli' is not one this model was trained on"):
        clf.predict("cmnli", ["x"])
    with pytest.raises(ConfigError, match="batch_size=0: expected an integer >= 1"):
        clf.predict("tnews", ["x"], batch_size=0)
    with pytest.raises(ConfigError, match="device='tpu': expected auto"):
        pet_mtl.Classifier.from_pretrained(calibrated_ckpt, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="device=cuda, but torch sees no CUDA GPU on this machine"):
            pet_mtl.Classifier.from_pretrained(calibrated_ckpt, device="cuda")
    assert clf.predictor.device.type == ("cuda" if torch.cuda.is_available() else "cpu")  # auto


def test_the_readme_example_runs_as_written(calibrated_ckpt):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Classify from Python", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert code.count('"outputs/2026-11-25/10-00-00"') == 1
    exec(compile(code.replace('"outputs/2026-11-25/10-00-00"', repr(str(calibrated_ckpt))), "README.md", "exec"), {})
