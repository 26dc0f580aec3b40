"""Noise on part of the tokens (paper Experiment 2): ``2-1``, ``2-2``, ``2-3``.

The 1-1 noise, applied to ``noise_ratio`` (15%) of each example's perturbable tokens:
chosen at random (2-1), with the highest saliency (2-2) or the lowest (2-3). Saliency is
Σ_d |∂ step-1 loss / ∂ token embedding| (the trainer computes it once per step).

Count per example: round(noise_ratio · n) with halves rounded up, at least one token, where
n counts the example's perturbable tokens only (never padding or special tokens).
"""

from __future__ import annotations

import torch

from noise_training.base import StepContext
from noise_training.options import ADV_ALPHA, NOISE_RATIO, NOISE_SIZE
from noise_training.providers.similar_word import SimilarWordNoise
from noise_training.registry import ProviderSpec, register_provider


def tokens_to_change(*, perturbable: torch.Tensor, ratio: float) -> torch.Tensor:
    """How many tokens of each example get noise: round-half-up(ratio · n), at least 1 (if n ≥ 1)."""
    n = perturbable.sum(dim=1)
    count = torch.floor(n.to(torch.float64) * ratio + 0.5).long()
    return torch.minimum(count.clamp_min(1), n)


def select_top(*, scores: torch.Tensor, perturbable: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Per row, the ``count`` perturbable positions with the highest score (ties: the earlier position)."""
    masked = scores.float().masked_fill(~perturbable, float("-inf"))
    order = torch.argsort(masked, dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return (rank < count.unsqueeze(1)) & perturbable


class PartialNoise(SimilarWordNoise):
    def __init__(self, *, options, model, tokenizer, cache_dir) -> None:
        super().__init__(options=options, model=model, tokenizer=tokenizer, cache_dir=cache_dir)
        self.selection = options["selection"]
        self.ratio = float(options["noise_ratio"])
        self.needs_saliency = self.selection in ("high_saliency", "low_saliency")
        # Random selection needs nothing from step 1; saliency is step 1's gradient.
        self.depends_on_step1 = self.needs_saliency

    def positions_to_change(self, ctx: StepContext) -> torch.Tensor:
        count = tokens_to_change(perturbable=ctx.perturbable_mask, ratio=self.ratio)
        if self.selection == "random":
            scores = torch.rand(ctx.perturbable_mask.shape, device=ctx.perturbable_mask.device)
        elif self.selection == "high_saliency":
            scores = ctx.saliency
        else:
            scores = -ctx.saliency
        return select_top(scores=scores, perturbable=ctx.perturbable_mask, count=count)


_OPTIONS = (NOISE_SIZE, NOISE_RATIO, ADV_ALPHA)
register_provider(ProviderSpec(
    name="2-1", factory=PartialNoise, aliases=("partial-random",), options=_OPTIONS,
    fixed={"sampling": "top1", "selection": "random"},
    summary="1-1 noise on 15% of each example's tokens, chosen at random",
))
register_provider(ProviderSpec(
    name="2-2", factory=PartialNoise, aliases=("partial-high-saliency",), options=_OPTIONS,
    fixed={"sampling": "top1", "selection": "high_saliency"},
    summary="1-1 noise on the 15% of tokens with the highest saliency |dL/dE|",
))
register_provider(ProviderSpec(
    name="2-3", factory=PartialNoise, aliases=("partial-low-saliency",), options=_OPTIONS,
    fixed={"sampling": "top1", "selection": "low_saliency"},
    summary="1-1 noise on the 15% of tokens with the lowest saliency |dL/dE|",
))
