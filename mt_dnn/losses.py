"""Task and adversarial losses, looked up by the names used in task definitions.

``mse`` serves regression (STS-B) in both roles, as MT-DNN's ``MseCriterion``: the task loss
between the head's single output and the score, and the adversarial term between the clean
and the perturbed predictions (a symmetric KL over one output would be identically zero).

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


def mse(predictions: torch.Tensor, labels: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
    """Squared error between a regression head's output [B, 1] and the scores [B]."""
    predictions = at_least_float32(predictions).squeeze(-1)
    return F.mse_loss(predictions, labels.to(predictions.dtype), reduction=reduction)


def mse_adv(logits: torch.Tensor, adv_logits: torch.Tensor, *, reduction: str = "batchmean") -> torch.Tensor:
    """Squared error between the clean and the perturbed outputs, summed over outputs.

    Neither side is detached (as MT-DNN's ``MseCriterion(logits, adv_logits)``): both
    predictions receive gradient, as with ``symmetric_kl``. ``batchmean`` divides the sum by
    the batch size, ``sum`` does not (the ascent of the SMART providers uses ``sum``).
    """
    squared = (at_least_float32(logits) - at_least_float32(adv_logits)).pow(2)
    if reduction == "sum":
        return squared.sum()
    if reduction == "batchmean":
        return squared.sum() / max(1, squared.shape[0])
    if reduction == "mean":
        return squared.mean()
    raise ValueError(f"reduction: expected sum, batchmean or mean, got {reduction!r}")


TASK_LOSSES = {"cross_entropy": cross_entropy, "mse": mse}
ADV_LOSSES = {"symmetric_kl": symmetric_kl, "mse": mse_adv}
