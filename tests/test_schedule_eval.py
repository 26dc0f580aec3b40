"""The warm-up schedule's shape, pooled accuracy, the losses, and the optimiser's parameter groups."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from mt_dnn.evaluation import pooled_accuracy
from mt_dnn.losses import symmetric_kl
from mt_dnn.schedule import build_scheduler, warmup_linear_factor


def test_warmup_then_linear_decay():
    factors = [warmup_linear_factor(s, total_steps=100, warmup_steps=10) for s in range(101)]
    assert factors[0] == 0.0 and factors[5] == pytest.approx(0.5) and factors[10] == pytest.approx(1.0)
    assert factors[55] == pytest.approx(0.5) and factors[100] == 0.0
    assert all(a <= b for a, b in zip(factors[:10], factors[1:11]))  # rising
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))  # falling


def test_scheduler_drives_the_learning_rate():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=2e-5)
    scheduler = build_scheduler(optimizer=optimizer, total_steps=20, warmup=0.1)
    seen = []
    for _ in range(20):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen[0] == 0.0 and seen[2] == pytest.approx(2e-5) and seen[-1] == pytest.approx(2e-5 / 18)


def test_pooled_accuracy_is_size_weighted():
    # the paper's example: 55.8 / 46.0 / 45.4 on 1000 / 1000 / 1200 examples -> 48.8 ("All")
    rounds = [{"accuracy": 0.558, "examples": 1000}, {"accuracy": 0.460, "examples": 1000},
              {"accuracy": 0.454, "examples": 1200}]
    pooled = pooled_accuracy(rounds)
    assert round(100 * pooled["accuracy"], 1) == 48.8 and pooled["examples"] == 3200
    assert round(100 * sum(r["accuracy"] for r in rounds) / 3, 1) == 49.1  # the unweighted mean differs


@pytest.mark.numerics
def test_symmetric_kl_value_and_gradients_reach_both_sides():
    a = torch.tensor([[2.0, 0.5, -1.0]], requires_grad=True)
    b = torch.tensor([[1.0, 1.0, 0.0]], requires_grad=True)
    p, q = a.softmax(-1), b.softmax(-1)
    expected = (p * (p / q).log()).sum() + (q * (q / p).log()).sum()
    loss = symmetric_kl(a, b)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0
    assert symmetric_kl(a.half(), b.half()).dtype == torch.float32
    assert math.isclose(symmetric_kl(a, a).item(), 0.0, abs_tol=1e-7)


def test_no_weight_decay_on_biases_and_norms():
    from mt_dnn.trainer import build_optimizer

    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.LayerNorm(3))
    optimizer = build_optimizer(model, learning_rate=1e-3, weight_decay=0.01)
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 0.01 and len(decayed["params"]) == 1
    assert plain["weight_decay"] == 0.0 and len(plain["params"]) == 3


def test_the_fused_optimizer_makes_the_per_tensor_loops_update():
    from mt_dnn.trainer import build_optimizer

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 3))
    reference, initial = copy.deepcopy(model), copy.deepcopy(model)
    fused = build_optimizer(model, learning_rate=1e-2, weight_decay=0.01)
    assert fused.param_groups[0]["fused"]  # CPU has the fused kernel (torch >= 2.4)
    loop = torch.optim.AdamW([{"params": [p for p in reference.parameters() if p.ndim >= 2], "weight_decay": 0.01},
                              {"params": [p for p in reference.parameters() if p.ndim < 2], "weight_decay": 0.0}],
                             lr=1e-2, foreach=False)
    x = torch.randn(16, 8)
    for _ in range(5):
        for net, optimizer in ((model, fused), (reference, loop)):
            net(x).square().mean().backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    difference = max((a - b).abs().max().item() for a, b in zip(model.parameters(), reference.parameters()))
    moved = min((a - b).abs().max().item() for a, b in zip(model.parameters(), initial.parameters()))
    assert difference < 1e-6 < 1e-3 < moved, (difference, moved)
