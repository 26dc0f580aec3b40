"""``neftune``: NEFTune (Jain et al., 2023, "NEFTune: Noisy Embeddings Improve Instruction Finetuning").

A control for the paper's claim: what a Hugging Face user would pick instead (it is built into
``transformers.Trainer`` as ``TrainingArguments(neftune_noise_alpha=...)`` and into TRL). Uniform
noise on the token embeddings at the cost of plain fine-tuning: no second pass, no extra term.

As transformers computes it (``transformers/integrations/neftune.py``,
``neftune_post_forward_hook``), during training only: token embeddings + Uniform(−m, m) with
m = α / sqrt(L · d), L the batch's padded length and d the hidden size, at every position
(special tokens and padding included), drawn from the default generator; α =
``--neftune_noise_alpha`` (default 5; the paper uses 5, 10 and 15). The bound and the draw are
the hook's own operations, so the same generator state gives the same noise.

The provider declares ``perturbs_step1_input``: the training step feeds its embeddings to step 1
itself, so the model trains on the noisy embeddings only (the gradient reaches the embedding
table through the clean lookup, as with the hook). Evaluation never calls a provider, so it
sees no noise. With α = 0 nothing is drawn, so a run equals ``none`` weight for weight (the hook
would still draw, and shift the generator).
"""

from __future__ import annotations

import torch

from noise_training.base import Perturbation, PerturbationProvider, StepContext
from noise_training.registry import Option, ProviderSpec, at_least, register_provider

NEFTUNE_NOISE_ALPHA = Option(
    "neftune_noise_alpha", float, 5.0,
    "NEFTune's α: Uniform(±α/sqrt(L·d)) on the token embeddings, L the padded length, d the hidden size",
    check=at_least(0.0),
)


def neftune_bound(*, alpha: float, length: int, hidden: int) -> torch.Tensor:
    """m = α / sqrt(L · d), as the hook computes it (a float32 square root of an integer tensor)."""
    return alpha / torch.sqrt(torch.tensor(length * hidden))


class NeftuneNoise(PerturbationProvider):
    perturbs_step1_input = True
    # as the hook: every position of the embedding output, special tokens and padding too
    perturbs_every_position = True
    depends_on_step1 = False

    def __init__(self, *, options, model, tokenizer, cache_dir) -> None:
        super().__init__(options=options, model=model, tokenizer=tokenizer, cache_dir=cache_dir)
        self.alpha = float(options["neftune_noise_alpha"])

    def perturb(self, ctx: StepContext) -> Perturbation:
        embeddings = ctx.token_embeddings
        if self.alpha == 0:
            return Perturbation(embeddings=embeddings, delta=torch.zeros_like(embeddings.detach()),
                                changed=torch.zeros_like(ctx.attention_mask, dtype=torch.bool))
        bound = neftune_bound(alpha=self.alpha, length=embeddings.size(1), hidden=embeddings.size(2))
        noise = torch.zeros_like(embeddings.detach()).uniform_(-bound, bound)
        return Perturbation(embeddings=embeddings + noise, delta=noise, changed=ctx.attention_mask.bool())


register_provider(ProviderSpec(
    name="neftune", factory=NeftuneNoise, options=(NEFTUNE_NOISE_ALPHA,),
    summary="NEFTune: training on token embeddings + Uniform(±α/sqrt(L·d)), no adversarial term "
            "(1 forward + 1 backward per step)",
))
