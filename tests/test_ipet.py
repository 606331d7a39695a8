"""iPET: label-balanced confident pseudo-labels, never a validation row, and a killed run that resumes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import torch
from helpers import make_cfg

from pet_mtl.data.regimes import load_task_data
from pet_mtl.ipet import balanced_confident, pseudo_labels
from pet_mtl.training.distillation import unlabelled_examples


def test_pseudo_labels_are_the_most_confident_rows_of_each_label_in_equal_numbers():
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.7, 0.3], [0.45, 0.55], [0.99, 0.01]])
    chosen = balanced_confident(list("abcdef"), probs, 4)
    assert chosen == [("f", 0), ("a", 0), ("c", 1), ("e", 1)]
    assert balanced_confident(list("abcdef"), probs, 6) == [("f", 0), ("a", 0), ("d", 0), ("c", 1), ("e", 1)]


def test_pseudo_labels_never_hold_a_validation_row(trained_run, synthetic_dir, tmp_path):
    cfg = make_cfg(f"data.dir={synthetic_dir}", f"data.unlabelled.ocemotion=[{synthetic_dir / 'OCEMOTION_train.csv'}]")
    data = load_task_data(cfg)
    examples = unlabelled_examples(cfg, data)
    files = pseudo_labels(tmp_path, examples, {"ocemotion": 1000}, [trained_run], cfg, 1)
    rows = [json.loads(line) for line in open(files["ocemotion"], encoding="utf-8")]
    n = len(examples["ocemotion"])  # 1000 gold rows x 5: every unlabelled row may be taken
    counts = {}
    for r in rows:
        counts[r["label"]] = counts.get(r["label"], 0) + 1
    assert rows and max(counts.values()) <= n // 7  # label-balanced: at most n // labels per predicted label
    # the oracle: the validation rows the run scores on, as the run loads them (not the exclusion code under test)
    val = data["ocemotion"].val
    source = (synthetic_dir / "OCEMOTION_train.csv").read_text(encoding="utf-8")
    assert val and all(ex.fields["text"] in source for ex in val)  # the unlabelled file holds them all
    assert not {r["content"].strip() for r in rows} & {ex.fields["text"].strip() for ex in val}
    assert not {r["id"] for r in rows} & {ex.id for ex in val}
    assert {r["id"] for r in rows} <= {ex.id for ex in examples["ocemotion"]}


def test_a_killed_ipet_run_resumes_and_keeps_finished_generations(tiny_dir, synthetic_dir, tmp_path):
    out = tmp_path / "ipet"
    cmd = [sys.executable, "-m", "pet_mtl.ipet", f"model.path={tiny_dir}", f"data.dir={synthetic_dir}",
           "tasks=[ocemotion,tnews]", "data.unlabelled.ocemotion=[a,b]", "data.unlabelled.tnews=[a]",
           "ipet.generations=2", 'ipet.variants=["seed=1","seed=2"]', "ipet.scale=0.5", "train.max_steps=3",
           "train.batch_size=8", "train.progress=false", "train.calibrate=false", "train.plots=false", f"hydra.run.dir={out}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    first = out / "gen0" / "model0" / "metrics.json"
    deadline = time.time() + 240
    while not (first.exists() and json.loads(first.read_text()).get("finished")) and time.time() < deadline:
        assert proc.poll() is None, "the iPET command stopped before its first model finished"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "student").exists(), "the run finished before it could be killed"
    kept = first.read_text()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert first.read_text() == kept  # generation 0's first model was not trained again
    assert f"{out / 'gen0' / 'model0'}: finished, kept" in (out / "ipet.log").read_text()
    for j in (0, 1):
        pseudo = out / "gen1" / f"model{j}" / "pseudo-ocemotion.jsonl"
        assert pseudo.is_file()
        assert "pseudo-labelled rows from" in (out / "gen1" / f"model{j}" / "train.log").read_text()
    student = json.loads((out / "student" / "metrics.json").read_text())
    assert student["finished"] and (out / "student" / "soft_labels.json").is_file()
    teachers = json.loads((out / "student" / "soft_labels.json").read_text())["key"]["teachers"]
    assert teachers == [str(out / "gen1" / f"model{j}" / "checkpoint-best") for j in (0, 1)]
