"""The real entry points, end to end, in subprocesses: what a user types."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pet_mtl.core.tasks import TASKS

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """`python -m pet_mtl.train` on the embedded default (demo data, tiny model), capped to a few steps."""
    cwd = tmp_path_factory.mktemp("cli")
    run_dir = cwd / "run"
    p = run("pet_mtl.train", "train.max_steps=4", "train.eval_every=2", "train.progress=false",
            "train.predict_splits=[a,b]", f"hydra.run.dir={run_dir}", cwd=cwd)
    assert p.returncode == 0, p.stderr[-3000:]
    return run_dir, p


def test_train_entry_point_writes_metrics_checkpoint_log_and_submissions(demo_run):
    run_dir, p = demo_run
    metrics = json.loads((run_dir / "metrics.json").read_text())["history"]
    assert [e["step"] for e in metrics] == [2, 4]
    for e in metrics:
        assert set(e["tasks"]) == set(TASKS) and 0 <= e["score"] <= 1
        assert all({"macro_f1", "accuracy"} <= set(s) for s in e["tasks"].values())
    assert (run_dir / "checkpoint-best" / "pet_mtl.json").is_file()
    assert (run_dir / "train.log").read_text().count("mean macro-F1") == 2
    assert "calibration (validation macro-F1, 2-fold cross-fitted) | ocnli" in (run_dir / "train.log").read_text()
    assert (run_dir / "checkpoint-best" / "calibration.json").is_file()
    assert "max_steps: 4" in (run_dir / "checkpoint-best" / "config.yaml").read_text()
    for split in ("a", "b"):
        assert zipfile.ZipFile(run_dir / f"submission-{split}" / "submit.zip").testzip() is None
    assert f"run directory:   {run_dir}" in p.stdout and "submission (b):" in p.stdout
    calibrated = json.loads((run_dir / "metrics.json").read_text())["calibration"]
    mean = sum(r["cross_fitted"] if r["applied"] else r["before"] for r in calibrated.values()) / len(calibrated)
    assert f"; mean {mean:.4f} (predict's decisions: the biases of checkpoint-best/calibration.json" in p.stdout
    # the model card beside the weights: what made it, and its argmax and calibrated validation scores
    card = (run_dir / "checkpoint-best" / "README.md").read_text(encoding="utf-8")
    best = json.loads((run_dir / "metrics.json").read_text())["best"]
    assert card.startswith("# pet_mtl pet classifier: ocnli, ocemotion, tnews")
    assert "- made by: `python -m pet_mtl.train train.max_steps=4 train.eval_every=2 train.progress=false" in card
    assert f"| mean | {best['score']:.4f} | {mean:.4f} |" in card and "tiny random BERT" in card


def test_predict_entry_point_preserves_ids_and_order(demo_run, tmp_path):
    run_dir, _ = demo_run
    out = tmp_path / "sub"
    p = run("pet_mtl.predict", f"checkpoint={run_dir}", f"data.dir={DEMO}", "split=b", f"output_dir={out}",
            cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"submission: {out / 'submit.zip'}" in p.stdout
    for task, t in TASKS.items():
        ids = [line.split("\t")[0] for line in (DEMO / t.files["b"]).read_text(encoding="utf-8").splitlines()]
        rows = [json.loads(x) for x in (out / f"{task}_predict.json").read_text(encoding="utf-8").splitlines()]
        assert [r["id"] for r in rows] == ids and all(r["label"] in t.labels for r in rows)


def test_predict_writes_beside_the_checkpoint_and_nothing_else(demo_run, tmp_path):
    run_dir, _ = demo_run
    p = run("pet_mtl.predict", f"checkpoint={run_dir}", "split=b", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    out = run_dir / "predict-b"
    assert f"submission: {out / 'submit.zip'}" in p.stdout
    assert sorted(x.name for x in out.iterdir()) == sorted([f"{t}_predict.json" for t in TASKS] + ["submit.zip"])
    assert list(tmp_path.iterdir()) == []  # no Hydra run folder, no log file in the working directory
    assert "predicting test split b: ocnli: " in p.stderr + p.stdout and "ocnli_test_B.csv" in p.stderr + p.stdout
    bad = run("pet_mtl.predict", f"checkpoint={run_dir}", "batch_size=0", cwd=tmp_path)
    assert bad.returncode == 2 and "batch_size=0: expected a number >= 1" in bad.stderr


def test_help_and_cfg_job_show_the_config_tree(tmp_path):
    p = run("pet_mtl.train", "--cfg", "job", "train.lr=0.5", "patterns=ensemble", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "lr: 0.5" in p.stdout and "ocemotion/mood.j2" in p.stdout and "model:" in p.stdout
    h = run("pet_mtl.train", "--help", cwd=tmp_path)
    assert h.returncode == 0 and "patterns: alt, causal, causal_noprefix, default, ensemble" in h.stdout


def test_unknown_key_and_bad_type_are_rejected_before_training(tmp_path):
    p = run("pet_mtl.train", "train.bacth_size=8", cwd=tmp_path)
    assert p.returncode != 0 and "bacth_size" in p.stderr
    p = run("pet_mtl.train", "train.lr=fast", cwd=tmp_path)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert p.stderr == "error: train.lr=fast: train.lr takes a number, not 'fast'\n"  # tests/test_console.py: more


def test_bad_data_gives_one_clear_line_and_exit_2(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for t in TASKS.values():
        (data / t.files["train"]).write_text((DEMO / t.files["train"]).read_text(encoding="utf-8"), encoding="utf-8")
    with open(data / "TNEWS_train.csv", "a", encoding="utf-8") as fh:
        fh.write("99\t一个标题\t999\n")
    p = run("pet_mtl.train", f"data.dir={data}", "train.predict_splits=[]", f"hydra.run.dir={tmp_path / 'r'}",
            cwd=tmp_path)
    assert p.returncode == 2
    assert f"error: {data / 'TNEWS_train.csv'}:46: label '999' is not a tnews label" in p.stderr
    assert "Traceback" not in p.stderr


def test_config_errors_stop_before_training_and_name_the_fix(tmp_path):
    p = run("pet_mtl.train", "tasks=[ocnli,cmnli]", f"hydra.run.dir={tmp_path / 'r1'}", cwd=tmp_path)
    assert p.returncode == 2 and "unknown task 'cmnli'; known tasks: ocnli, ocemotion, tnews" in p.stderr
    p = run("pet_mtl.train", "patterns.tnews=[tnews/nope.j2]", f"hydra.run.dir={tmp_path / 'r2'}", cwd=tmp_path)
    assert p.returncode == 2 and "nope.j2 not found" in p.stderr
    assert not (tmp_path / "r2" / "metrics.json").exists()


def test_multirun_sweeps_pattern_sets(tmp_path):
    sweep = tmp_path / "sweep"
    p = run("pet_mtl.train", "-m", "patterns=default,alt", "train.max_steps=1", "train.predict_splits=[]",
            "train.progress=false", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    for job, template in (("0", "tnews/topic.j2"), ("1", "tnews/about.j2")):
        assert json.loads((sweep / job / "metrics.json").read_text())["history"][-1]["step"] == 1
        assert template in (sweep / job / "checkpoint-best" / "config.yaml").read_text()
