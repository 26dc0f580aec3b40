"""``smart``: SMART's virtual-adversarial perturbation (Jiang et al., 2020) as the papers write it.

δ starts as Gaussian noise (σ = adv_noise_var) on the perturbable tokens; each of K ascent
steps runs a forward pass on E + δ, takes the symmetric KL against the *detached* clean
logits **summed over the examples**, and moves δ ← δ + η·g/(‖g‖ per token + ε) with
g = ∂loss/∂δ (the gradient w.r.t. δ only: no parameter gradient is computed). The sum, not
the batch mean, is what makes the step a per-example quantity: with a mean, g shrinks by 1/B
and the ε = 1e-6 swamps it (measured on MiniLM: median per-token ‖step‖∞/η 0.38 at batch 32,
0.71 at batch 8), so one example's δ would depend on the batch it sits in, the batch size,
gradient accumulation and the number of DDP processes. A non-finite gradient norm skips the
adversarial term for the step (and is counted).

This is the corrected restatement; ``smart_mtdnn`` is MT-DNN's code as the paper ran it.
Here δ is added to the *token* embeddings (before position/segment embeddings and LayerNorm,
like the proposed methods) and the small step is kept. ``--smart_at embedding_output`` adds
δ to the embedding block's output instead, through a forward hook, so nothing is applied twice.

Step size: MT-DNN's command line defaults to 1e-5 (our default); the paper quotes SMART's
class default 1e-3 (``--adv_step_size 1e-3``).
"""

from __future__ import annotations

import contextlib

import torch

from noise_training.base import Perturbation, PerturbationProvider, StepContext
from noise_training.errors import ProviderConfigError
from noise_training.options import ADV_ALPHA
from noise_training.registry import Option, ProviderSpec, at_least, register_provider

P_NORMS = ("inf", "l2", "l1")
LOCATIONS = ("token_embeddings", "embedding_output")


def one_of(choices):
    def check(value):
        return None if value in choices else f"one of {', '.join(choices)}"
    return check


# Shared with smart_mtdnn: the same flags, MT-DNN's command-line defaults.
SMART_OPTIONS = (
    ADV_ALPHA,
    Option("adv_step_size", float, 1e-5, "SMART ascent step η (MT-DNN's command line: 1e-5; the paper quotes 1e-3)",
           check=at_least(0.0)),
    Option("adv_noise_var", float, 1e-5, "σ of SMART's Gaussian initial noise", check=at_least(0.0)),
    Option("adv_epsilon", float, 1e-6, "ε added to the gradient norm in SMART's step", check=at_least(0.0)),
    Option("adv_k", int, 1, "number of SMART ascent steps K", check=at_least(1)),
    Option("adv_p_norm", str, "inf", "per-token norm SMART normalises its gradient with: inf, l2 or l1",
           check=one_of(P_NORMS)),
)
OPTIONS = SMART_OPTIONS + (
    Option("smart_at", str, "token_embeddings",
           "where smart adds δ: token_embeddings (as the proposed methods) or embedding_output "
           "(after position/segment embeddings and LayerNorm, through a hook)", check=one_of(LOCATIONS)),
)


def per_token_norm(grad: torch.Tensor, *, p_norm: str) -> torch.Tensor:
    """‖grad‖ over the last dimension, kept as [..., 1]."""
    if p_norm == "inf":
        return grad.abs().amax(dim=-1, keepdim=True)
    if p_norm == "l2":
        return grad.norm(dim=-1, keepdim=True)
    return grad.abs().sum(dim=-1, keepdim=True)


def normalise_per_token(grad: torch.Tensor, *, p_norm: str, epsilon: float) -> torch.Tensor:
    return grad / (per_token_norm(grad, p_norm=p_norm) + epsilon)


class SmartPerturbation(PerturbationProvider):
    def __init__(self, *, options, model, tokenizer, cache_dir) -> None:
        super().__init__(options=options, model=model, tokenizer=tokenizer, cache_dir=cache_dir)
        self.step_size = float(options["adv_step_size"])
        self.noise_var = float(options["adv_noise_var"])
        self.epsilon = float(options["adv_epsilon"])
        self.k = int(options["adv_k"])
        self.p_norm = options["adv_p_norm"]
        self.at_output = options["smart_at"] == "embedding_output"
        self.embedding_block = getattr(model.encoder, "embeddings", None)
        if self.at_output and self.embedding_block is None:
            raise ProviderConfigError("--smart_at embedding_output: this encoder has no `embeddings` module to hook")
        self.skipped_steps = 0

    def initial_noise(self, like: torch.Tensor) -> torch.Tensor:
        """δ₀ ~ N(0, σ²) of ``like``'s shape (tests replace it to fix δ₀ per example)."""
        return torch.randn_like(like) * self.noise_var

    def _hook_context(self, delta: torch.Tensor, captured: dict):
        """During one forward pass, add δ to the embedding block's output (and keep the clean output)."""

        @contextlib.contextmanager
        def context():
            def hook(module, args, output):
                captured["reference"] = output.detach()
                return output + delta.to(output.dtype)

            handle = self.embedding_block.register_forward_hook(hook)
            try:
                yield
            finally:
                handle.remove()

        return context

    def _adv_logits(self, ctx: StepContext, clean_input: torch.Tensor, delta: torch.Tensor, captured: dict):
        if self.at_output:
            return ctx.forward(inputs_embeds=clean_input, forward_context=self._hook_context(delta, captured))
        return ctx.forward(inputs_embeds=clean_input + delta)

    def perturb(self, ctx: StepContext) -> Perturbation:
        clean_input = ctx.token_embeddings.detach()
        mask = ctx.perturbable_mask.unsqueeze(-1).to(clean_input.dtype)
        clean_logits = ctx.logits.detach()
        delta = self.initial_noise(clean_input) * mask
        captured: dict = {}
        for ascent in range(self.k):
            delta.requires_grad_(True)
            loss = ctx.adv_loss(clean_logits, self._adv_logits(ctx, clean_input, delta, captured), reduction="sum")
            (grad,) = torch.autograd.grad(loss, delta)
            if not torch.isfinite(grad.norm()):
                self.skipped_steps += 1  # the passes reported: this ascent's and those before it
                return Perturbation(embeddings=ctx.token_embeddings, delta=torch.zeros_like(clean_input),
                                    changed=torch.zeros_like(ctx.perturbable_mask), skipped=True,
                                    extra_forwards=ascent + 1, extra_backwards=ascent + 1)
            wide = grad.to(torch.promote_types(grad.dtype, torch.float32))  # half precision up, float64 kept
            step = normalise_per_token(wide * mask, p_norm=self.p_norm, epsilon=self.epsilon)
            delta = (delta.detach() + self.step_size * step.to(delta.dtype) * mask).detach()

        changed = ctx.perturbable_mask.clone()
        if self.at_output:
            return Perturbation(embeddings=ctx.token_embeddings, delta=delta, changed=changed,
                                forward_context=self._hook_context(delta, {}), reference=captured["reference"],
                                extra_forwards=self.k, extra_backwards=self.k)
        return Perturbation(embeddings=ctx.token_embeddings + delta, delta=delta, changed=changed,
                            extra_forwards=self.k, extra_backwards=self.k)


register_provider(ProviderSpec(
    name="smart", factory=SmartPerturbation, aliases=("adversarial",), options=OPTIONS,
    summary="SMART's gradient perturbation as the papers write it, loss summed over examples "
            "(3 forwards + 2 backwards per step)",
))
