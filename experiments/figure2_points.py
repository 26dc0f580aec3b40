"""Figure 2's points: each occurrence of a word as every variant puts it, panel by panel.

One job of experiments.figure2: run the real providers on the figure's batch through a
StepContext built as training builds it, and gather, per panel, the points of the variants
that live in that panel's space. The two SMARTs perturb different things, so they sit in
different panels:

- token embeddings: clean, ``smart`` (the corrected algorithm, δ added to the token
  embeddings) and ``1-1`` (noise toward the nearest word, also on the token embeddings);
- embedding block output (token + position + segment embeddings, LayerNorm): clean, and
  ``smart_mtdnn`` (MT-DNN's code, as the paper ran it), whose points are that output + noise;
- hidden states after encoder layer k: every variant, each computed as training computes its
  step 2 (``smart_mtdnn``'s sum fed back as ``inputs_embeds``, the encoder numbering positions).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

CLEAN, CORRECTED, MTDNN, ONE_ONE = "clean", "SMART (corrected)", "SMART (MT-DNN)", "1-1"
VARIANTS = (CLEAN, CORRECTED, MTDNN, ONE_ONE)
TOKEN_SPACE, OUTPUT_SPACE = "token embeddings", "embedding block output"
# What each variant's perturbation is added to: its share is measured against that vector.
SPACE_OF = {CORRECTED: TOKEN_SPACE, ONE_ONE: TOKEN_SPACE, MTDNN: OUTPUT_SPACE}


@dataclass(frozen=True)
class MtdnnInput:
    """smart_mtdnn on the batch: the clean embedding-block output, step 2's input, its sizes."""

    clean_output: torch.Tensor  # [B, T, D]
    perturbed: torch.Tensor  # [B, T, D] clean_output + noise, fed as inputs_embeds
    position_numbering: str
    logged_share: float  # what MT-DNN's own code logs for this batch (a fraction)


@dataclass(frozen=True)
class Panel:
    name: str
    space: str
    points: dict  # variant -> [N, D] array, clean first


def step_context(*, network, tokenizer, batch: dict, task: str):
    """A StepContext on the batch exactly as mt_dnn.training_step builds one (no autocast, no DDP)."""
    from mt_dnn.losses import ADV_LOSSES
    from noise_training.base import StepContext, perturbable_token_mask

    input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
    token_type_ids = batch.get("token_type_ids")
    adv_loss = ADV_LOSSES["symmetric_kl"]

    def forward(*, inputs_embeds, forward_context=contextlib.nullcontext, position_numbering="padding_aware"):
        with forward_context():
            return network(task=task, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                           token_type_ids=token_type_ids, position_numbering=position_numbering)

    token_embeddings = network.token_embeddings(input_ids)
    special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)))
    return StepContext(
        input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
        token_embeddings=token_embeddings, logits=forward(inputs_embeds=token_embeddings),
        perturbable_mask=perturbable_token_mask(input_ids=input_ids, attention_mask=attention_mask,
                                                special_ids=special_ids),
        forward=forward,
        # smart sums its ascent loss over the examples (reduction="sum"), as in training
        adv_loss=lambda clean, adv, *, reduction="sum": adv_loss(clean, adv, reduction=reduction),
        embedding_output=lambda: network.embedding_output(input_ids=input_ids, token_type_ids=token_type_ids),
    )


def _provider(*, name: str, given: dict, network, tokenizer, cache_dir: Path):
    from noise_training.registry import build_provider, resolve_options

    _, options = resolve_options(name=name, given=given)
    return build_provider(name=name, options=options, model=network, tokenizer=tokenizer, cache_dir=cache_dir)


