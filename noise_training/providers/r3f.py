"""``r3f``: R3F (Aghajanyan et al., ICLR 2021, "Better Fine-Tuning by Reducing Representational Collapse").

A control for the paper's claim: the same consistency term as the similar-word methods, on
*random* noise of tiny size, at the same cost (one extra forward pass, fused with step 1).
If it does as well as 1-1, the similar-word direction is not what helps.

As fairseq's ``examples/rxf/rxf_src/sentence_prediction_r3f.py`` computes it:

- noise drawn from Uniform(−ε, ε) (``--noise_type uniform``, the default) or Normal(0, ε)
  (ε is the standard deviation), ε = 1e-5 (fairseq's ``--eps`` default), fresh every step;
- added to a **detached** copy of the token embeddings (fairseq:
  ``token_embeddings.detach().clone() + noise``), at every position: special tokens and
  padding too, as fairseq perturbs every token (padding is masked out of attention anyway);
  so the embedding table gets no gradient through step 2, only through step 1;
- the term is weighted by α = ``--adv_alpha`` (fairseq's ``--r3f-lambda``, default 1.0; its RTE
  example uses 0.7).

Where this differs from fairseq: the term is the task's adversarial loss (the project's
symmetric KL, which detaches the target distribution in each direction, as MT-DNN's
``SymKlCriterion``; fairseq's ``F.kl_div`` lets the gradient through both sides), and for a
regression task fairseq drops the noise term altogether while here the task's adversarial
loss is used like for every provider. The noise does not depend on step 1, so steps 1 and 2
run as one fused pass over [clean; perturbed].
"""

from __future__ import annotations

import torch

from noise_training.base import Perturbation, PerturbationProvider, StepContext
from noise_training.options import ADV_ALPHA
from noise_training.providers.smart import one_of
from noise_training.registry import Option, ProviderSpec, at_least, register_provider

NOISE_TYPES = ("uniform", "normal")
OPTIONS = (
    Option("noise_eps", float, 1e-5, "R3F's noise size ε: Uniform(−ε, ε), or the σ of Normal(0, ε) (fairseq --eps)",
           check=at_least(0.0)),
    Option("noise_type", str, "uniform", "R3F's noise distribution: uniform or normal (fairseq --noise-type)",
           check=one_of(NOISE_TYPES)),
    ADV_ALPHA,
)


class R3FNoise(PerturbationProvider):
    # fairseq noises every token, special tokens and padding included
    perturbs_every_position = True
    # the noise reads only the shape of the token embeddings: fused with step 1
    depends_on_step1 = False

    def __init__(self, *, options, model, tokenizer, cache_dir) -> None:
        super().__init__(options=options, model=model, tokenizer=tokenizer, cache_dir=cache_dir)
        self.eps = float(options["noise_eps"])
        self.noise_type = options["noise_type"]

    def draw(self, like: torch.Tensor) -> torch.Tensor:
        """Noise of ``like``'s shape and dtype from the default generator (torch.distributions' draw)."""
        if self.eps == 0:
            return torch.zeros_like(like)  # Uniform(0, 0) is not a distribution torch accepts
        if self.noise_type == "normal":
            return torch.randn_like(like).mul_(self.eps)
        return torch.empty_like(like).uniform_(-self.eps, self.eps)

    def perturb(self, ctx: StepContext) -> Perturbation:
        clean = ctx.token_embeddings.detach()
        noise = self.draw(clean)
        changed = ctx.attention_mask.bool()
        if self.eps == 0:
            changed = torch.zeros_like(changed)
        return Perturbation(embeddings=clean + noise, delta=noise, changed=changed)


register_provider(ProviderSpec(
    name="r3f", factory=R3FNoise, options=OPTIONS,
    summary="R3F: tiny random noise (Uniform(±1e-5)) on detached token embeddings + symmetric KL "
            "(2 forwards + 1 backward per step)",
))
