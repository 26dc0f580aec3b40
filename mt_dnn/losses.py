"""Task and adversarial losses, looked up by the names used in task definitions.

Both are computed in float32 (or float64 for a float64 model) even under mixed precision: the symmetric KL between two
nearly equal distributions is a difference of small numbers, which half precision ruins.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    """Half precision up to float32; float32 and float64 as they are."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
    return F.cross_entropy(at_least_float32(logits), labels, reduction=reduction)


def symmetric_kl(logits: torch.Tensor, adv_logits: torch.Tensor, *, reduction: str = "batchmean") -> torch.Tensor:
    """KL(p || p_adv) + KL(p_adv || p), as MT-DNN's ``SymKlCriterion``.

    In each direction the target distribution is detached and the gradient flows through the
    log-probabilities, so both predictions receive gradient (once each).
    """
    logits, adv_logits = at_least_float32(logits), at_least_float32(adv_logits)
    forward = F.kl_div(
        F.log_softmax(adv_logits, dim=-1), F.softmax(logits.detach(), dim=-1), reduction=reduction
    )
    backward = F.kl_div(
        F.log_softmax(logits, dim=-1), F.softmax(adv_logits.detach(), dim=-1), reduction=reduction
    )
    return forward + backward


TASK_LOSSES = {"cross_entropy": cross_entropy}
ADV_LOSSES = {"symmetric_kl": symmetric_kl}
