"""``1-1_random``: 1-1's noise size per token, in a uniformly random direction.

A control for the paper's claim that noise *toward a similar word* is what helps: 1-1's noise
is 30-40% of a token embedding's norm, and no other method here trains with noise of that size
in a direction unrelated to similar words. For every position 1-1 would change (every
perturbable token: never special tokens or padding), the noise has exactly 1-1's L2 norm,
noise_size · ‖E_similar − E‖, along g / ‖g‖ with g ~ N(0, I_d): a direction uniform on the
sphere, drawn anew per occurrence and per step. Its changed share and noise share therefore
equal 1-1's on the same batch; only the direction differs. Same term (α · symmetric KL), same
cost as 1-1 (one table gather, a Gaussian draw, one fused [clean; perturbed] pass).
"""

from __future__ import annotations

import torch

from noise_training.options import ADV_ALPHA, NOISE_SIZE
from noise_training.providers.similar_word import SimilarWordNoise
from noise_training.registry import ProviderSpec, register_provider


@torch.no_grad()
def random_direction_like(delta: torch.Tensor) -> torch.Tensor:
    """‖delta‖₂ per token along a uniformly random direction (a normalised Gaussian vector), detached."""
    wide = torch.promote_types(delta.dtype, torch.float32)  # half precision up for the norms
    direction = torch.randn(delta.shape, dtype=wide, device=delta.device)
    scale = delta.to(wide).norm(dim=-1, keepdim=True) / direction.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    return direction.mul_(scale).to(delta.dtype)


class RandomDirectionNoise(SimilarWordNoise):
    """1-1's per-token noise norm, random direction (the neighbour table gives only the size)."""

    def direct(self, delta: torch.Tensor) -> torch.Tensor:
        # zero where 1-1 changes nothing (its delta is 0 there), so specials and padding stay as they are
        return random_direction_like(delta)


register_provider(ProviderSpec(
    name="1-1_random", factory=RandomDirectionNoise, aliases=("random-direction",), options=(NOISE_SIZE, ADV_ALPHA),
    fixed={"sampling": "top1"},
    summary="control: 1-1's noise norm on the same tokens, in a uniformly random direction",
))
