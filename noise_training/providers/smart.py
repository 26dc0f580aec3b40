"""``smart``: SMART's virtual-adversarial perturbation (Jiang et al., 2020), the paper's baseline.

δ starts as Gaussian noise (σ = adv_noise_var) on the perturbable tokens; each of K ascent
steps runs a forward pass on E + δ, takes the symmetric KL against the *detached* clean
logits, and moves δ ← δ + η·g/(‖g‖ per token + ε) with g = ∂loss/∂δ (the gradient w.r.t. δ
only: no parameter gradient is computed or accumulated). A non-finite gradient norm skips
the adversarial term for the step (and is counted).

Two defects of the public MT-DNN code are not copied: δ is added to the *token* embeddings
(before position/segment embeddings and LayerNorm), and the small step is kept rather than
renormalising the whole δ to ‖δ‖∞ ≈ 1. ``--smart_at embedding_output`` instead adds δ to the
embedding block's output (token + position + segment, after LayerNorm), where MT-DNN's SMART
means to act, through a forward hook so nothing is applied twice.

Step size: MT-DNN's command line defaults to 1e-5 (our default); the paper quotes SMART's
class default 1e-3 (``--adv_step_size 1e-3``).
"""

from __future__ import annotations

import contextlib

import torch

from mt_dnn.errors import ConfigError
from noise_training.base import Perturbation, PerturbationProvider, StepContext
from noise_training.options import ADV_ALPHA
from noise_training.registry import Option, ProviderSpec, at_least, register_provider

P_NORMS = ("inf", "l2", "l1")
LOCATIONS = ("token_embeddings", "embedding_output")


def _choice(choices):
    def check(value):
        return None if value in choices else f"one of {', '.join(choices)}"
    return check


OPTIONS = (
    ADV_ALPHA,
    Option("adv_step_size", float, 1e-5, "SMART ascent step η (MT-DNN's command line: 1e-5; the paper quotes 1e-3)",
           check=at_least(0.0)),
    Option("adv_noise_var", float, 1e-5, "σ of SMART's Gaussian initial noise", check=at_least(0.0)),
    Option("adv_epsilon", float, 1e-6, "ε added to the gradient norm in SMART's step", check=at_least(0.0)),
    Option("adv_k", int, 1, "number of SMART ascent steps K", check=at_least(1)),
    Option("adv_p_norm", str, "inf", "per-token norm SMART normalises its gradient with: inf, l2 or l1",
           check=_choice(P_NORMS)),
    Option("smart_at", str, "token_embeddings",
           "where SMART adds δ: token_embeddings (as the proposed methods) or embedding_output "
           "(after position/segment embeddings and LayerNorm, as MT-DNN's SMART intends)", check=_choice(LOCATIONS)),
)


def normalise_per_token(grad: torch.Tensor, *, p_norm: str, epsilon: float) -> torch.Tensor:
    if p_norm == "inf":
        norm = grad.abs().amax(dim=-1, keepdim=True)
    elif p_norm == "l2":
        norm = grad.norm(dim=-1, keepdim=True)
    else:
        norm = grad.abs().sum(dim=-1, keepdim=True)
    return grad / (norm + epsilon)


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
            raise ConfigError("--smart_at embedding_output: this encoder has no `embeddings` module to hook")
        self.skipped_steps = 0

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

    def perturb(self, ctx: StepContext) -> Perturbation:
        clean_input = ctx.token_embeddings.detach()
        mask = ctx.perturbable_mask.unsqueeze(-1).to(clean_input.dtype)
        clean_logits = ctx.logits.detach()
        delta = torch.randn_like(clean_input) * self.noise_var * mask
        captured: dict = {}
        for _ in range(self.k):
            delta.requires_grad_(True)
            if self.at_output:
                adv_logits = ctx.forward(inputs_embeds=clean_input,
                                         forward_context=self._hook_context(delta, captured))
            else:
                adv_logits = ctx.forward(inputs_embeds=clean_input + delta)
            loss = ctx.adv_loss(clean_logits, adv_logits)
            (grad,) = torch.autograd.grad(loss, delta)
            if not torch.isfinite(grad.norm()):
                self.skipped_steps += 1
                return Perturbation(embeddings=ctx.token_embeddings, delta=torch.zeros_like(clean_input),
                                    changed=torch.zeros_like(ctx.perturbable_mask), skipped=True,
                                    extra_forwards=self.k, extra_backwards=self.k)
            step = normalise_per_token(grad.float() * mask, p_norm=self.p_norm, epsilon=self.epsilon)
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
    summary="SMART's gradient perturbation (3 forwards + 2 backwards per step), the paper's baseline",
))
