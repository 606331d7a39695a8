"""A run stopped (Ctrl-C, or killed in the middle of a step) and resumed with train.resume=true ends exactly like an
uninterrupted run."""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys

import pytest
import torch
from helpers import make_cfg, run_and_interrupt, write_soft_patterns
from safetensors.torch import load_file

TIMING = {"train_seconds", "eval_seconds", "train_examples_per_s"}


def cmd(tiny_dir, data_dir, run_dir, *extra):
    return [sys.executable, "-m", "pet_mtl.train", f"model.path={tiny_dir}", f"data.dir={data_dir}",
            "train.max_steps=60", "train.eval_every=5", "train.batch_size=8", "train.lr=3e-3", "train.progress=false",
            "train.predict_splits=[]", "train.plots=false", f"hydra.run.dir={run_dir}", *extra]


def without_timing(history):
    return [{k: v for k, v in e.items() if k not in TIMING} for e in history]


def test_ctrl_c_saves_its_step_and_the_run_directory_alone_resumes_it_exactly(tiny_dir, synthetic_dir, tmp_path):
    """SIGINT between two evaluations: the step it lands in is finished and saved, the process exits 130 with one
    line naming the command that goes on; that command (the run directory and train.resume=true, nothing else)
    ends the run as if it had never stopped: the same losses, scores, weights, optimizer moments and RNG state."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    full, stopped = tmp_path / "full", tmp_path / "stopped"
    subprocess.run(cmd(tiny_dir, synthetic_dir, full), check=True, env=env, capture_output=True, timeout=300)

    log = stopped / "train.log"
    code, err = run_and_interrupt(cmd(tiny_dir, synthetic_dir, stopped, "train.log_every=1"), env, log, "step 7/60")
    assert code == 130, err[-2000:]
    step = json.loads((stopped / "checkpoint-last" / "pet_mtl.json").read_text())["step"]
    resume = f"python -m pet_mtl.train hydra.run.dir={stopped} train.resume=true"
    assert err.splitlines()[-1] == (f"error: interrupted at step {step} of 60: checkpoint-last holds step {step}; "
                                    f"go on with: {resume}"), err[-2000:]
    assert 7 <= step < 60 and "Traceback" not in err and err.count("interrupted at step") == 1
    record = (stopped / ".hydra" / "overrides.yaml").read_text()

    p = subprocess.run([sys.executable, *resume.split()[1:]], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert f"resumed from {stopped / 'checkpoint-last'} at step {step}" in log.read_text()
    # the run's record: the overrides that made it, then what the resume added (the next resume starts from these)
    assert (stopped / ".hydra" / "overrides.yaml").read_text() == record + "- train.resume=true\n"

    a = json.loads((full / "metrics.json").read_text())["history"]
    b = json.loads((stopped / "metrics.json").read_text())["history"]
    assert [e["step"] for e in b] == list(range(5, 61, 5))
    assert without_timing(a) == without_timing(b)  # bit-identical losses and scores
    wa = load_file(full / "checkpoint-last" / "model" / "model.safetensors")
    wb = load_file(stopped / "checkpoint-last" / "model" / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    sa = load_file(full / "checkpoint-last" / "train_state" / "tensors.safetensors")
    sb = load_file(stopped / "checkpoint-last" / "train_state" / "tensors.safetensors")
    assert all(torch.equal(sa[k], sb[k]) for k in sa)  # optimizer moments and RNG state too


def test_resume_without_a_checkpoint_says_how(tiny_dir, synthetic_dir, tmp_path):
    p = subprocess.run(cmd(tiny_dir, synthetic_dir, tmp_path / "new", "train.resume=true"), capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 2 and "train.resume=true but" in p.stderr and "hydra.run.dir" in p.stderr


class Killed(Exception):
    pass


@pytest.mark.parametrize("options", [["train.batch_tasks=mixed"],
                                     ["train.mlm_weight=0.5", "data.unlabelled.tnews=[a,b]", "train.mlm_batch_size=2"],
                                     ["distill.teachers=[{teacher}]", "data.unlabelled.tnews=[a,b]",
                                      "data.unlabelled.ocnli=[a]"], ["train.ema=0.8"], ["model.lora.r=4"],
                                     ["pattern_roots=[{soft_root}]", "patterns={soft_set}", "train.prompt_lr=1e-2",
                                      "model.prompt_encoder=lstm"]],
                         ids=["mixed-task-batches", "auxiliary-mlm", "distillation", "weight-average", "lora",
                              "soft-prompts"])
def test_other_batch_streams_resume_exactly(tiny_dir, synthetic_dir, trained_run, tmp_path, options):
    """Mixed-task batches (the default is single-task), the auxiliary MLM's unlabelled stream, distillation's soft
    rows and the weight average (trained weights in the state, the average in the checkpoint) keep the exact-resume
    guarantee: stopped in the middle of step 5 (as a kill would leave it: checkpoint-last at step 4) and resumed,
    the run ends as an uninterrupted one."""
    from pet_mtl.training.algorithms import ALGORITHMS, register_algorithm
    from pet_mtl.training.plugins import Algorithm
    from pet_mtl.training.trainer import Trainer

    soft_root = tmp_path / "soft-patterns"
    fill = {"{teacher}": str(trained_run), "{soft_root}": str(soft_root), "{soft_set}": write_soft_patterns(soft_root)}

    def cfg(*extra):
        filled = [functools.reduce(lambda o, kv: o.replace(*kv), fill.items(), o) for o in options]
        return make_cfg(f"model.path={tiny_dir}", f"data.dir={synthetic_dir}", *filled,
                        "train.max_steps=8", "train.eval_every=4", "train.batch_size=8", "train.lr=3e-3",
                        "train.progress=false", "train.predict_splits=[]", "train.calibrate=false", *extra)

    class KilledInStepFive(Algorithm):  # a plug-in: the loop's own events, no private method overridden
        name = "kill"

        def after_step(self, run):
            if run.state.step == 4:  # the fifth step is being taken; checkpoint-last holds step 4
                raise Killed

    full, killed = tmp_path / "full", tmp_path / "killed"
    Trainer(cfg(), full).fit()
    register_algorithm("kill", lambda run: KilledInStepFive())
    try:
        with pytest.raises(Killed):
            Trainer(cfg(), killed).fit()
    finally:
        del ALGORITHMS["kill"]
    Trainer(cfg("train.resume=true"), killed).fit()
    a = json.loads((full / "metrics.json").read_text())["history"]
    b = json.loads((killed / "metrics.json").read_text())["history"]
    assert without_timing(a) == without_timing(b) and [e["step"] for e in a] == [4, 8]
    weights = "adapter.safetensors" if "model.lora.r=4" in options else "model/model.safetensors"
    wa = load_file(full / "checkpoint-last" / weights)
    wb = load_file(killed / "checkpoint-last" / weights)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    if "patterns={soft_set}" in options:  # the learned tokens are the method's: method.safetensors
        pa = load_file(full / "checkpoint-last" / "method.safetensors")
        pb = load_file(killed / "checkpoint-last" / "method.safetensors")
        assert "prompts.weight" in pa and any(k.startswith("prompts.encoder.lstm") for k in pa)  # P-tuning's encoder
        assert pa.keys() == pb.keys() and all(torch.equal(pa[k], pb[k]) for k in pa)
