"""Task and adversarial losses, looked up by the names used in task definitions.

Both are computed in float32 even under mixed precision: the symmetric KL between two
nearly equal distributions is a difference of small numbers, which half precision ruins.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
    return F.cross_entropy(logits.float(), labels, reduction=reduction)


def symmetric_kl(logits: torch.Tensor, adv_logits: torch.Tensor, *, reduction: str = "batchmean") -> torch.Tensor:
    """KL(p || p_adv) + KL(p_adv || p), as MT-DNN's ``SymKlCriterion``.

    In each direction the target distribution is detached and the gradient flows through the
    log-probabilities, so both predictions receive gradient (once each).
    """
    logits, adv_logits = logits.float(), adv_logits.float()
    forward = F.kl_div(
        F.log_softmax(adv_logits, dim=-1), F.softmax(logits.detach(), dim=-1), reduction=reduction
    )
    backward = F.kl_div(
        F.log_softmax(logits, dim=-1), F.softmax(adv_logits.detach(), dim=-1), reduction=reduction
    )
    return forward + backward


TASK_LOSSES = {"cross_entropy": cross_entropy}
ADV_LOSSES = {"symmetric_kl": symmetric_kl}
