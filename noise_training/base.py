"""The interface between the training step and a perturbation provider.

The trainer builds a :class:`StepContext` after the step-1 forward pass; the provider
returns a :class:`Perturbation` (the step-2 token embeddings) or None for no second pass.
The perturbation is a constant with respect to the parameters: providers detach their
delta, so gradients reach the embedding table only through the clean token embeddings.

A provider whose perturbation needs nothing from step 1 (only the ids, the token
embeddings and the mask) says so with ``depends_on_step1 = False``: the trainer then asks
for it *before* step 1 (``ctx.logits`` is None) and runs steps 1 and 2 as one forward pass
over the batch [clean; perturbed], which does the same arithmetic in half the passes.

A provider that changes what the model trains on instead of adding a second pass (NEFTune)
says so with ``perturbs_step1_input = True``: the trainer asks for it before step 1, step 1
runs on its ``embeddings`` (the task loss is computed on the noisy input), and there is no
step 2 and no adversarial term. Evaluation never calls a provider, so it stays clean.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager

import torch


@dataclass
class StepContext:
    """What a provider may look at when it builds the step-2 input of one batch."""

    input_ids: torch.Tensor  # [B, T]
    attention_mask: torch.Tensor  # [B, T]
    token_type_ids: torch.Tensor | None
    token_embeddings: torch.Tensor  # [B, T, D], step 1's input (carries the graph to the table)
    logits: torch.Tensor | None  # [B, C], step 1's output; None when asked before step 1
    perturbable_mask: torch.Tensor  # [B, T] bool: real tokens that are not special tokens
    # keyword-only: forward(inputs_embeds=..., [forward_context=...], [position_numbering=...])
    # -> logits of this batch's task; it runs the bare module, so it never triggers a DDP
    # gradient synchronisation.
    forward: Callable[..., torch.Tensor]
    # (clean, perturbed, *, reduction="sum"|"batchmean") -> scalar; "sum" adds the examples' terms,
    # so a gradient of it w.r.t. one example's input does not depend on the batch around it.
    adv_loss: Callable[..., torch.Tensor]
    saliency: torch.Tensor | None = None  # [B, T] Σ_d |∂ step-1 loss / ∂ token embedding|
    # () -> [B, T, D]: the encoder's embedding block on this batch (token + position + segment
    # embeddings, LayerNorm, dropout), with its graph: what MT-DNN's SMART perturbs.
    embedding_output: Callable[[], torch.Tensor] | None = None
    # the batch's task kind: "classification" (logits over labels) or "regression" (one score);
    # providers with a loss of their own (smart_mtdnn's ascent) pick it by this, as MT-DNN does
    task_type: str = "classification"


@dataclass
class Perturbation:
    """A provider's answer: step 2's token embeddings and what was changed."""

    embeddings: torch.Tensor  # [B, T, D] fed to step 2 as inputs_embeds
    delta: torch.Tensor  # [B, T, D] detached, what was added (for the norm report)
    changed: torch.Tensor  # [B, T] bool, positions whose input was changed
    # Step 2 runs inside this context (e.g. a forward hook adding delta elsewhere in the model).
    forward_context: Callable[[], ContextManager] = contextlib.nullcontext
    # The tensor whose per-token L2 norm is the denominator of the noise share.
    reference: torch.Tensor | None = None
    # How the encoder numbers the positions of ``embeddings`` in step 2 (see
    # MultiTaskModel.forward): "padding_aware" numbers them as the ids would be numbered;
    # "encoder_default" lets Hugging Face number inputs_embeds itself (MT-DNN's call).
    position_numbering: str = "padding_aware"
    # Per-batch figures beyond the two shares (device scalars, averaged over batches in the
    # epoch record under the same names), e.g. the size MT-DNN's own code logs for SMART.
    extra_stats: dict[str, torch.Tensor] = field(default_factory=dict)
    skipped: bool = False  # True: no adversarial term this step (e.g. a non-finite SMART gradient)
    extra_forwards: int = 0  # encoder passes the provider ran itself (SMART's ascent steps)
    extra_backwards: int = 0
    info: dict[str, Any] = field(default_factory=dict)


def perturbable_token_mask(
    *, input_ids: torch.Tensor, attention_mask: torch.Tensor, special_ids: torch.Tensor
) -> torch.Tensor:
    """Real (unpadded) tokens that are not special tokens: the only ones providers may change."""
    return attention_mask.bool() & ~torch.isin(input_ids, special_ids)


class PerturbationProvider:
    """Base class; subclasses are registered with :func:`noise_training.registry.register_provider`."""

    needs_saliency: bool = False
    # True only for a provider that deliberately perturbs special tokens and padding too
    # (smart_mtdnn, as MT-DNN's SMART); every other provider leaves them untouched.
    perturbs_every_position: bool = False
    # False: perturb() reads only ids, token embeddings and masks (never logits or saliency),
    # so the trainer may call it before step 1 and fuse steps 1 and 2 into one pass.
    depends_on_step1: bool = True
    # True: perturb() is asked before step 1 and its embeddings replace step 1's input; no step 2
    # is run and no adversarial term is added (NEFTune: noise on the embeddings, plain cost).
    perturbs_step1_input: bool = False

    def __init__(self, *, options: dict[str, Any], model, tokenizer, cache_dir) -> None:
        self.options = dict(options)

    def perturb(self, ctx: StepContext) -> Perturbation | None:
        raise NotImplementedError


@torch.no_grad()
def delta_toward(*, original: torch.Tensor, target_ids: torch.Tensor, weight: torch.Tensor, changed: torch.Tensor,
                 size: float) -> torch.Tensor:
    """size · (weight[target_ids] − original) where ``changed``, 0 elsewhere: [B, T, D], detached.

    One gather of the target rows, then in-place arithmetic on that fresh tensor (no extra
    [B, T, D] temporaries): this runs every step, so it is kept to a few passes over memory.
    """
    delta = torch.nn.functional.embedding(target_ids, weight.detach())
    if delta.dtype != original.dtype:
        delta = delta.to(original.dtype)
    delta.sub_(original.detach())
    return delta.mul_((changed.unsqueeze(-1) * size).to(delta.dtype))


@torch.no_grad()
def perturbation_stat_sums(*, perturbation: Perturbation, token_embeddings: torch.Tensor,
                           perturbable_mask: torch.Tensor) -> torch.Tensor:
    """float32 [3] on the batch's device: changed tokens, perturbable tokens, Σ ‖δ‖₂/‖E‖₂ over changed.

    No host synchronisation (no ``.item()``, no boolean indexing), so the training step can
    read these together with its losses in one transfer.
    """
    changed = perturbation.changed & perturbable_mask
    reference = perturbation.reference if perturbation.reference is not None else token_embeddings
    ratio = perturbation.delta.float().norm(dim=-1) / reference.detach().float().norm(dim=-1).clamp_min(1e-12)
    return torch.stack([
        changed.sum().float(), perturbable_mask.sum().float(), torch.where(changed, ratio, 0.0).sum(),
    ])


def stats_from_sums(*, sums: list[float]) -> dict[str, float]:
    """Share of perturbable tokens changed, and mean ‖δ‖₂/‖E‖₂ over the changed tokens."""
    n_changed, n_perturbable, ratio_sum = sums
    return {
        "changed_share": n_changed / n_perturbable if n_perturbable else 0.0,
        "noise_share": ratio_sum / n_changed if n_changed else 0.0,
        "changed_tokens": float(n_changed),
        "perturbable_tokens": float(n_perturbable),
    }


def perturbation_stats(*, perturbation: Perturbation, token_embeddings: torch.Tensor,
                       perturbable_mask: torch.Tensor) -> dict[str, float]:
    """Share of perturbable tokens changed, and mean ‖δ‖₂/‖E‖₂ over the changed tokens."""
    sums = perturbation_stat_sums(perturbation=perturbation, token_embeddings=token_embeddings,
                                  perturbable_mask=perturbable_mask)
    return stats_from_sums(sums=sums.tolist())
