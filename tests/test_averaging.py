"""The weight average (train.ema): its arithmetic by hand, the swap in and out, and real runs whose trajectory it
never changes."""
from __future__ import annotations

import json

import pytest
import torch
from helpers import make_cfg
from safetensors.torch import load_file
from torch import nn

from pet_mtl.training.algorithms.ema import TRAINED, WeightAverage
from pet_mtl.training.trainer import Trainer


def test_the_average_follows_the_hand_computed_rule_and_swaps_in_and_out():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    frozen = nn.Parameter(torch.ones(1), requires_grad=False)
    model.register_parameter("frozen", frozen)
    avg = WeightAverage(model, decay=0.9)
    assert avg.names == ["weight", "bias"]  # parameters that do not train are not averaged
    expected = [p.detach().clone() for p in (model.weight, model.bias)]
    for step in (1, 2, 3, 50):
        with torch.no_grad():
            model.weight.add_(0.5)
            model.bias.mul_(-2.0)
        avg.update(step)
        d = min(0.9, (1 + step) / (10 + step))  # 2/11, 3/12, 4/13: short while young; then the decay
        expected = [d * e + (1 - d) * p.detach() for e, p in zip(expected, (model.weight, model.bias))]
    assert all(torch.allclose(a, e) for a, e in zip(avg.average, expected))
    trained = [model.weight.detach().clone(), model.bias.detach().clone()]
    with avg.applied():
        assert torch.allclose(model.weight, expected[0]) and torch.allclose(model.bias, expected[1])
        assert torch.equal(avg.trained_tensors()[TRAINED + "weight"], trained[0])
        with pytest.raises(RuntimeError, match="while the average is in the model"):
            avg.update(51)
    assert torch.equal(model.weight, trained[0]) and torch.equal(model.bias, trained[1])  # bit-exact, back


def cfg(tiny_dir, synthetic_dir, *extra):
    return make_cfg(f"model.path={tiny_dir}", f"data.dir={synthetic_dir}", "train.max_steps=6", "train.eval_every=3",
                    "train.batch_size=8", "train.lr=3e-3", "train.progress=false", "train.predict_splits=[]",
                    "train.calibrate=false", *extra)


@pytest.mark.parametrize("method", ["pet", "heads"])
def test_averaging_leaves_the_trajectory_alone_and_reports_what_it_bought(tiny_dir, synthetic_dir, tmp_path, method):
    """The same seed with and without train.ema trains the very same weights; the averaged run evaluates and saves
    the average, and its last evaluation also scores the trained weights: exactly the plain run's score."""
    plain, averaged = tmp_path / "plain", tmp_path / "averaged"
    Trainer(cfg(tiny_dir, synthetic_dir, f"method={method}"), plain).fit()
    Trainer(cfg(tiny_dir, synthetic_dir, f"method={method}", "train.ema=0.5"), averaged).fit()
    a = json.loads((plain / "metrics.json").read_text())["history"]
    b = json.loads((averaged / "metrics.json").read_text())["history"]
    assert [e["step"] for e in b] == [3, 6] and "without_ema" not in b[0]
    assert b[-1]["without_ema"]["score"] == a[-1]["score"]
    assert {t: v["macro_f1"] for t, v in b[-1]["without_ema"]["tasks"].items()} == {
        t: v["macro_f1"] for t, v in a[-1]["tasks"].items()}
    assert [e["train_loss"] for e in a] == [e["train_loss"] for e in b]  # the same trajectory
    trained = load_file(averaged / "checkpoint-last" / "train_state" / "tensors.safetensors")
    plain_w = load_file(plain / "checkpoint-last" / "model" / "model.safetensors")
    avg_w = load_file(averaged / "checkpoint-last" / "model" / "model.safetensors")
    key = "bert.encoder.layer.0.attention.self.query.weight"
    assert torch.equal(trained["ema." + TRAINED + "mlm." + key], plain_w[key])
    assert not torch.allclose(avg_w[key], plain_w[key])  # the checkpoint holds the average


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5, 1.5])
def test_the_average_refuses_a_decay_outside_the_open_unit_interval(decay):
    """The class's own guard (usable without a config): a decay of 1 would never move, 0 would be no average."""
    with pytest.raises(ValueError, match=f"decay {decay}: expected a number in \\(0, 1\\)"):
        WeightAverage(torch.nn.Linear(2, 2), decay)
