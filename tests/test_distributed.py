"""torchrun with 2 CPU processes (gloo) == one process with grad_accum=2 on the same batch stream.

With dropout off, the only documented difference is float summation order (gradients are averaged by an
all-reduce instead of summed in place), so scores and weights agree to a tight tolerance, not bit for bit.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from conftest import FILLER, KEYS, pattern_texts
from safetensors.torch import load_file

from pet_mtl.backbones.loading import build_tiny


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_with_double_accumulation(synthetic_dir, tmp_path):
    model = tmp_path / "tiny-nodropout"
    build_tiny(model, [FILLER, KEYS] + pattern_texts(), hidden=32, layers=2, heads=2, dropout=0.0)
    common = [f"model.path={model}", f"data.dir={synthetic_dir}", "train.max_steps=10", "train.eval_every=5",
              "train.batch_size=8", "train.lr=3e-3", "train.progress=false", "train.predict_splits=[]",
              "train.plots=false"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    one, two = tmp_path / "one", tmp_path / "two"
    p = subprocess.run([sys.executable, "-m", "pet_mtl.train", *common, "train.grad_accum=2", f"hydra.run.dir={one}"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
                        "--master_addr=127.0.0.1", f"--master_port={free_port()}", "-m", "pet_mtl.train", *common,
                        f"hydra.run.dir={two}"], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-4000:]
    assert "1 process(es)" in (one / "train.log").read_text() and "2 process(es)" in (two / "train.log").read_text()
    a = json.loads((one / "metrics.json").read_text())["history"]
    b = json.loads((two / "metrics.json").read_text())["history"]
    assert [e["step"] for e in a] == [e["step"] for e in b] == [5, 10]
    for x, y in zip(a, b):
        assert x["train_loss"] == pytest.approx(y["train_loss"], abs=1e-4)
        assert abs(x["score"] - y["score"]) <= 0.02  # a near-tie may flip one prediction
    wa = load_file(one / "checkpoint-last" / "model" / "model.safetensors")
    wb = load_file(two / "checkpoint-last" / "model" / "model.safetensors")
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) < 1e-4
    assert not list(two.glob("checkpoint-last/train_state/*.tmp*"))
    state = load_file(two / "checkpoint-last" / "train_state" / "tensors.safetensors")
    assert {"rng.torch.0", "rng.torch.1"} <= set(state)
