"""The optimizer and schedule every run trains with: which parameters decay, and the learning rate step by step."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from pet_mtl.training.optim import build_optimizer, warmup_linear


def model() -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    m[2].bias.requires_grad_(False)  # a frozen parameter is not the optimizer's
    return m


def test_decay_applies_to_matrices_only_and_frozen_parameters_are_left_out():
    m = model()
    opt = build_optimizer(m, lr=0.1, weight_decay=0.5)
    decayed, plain = ({id(p) for p in g["params"]} for g in opt.param_groups)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.5, 0.0]
    assert decayed == {id(m[0].weight), id(m[2].weight)}
    assert plain == {id(m[0].bias), id(m[1].weight), id(m[1].bias)}  # biases and the LayerNorm gain and bias


def test_a_step_without_gradient_shrinks_only_the_decayed_weights():
    """AdamW's decay is decoupled: with zero gradients a step multiplies decayed weights by (1 - lr x wd) and
    leaves the rest as they were."""
    m = model()
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    opt = build_optimizer(m, lr=0.1, weight_decay=0.5)
    for p in m.parameters():
        if p.requires_grad:
            p.grad = torch.zeros_like(p)
    opt.step()
    for n, p in m.named_parameters():
        expected = before[n] * (1 - 0.1 * 0.5) if n in ("0.weight", "2.weight") else before[n]
        assert torch.allclose(p, expected, atol=1e-7), n


@pytest.mark.parametrize("total,ratio,expected", [
    (10, 0.2, [1 / 3, 2 / 3, 1.0, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8, 0.0]),
    (4, 0.0, [1.0, 3 / 4, 2 / 4, 1 / 4, 0.0]),
])
def test_warmup_then_linear_decay_to_zero(total, ratio, expected):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=2.0)
    schedule = warmup_linear(opt, total, ratio)
    seen = []
    for _ in range(total + 1):
        seen.append(schedule.get_last_lr()[0] / 2.0)
        opt.step()
        schedule.step()
    assert seen == pytest.approx(expected)