def perturbed_inputs(*, network, tokenizer, batch: dict, smart_step_size: float | None, noise_size: float | None,
                     cache_dir: Path, task: str) -> dict[str, torch.Tensor]:
    """Token embeddings of the batch: "clean", "SMART" (the corrected ``smart``) and "1-1" (the real providers)."""
    ctx = step_context(network=network, tokenizer=tokenizer, batch=batch, task=task)
    out = {"clean": ctx.token_embeddings.detach()}
    for key, name, given in (("SMART", "smart", {"adv_step_size": smart_step_size}),
                             ("1-1", "1-1", {"noise_size": noise_size})):
        provider = _provider(name=name, given=given, network=network, tokenizer=tokenizer, cache_dir=cache_dir)
        out[key] = provider.perturb(ctx).embeddings.detach()
    return out


def mtdnn_input(*, network, tokenizer, batch: dict, smart_step_size: float | None, cache_dir: Path,
                task: str) -> MtdnnInput:
    """smart_mtdnn's step-2 input on the batch, as training asks for it."""
    ctx = step_context(network=network, tokenizer=tokenizer, batch=batch, task=task)
    provider = _provider(name="smart_mtdnn", given={"adv_step_size": smart_step_size}, network=network,
                         tokenizer=tokenizer, cache_dir=cache_dir)
    perturbation = provider.perturb(ctx)
    return MtdnnInput(clean_output=perturbation.reference.detach(), perturbed=perturbation.embeddings.detach(),
                      position_numbering=perturbation.position_numbering,
                      logged_share=float(perturbation.extra_stats.get("mtdnn_logged_share", float("nan"))))


def panels(*, network, batch: dict, rows: torch.Tensor, cols: torch.Tensor, inputs: dict[str, torch.Tensor],
           mtdnn: MtdnnInput, layer: int) -> tuple[list[Panel], dict[str, np.ndarray]]:
    """The three panels, and the layer-k points of the clean output re-embedded without noise.

    The last is a diagnostic: smart_mtdnn's step 2 differs from the clean pass by its noise *and*
    by the embedding block applied twice; that point says how much of the move is the second.
    """
    mask, segments = batch["attention_mask"], batch.get("token_type_ids")

    def pick(embeds: torch.Tensor) -> np.ndarray:
        return embeds[rows, cols].float().numpy()

    def at_layer(embeds: torch.Tensor, numbering: str = "padding_aware") -> np.ndarray:
        hidden = network.encode(inputs_embeds=embeds, attention_mask=mask, token_type_ids=segments,
                                output_hidden_states=True, position_numbering=numbering)
        return pick(hidden.hidden_states[layer])

    token_inputs = {CLEAN: inputs["clean"], CORRECTED: inputs["SMART"], ONE_ONE: inputs["1-1"]}
    with torch.no_grad():
        layer_points = {variant: at_layer(embeds) for variant, embeds in token_inputs.items()}
        layer_points[MTDNN] = at_layer(mtdnn.perturbed, mtdnn.position_numbering)
        reembedded = at_layer(mtdnn.clean_output, mtdnn.position_numbering)
    found = [
        Panel(f"{TOKEN_SPACE} (where smart and 1-1 add theirs)", TOKEN_SPACE,
              {variant: pick(embeds) for variant, embeds in token_inputs.items()}),
        Panel(f"{OUTPUT_SPACE} (where MT-DNN's SMART adds its noise)", OUTPUT_SPACE,
              {CLEAN: pick(mtdnn.clean_output), MTDNN: pick(mtdnn.perturbed)}),
        Panel(f"hidden states after encoder layer {layer}", f"layer {layer}",
              {variant: layer_points[variant] for variant in VARIANTS}),
    ]
    return found, {"reembedded": reembedded}


def shares_percent(found: list[Panel]) -> dict[str, float]:
    """Each variant's mean ‖perturbation‖₂ / ‖clean point‖₂ (percent) in the space it is added in."""
    result = {}
    for panel in found:
        clean = panel.points[CLEAN]
        for variant, points in panel.points.items():
            if SPACE_OF.get(variant) == panel.space:
                ratio = np.linalg.norm(points - clean, axis=1) / np.linalg.norm(clean, axis=1)
                result[variant] = float(100 * ratio.mean())
    return result
