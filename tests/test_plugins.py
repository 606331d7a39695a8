"""The trainer's plug-ins: a toy objective and a toy algorithm, each registered in one call (as the toy method is),
run by the real loop; an algorithm's state is saved under its name and restored on resume; plug-ins that cannot
work with a run refuse it themselves."""
from __future__ import annotations

import json

import pytest
import torch
from helpers import make_cfg
from safetensors.torch import load_file

from pet_mtl.core.errors import ConfigError
from pet_mtl.training.algorithms import ALGORITHMS, register_algorithm
from pet_mtl.training.algorithms.aux_mlm import AuxiliaryMLM
from pet_mtl.training.objectives import OBJECTIVES, register_objective
from pet_mtl.training.plugins import Algorithm, Objective
from pet_mtl.training.trainer import Trainer


class PlusTen(Objective):
    """The inner loss plus a constant: the reported loss moves by 10, the gradient not at all."""

    def __init__(self, inner: Objective):
        self.inner = inner

    def prepare(self, batch):
        return self.inner.prepare(batch)

    def loss(self, output, batch):
        return self.inner.loss(output, batch) + 10.0


class StepCounter(Algorithm):
    """Counts optimizer steps (state: a tensor and a JSON number) and reports the count at each evaluation."""

    name = "step_counter"

    def __init__(self):
        self.steps = 0

    def after_step(self, run):
        self.steps += 1

    def before_evaluation(self, run):
        return {"counted_steps": self.steps}

    def state_dict(self):
        return {"count": torch.tensor([self.steps])}, {"steps": self.steps}

    def load_state_dict(self, tensors, state):
        assert int(tensors["count"]) == state["steps"]
        self.steps = state["steps"]


@pytest.fixture
def registered():
    register_objective("plus_ten", lambda cfg, inner: PlusTen(inner))
    register_algorithm("step_counter", lambda run: StepCounter())
    yield
    del OBJECTIVES["plus_ten"], ALGORITHMS["step_counter"]


def overrides(tiny_dir, synthetic_dir, *extra):
    return [f"model.path={tiny_dir}", f"data.dir={synthetic_dir}", "train.batch_size=8", "train.progress=false",
            "train.predict_splits=[]", "train.calibrate=false", "train.eval_every=2", *extra]


def test_a_toy_objective_and_algorithm_run_in_the_real_loop(registered, tiny_dir, synthetic_dir, tmp_path):
    run = Trainer(make_cfg(*overrides(tiny_dir, synthetic_dir, "train.max_steps=4")), tmp_path / "toy")
    assert isinstance(run.objective, PlusTen) and any(isinstance(a, StepCounter) for a in run.algorithms)
    run.fit()
    history = json.loads((tmp_path / "toy" / "metrics.json").read_text())["history"]
    assert [e["counted_steps"] for e in history] == [2, 4]
    assert all(e["train_loss"] > 10 for e in history)
    tensors = load_file(tmp_path / "toy" / "checkpoint-last" / "train_state" / "tensors.safetensors")
    state = json.loads((tmp_path / "toy" / "checkpoint-last" / "train_state" / "state.json").read_text())
    assert int(tensors["step_counter.count"]) == 4 and state["algorithms"]["step_counter"] == {"steps": 4}

    resumed = Trainer(make_cfg(*overrides(tiny_dir, synthetic_dir, "train.max_steps=6", "train.resume=true",
                                          "train.resume_changes=[train.max_steps]")), tmp_path / "toy")
    resumed.fit()
    history = json.loads((tmp_path / "toy" / "metrics.json").read_text())["history"]
    assert [e["counted_steps"] for e in history] == [2, 4, 6]  # the count came back from checkpoint-last


def test_a_constant_in_the_objective_leaves_the_weights_alone(registered, tiny_dir, synthetic_dir, tmp_path):
    with_toy = Trainer(make_cfg(*overrides(tiny_dir, synthetic_dir, "train.max_steps=3")), tmp_path / "a")
    with_toy.fit()
    del OBJECTIVES["plus_ten"]
    plain = Trainer(make_cfg(*overrides(tiny_dir, synthetic_dir, "train.max_steps=3")), tmp_path / "b")
    plain.fit()
    register_objective("plus_ten", lambda cfg, inner: PlusTen(inner))  # for the fixture's clean-up
    a, b = with_toy.model.state_dict(), plain.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_saved_without_an_algorithm_is_not_resumed_with_it(tiny_dir, synthetic_dir, tmp_path):
    Trainer(make_cfg(*overrides(tiny_dir, synthetic_dir, "train.max_steps=2")), tmp_path).fit()
    register_algorithm("step_counter", lambda run: StepCounter())
    try:
        resumed = Trainer(make_cfg(*overrides(tiny_dir, synthetic_dir, "train.max_steps=4", "train.resume=true",
                                              "train.resume_changes=[train.max_steps]")), tmp_path)
        with pytest.raises(ConfigError, match="holds no state of step_counter"):
            resumed.fit()
    finally:
        del ALGORITHMS["step_counter"]


def test_the_auxiliary_mlm_refuses_several_processes_itself(tiny_dir, synthetic_dir, tmp_path):
    run = Trainer(make_cfg(*overrides(tiny_dir, synthetic_dir, "train.max_steps=1")), tmp_path)
    cfg = make_cfg(*overrides(tiny_dir, synthetic_dir, "train.mlm_weight=0.1", "data.unlabelled.tnews=[a]"))
    with pytest.raises(ConfigError, match="outside DistributedDataParallel"):
        AuxiliaryMLM(cfg, run.data, run.tokenizer, run.model.mlm, world=2)
    assert AuxiliaryMLM(cfg, run.data, run.tokenizer, run.model.mlm, world=1).weight == 0.1


def test_early_stopping_ends_the_run_after_patience_evaluations_without_a_better_score(tiny_dir, synthetic_dir,
                                                                                         tmp_path):
    """A learning rate too small to move any decision: the second evaluation ties the first, which is no better, so
    train.patience=1 ends the run there, 28 steps early; checkpoint-best is the first evaluation's."""
    cfg = make_cfg(f"model.path={tiny_dir}", f"data.dir={synthetic_dir}", "train.max_steps=30", "train.eval_every=1",
                   "train.batch_size=8", "train.lr=1e-12", "train.patience=1", "train.progress=false",
                   "train.predict_splits=[]", "train.calibrate=false")
    summary = Trainer(cfg, tmp_path / "run").fit()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [e["step"] for e in metrics["history"]] == [1, 2] and metrics["finished"]
    assert metrics["stopped_early"] == {"step": 2, "best_step": 1, "patience": 1}
    assert summary["best"]["step"] == 1
    assert json.loads((tmp_path / "run" / "checkpoint-best" / "pet_mtl.json").read_text())["step"] == 1
    with pytest.raises(ConfigError, match="train.patience=0"):
        Trainer(make_cfg(f"model.path={tiny_dir}", f"data.dir={synthetic_dir}", "train.patience=0"), tmp_path / "x")
