"""``none``: plain fine-tuning. No step 2 and no second forward pass."""

from __future__ import annotations

from noise_training.base import PerturbationProvider
from noise_training.registry import ProviderSpec, register_provider


class NoPerturbation(PerturbationProvider):
    def perturb(self, ctx):
        return None


register_provider(ProviderSpec(
    name="none", factory=NoPerturbation, aliases=("fine-tuning",),
    summary="plain fine-tuning, no adversarial term (1 forward + 1 backward per step)",
))
