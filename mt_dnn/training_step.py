"""One training step: step-1 forward, task loss, the provider's step 2, one backward.

This is the single place where a perturbation provider plugs into training (design.md):

    tok_emb = token_embeddings(ids); logits = f(tok_emb); loss = task_loss(logits, y)
    perturbation = provider.perturb(ctx)             # None for plain fine-tuning
    adv_logits = f(perturbation.embeddings)          # step 2
    loss += alpha * symmetric_kl(logits, adv_logits)
    loss.backward()

Losses are sums over this rank's examples divided by ``normaliser`` (the global batch's
example count divided by the world size), so that gradient accumulation and a batch split
across ranks give the same gradient as the whole batch on one device.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import torch

from mt_dnn.losses import ADV_LOSSES, TASK_LOSSES
from noise_training.base import Perturbation, StepContext, perturbable_token_mask, perturbation_stats


@dataclass
class StepOutcome:
    loss: torch.Tensor  # what was back-propagated (already scaled by the normaliser)
    task_loss: float  # mean over this rank's examples
    adv_loss: float | None
    adv_skipped: bool
    forwards: int
    backwards: int
    stats: dict[str, float] = field(default_factory=dict)


def run_training_step(
    *, model, forward_model, provider, batch: dict[str, torch.Tensor], task, adv_alpha: float,
    special_ids: torch.Tensor, normaliser: float, autocast=contextlib.nullcontext,
    backward=None,
) -> StepOutcome:
    """Forward, perturb, backward for one (micro-)batch; the optimiser step is the caller's.

    ``model`` is what the step-1 and step-2 passes go through (possibly DDP-wrapped, so its
    backward synchronises gradients); ``forward_model`` is the bare module, used by providers
    for their own inner passes, which must not touch DDP's bookkeeping.
    """
    task_loss_fn = TASK_LOSSES[task.loss]
    adv_loss_fn = ADV_LOSSES[task.adv_loss]
    input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
    token_type_ids = batch.get("token_type_ids")
    labels = batch["labels"]
    n = labels.shape[0]

    with autocast():
        tok_emb = forward_model.token_embeddings(input_ids)
        logits = model(task=task.name, inputs_embeds=tok_emb, attention_mask=attention_mask,
                       token_type_ids=token_type_ids)
    task_loss_sum = task_loss_fn(logits, labels, reduction="sum")
    loss = task_loss_sum / normaliser
    forwards, backwards = 1, 1

    saliency = None
    if getattr(provider, "needs_saliency", False):
        # Gradient w.r.t. the token embeddings only: autograd prunes the weight gradients.
        (grad,) = torch.autograd.grad(task_loss_sum, tok_emb, retain_graph=True)
        saliency = grad.float().abs().sum(dim=-1)
        backwards += 1

    def provider_forward(*, inputs_embeds, forward_context=contextlib.nullcontext):
        with autocast(), forward_context():
            return forward_model(task=task.name, inputs_embeds=inputs_embeds,
                                 attention_mask=attention_mask, token_type_ids=token_type_ids)

    perturbable = perturbable_token_mask(input_ids=input_ids, attention_mask=attention_mask,
                                         special_ids=special_ids)
    ctx = StepContext(
        input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
        token_embeddings=tok_emb, logits=logits, perturbable_mask=perturbable,
        forward=provider_forward, adv_loss=lambda clean, adv: adv_loss_fn(clean, adv),
        saliency=saliency,
    )
    perturbation: Perturbation | None = provider.perturb(ctx)
    adv_value, adv_skipped, stats = None, False, {}
    if perturbation is not None:
        forwards += perturbation.extra_forwards
        backwards += perturbation.extra_backwards
        stats = perturbation_stats(perturbation=perturbation, token_embeddings=tok_emb,
                                   perturbable_mask=perturbable)
        adv_skipped = perturbation.skipped
        if not perturbation.skipped:
            with autocast(), perturbation.forward_context():
                adv_logits = model(task=task.name, inputs_embeds=perturbation.embeddings,
                                   attention_mask=attention_mask, token_type_ids=token_type_ids)
            forwards += 1
            adv_sum = adv_loss_fn(logits, adv_logits, reduction="sum")
            if torch.isfinite(adv_sum):
                adv_value = float(adv_sum.detach()) / n
                loss = loss + adv_alpha * adv_sum / normaliser
            else:
                adv_skipped = True

    if backward is None:
        loss.backward()
    else:
        backward(loss)
    task_value = float(task_loss_sum.detach()) / n
    return StepOutcome(
        loss=loss.detach(), task_loss=task_value if math.isfinite(task_value) else float("nan"),
        adv_loss=adv_value, adv_skipped=adv_skipped, forwards=forwards, backwards=backwards, stats=stats,
    )
