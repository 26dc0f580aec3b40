"""One training step: step-1 forward, task loss, the provider's step 2, one backward.

This is the single place where a perturbation provider plugs into training (design.md):

    tok_emb = token_embeddings(ids); logits = f(tok_emb); loss = task_loss(logits, y)
    perturbation = provider.perturb(ctx)             # None for plain fine-tuning
    adv_logits = f(perturbation.embeddings)          # step 2
    loss += alpha * symmetric_kl(logits, adv_logits)
    loss.backward()

A provider that declares ``depends_on_step1 = False`` is asked for its perturbation before
step 1, and steps 1 and 2 then run as one forward pass over [clean; perturbed] (see
``fuse_passes``). A provider that declares ``perturbs_step1_input = True`` (NEFTune) is asked
first too, and its embeddings are step 1's input: one pass, no step 2, no adversarial term.

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
from noise_training.base import (
    Perturbation, StepContext, perturbable_token_mask, perturbation_stat_sums, stats_from_sums,
)


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
    backward=None, adv_model=None, fuse_passes: bool = True,
) -> StepOutcome:
    """Forward, perturb, backward for one (micro-)batch; the optimiser step is the caller's.

    ``model`` is what the step-1 pass goes through (possibly DDP-wrapped, so the backward
    synchronises gradients); ``adv_model`` (default ``model``) runs step 2; ``forward_model``
    is the bare module, used by providers for their own inner passes, which must not touch
    DDP's bookkeeping. Under DDP the trainer passes a non-DDP ``adv_model``: DDP then sees one
    forward per backward on every rank even when a rank skips step 2, and each parameter's
    gradient, summed over both passes by autograd, is all-reduced once.

    ``fuse_passes``: when the provider's perturbation does not depend on step 1
    (``depends_on_step1 = False``), it is built first and steps 1 and 2 run as ONE pass of
    ``model`` over [clean; perturbed] (2B rows): the same arithmetic in bigger matrix
    products, half the passes' fixed costs, one forward per backward for DDP. The losses and
    gradients equal the two-pass path's up to float rounding (dropout masks are drawn for the
    2B rows at once, so with dropout on the draws differ).
    """
    task_loss_fn = TASK_LOSSES[task.loss]
    adv_loss_fn = ADV_LOSSES[task.adv_loss]
    input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
    token_type_ids = batch.get("token_type_ids")
    labels = batch["labels"]
    n = labels.shape[0]
    forwards, backwards = 1, 1

    def provider_forward(*, inputs_embeds, forward_context=contextlib.nullcontext,
                         position_numbering="padding_aware"):
        with autocast(), forward_context():
            return forward_model(task=task.name, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                 token_type_ids=token_type_ids, position_numbering=position_numbering)

    def embedding_output():
        with autocast():
            return forward_model.embedding_output(input_ids=input_ids, token_type_ids=token_type_ids)

    def provider_adv_loss(clean, adv, *, reduction="sum"):
        return adv_loss_fn(clean, adv, reduction=reduction)

    def context(*, logits, saliency) -> StepContext:
        return StepContext(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
            token_embeddings=tok_emb, logits=logits, perturbable_mask=perturbable,
            forward=provider_forward, adv_loss=provider_adv_loss, saliency=saliency,
            embedding_output=embedding_output, task_type=getattr(task, "task_type", "classification"),
        )

    def step_one(inputs_embeds=None):
        with autocast():
            return model(task=task.name, inputs_embeds=tok_emb if inputs_embeds is None else inputs_embeds,
                         attention_mask=attention_mask, token_type_ids=token_type_ids)

    with autocast():
        tok_emb = forward_model.token_embeddings(input_ids)
    perturbable = perturbable_token_mask(input_ids=input_ids, attention_mask=attention_mask,
                                         special_ids=special_ids)
    on_input = getattr(provider, "perturbs_step1_input", False)
    early = (fuse_passes and not on_input and not getattr(provider, "depends_on_step1", True)
             and not getattr(provider, "needs_saliency", False))
    adv_logits = None
    if on_input:
        # The provider's embeddings are what the model trains on (its delta carries no gradient;
        # the table still gets its gradient through tok_emb); there is no step 2.
        perturbation = provider.perturb(context(logits=None, saliency=None))
        logits = step_one(None if perturbation is None else perturbation.embeddings)
        task_loss_sum = task_loss_fn(logits, labels, reduction="sum")
    elif early:
        perturbation: Perturbation | None = provider.perturb(context(logits=None, saliency=None))
        fused = (perturbation is not None and not perturbation.skipped
                 and perturbation.forward_context is contextlib.nullcontext
                 and perturbation.position_numbering == "padding_aware")
        if fused:
            with autocast():
                both = model(
                    task=task.name, inputs_embeds=torch.cat([tok_emb, perturbation.embeddings]),
                    attention_mask=torch.cat([attention_mask, attention_mask]),
                    token_type_ids=None if token_type_ids is None else torch.cat([token_type_ids, token_type_ids]),
                )
            logits, adv_logits = both[:n], both[n:]
        else:
            logits = step_one()
        task_loss_sum = task_loss_fn(logits, labels, reduction="sum")
    else:
        logits = step_one()
        task_loss_sum = task_loss_fn(logits, labels, reduction="sum")
        saliency = None
        if getattr(provider, "needs_saliency", False):
            # Gradient w.r.t. the token embeddings only: autograd prunes the weight gradients.
            # Computed once here and handed to the provider through the context.
            (grad,) = torch.autograd.grad(task_loss_sum, tok_emb, retain_graph=True)
            saliency = grad.float().abs().sum(dim=-1)
            backwards += 1
        perturbation = provider.perturb(context(logits=logits, saliency=saliency))
    loss = task_loss_sum / normaliser

    adv_value, adv_skipped, stat_sums, adv_sum, extra_names = None, False, None, None, []
    if perturbation is not None:
        forwards += perturbation.extra_forwards
        backwards += perturbation.extra_backwards
        stat_sums = perturbation_stat_sums(perturbation=perturbation, token_embeddings=tok_emb,
                                           perturbable_mask=perturbable)
        extra_names = list(perturbation.extra_stats)
        if extra_names:
            extras = [perturbation.extra_stats[name].detach().float().reshape(1) for name in extra_names]
            stat_sums = torch.cat([stat_sums, *extras])
        adv_skipped = perturbation.skipped
        if not perturbation.skipped and not on_input:
            if adv_logits is None:
                with autocast(), perturbation.forward_context():
                    adv_logits = (adv_model or model)(task=task.name, inputs_embeds=perturbation.embeddings,
                                                      attention_mask=attention_mask, token_type_ids=token_type_ids,
                                                      position_numbering=perturbation.position_numbering)
            forwards += 1
            adv_sum = adv_loss_fn(logits, adv_logits, reduction="sum")

    # One host read per step (each is a device sync on a GPU): the adversarial term's
    # finiteness must be known before the backward pass, and every reported figure rides along.
    figures = None
    if adv_sum is not None:
        figures = _read_figures(task_loss_sum, adv_sum, stat_sums)
        if math.isfinite(figures["adv"]):
            adv_value = figures["adv"] / n
            loss = loss + adv_alpha * adv_sum / normaliser
        else:
            adv_skipped = True

    if backward is None:
        loss.backward()
    else:
        backward(loss)
    if figures is None:
        figures = _read_figures(task_loss_sum, None, stat_sums)
    task_value = figures["task"] / n
    return StepOutcome(
        loss=loss.detach(), task_loss=task_value if math.isfinite(task_value) else float("nan"),
        adv_loss=adv_value, adv_skipped=adv_skipped, forwards=forwards, backwards=backwards,
        stats=_stats(figures["stats"], extra_names) if stat_sums is not None else {},
    )


def _stats(values: list[float], extra_names: list[str]) -> dict[str, float]:
    """The shares from the first three sums, then the provider's own figures by name."""
    stats = stats_from_sums(sums=values[:3])
    stats.update(zip(extra_names, values[3:]))
    return stats


def _read_figures(task_loss_sum: torch.Tensor, adv_sum: torch.Tensor | None,
                  stat_sums: torch.Tensor | None) -> dict:
    """The step's scalars copied to the host in one transfer."""
    parts = [task_loss_sum.detach().float().reshape(1)]
    if adv_sum is not None:
        parts.append(adv_sum.detach().float().reshape(1))
    if stat_sums is not None:
        parts.append(stat_sums.float())
    values = torch.cat(parts).tolist()
    figures = {"task": values[0], "adv": values[1] if adv_sum is not None else None}
    figures["stats"] = values[2 if adv_sum is not None else 1:] if stat_sums is not None else None
    return figures
