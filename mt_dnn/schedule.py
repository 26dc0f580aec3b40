"""Learning-rate schedule: linear warm-up from 0 over the first share of updates, then linear decay to 0.

This is MT-DNN's ``warmup_linear`` schedule (the paper: warm-up over the first 10% of steps).
"""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_linear_factor(step: int, *, total_steps: int, warmup_steps: int) -> float:
    """Multiplier of the base learning rate before update ``step`` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return step / warmup_steps
    remaining = total_steps - step
    return max(0.0, remaining / max(1, total_steps - warmup_steps))


def warmup_steps_for(*, total_steps: int, warmup: float) -> int:
    return int(round(total_steps * warmup))


def build_scheduler(*, optimizer: Optimizer, total_steps: int, warmup: float) -> LambdaLR:
    warmup_steps = warmup_steps_for(total_steps=total_steps, warmup=warmup)
    return LambdaLR(
        optimizer,
        lambda step: warmup_linear_factor(step, total_steps=total_steps, warmup_steps=warmup_steps),
    )
