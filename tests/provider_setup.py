"""The provider tests' fixture: a tiny real BERT with signal, its batch, and a provider's step context.

Shared by test_providers.py (every registered provider) and test_provider_methods.py (each
method's own behaviour). The BERT is initialised wide (``SIGNAL_INIT``), in float64, with its head
scaled, so that its predictions depend on the input (checked when it is built: a fixture on
which the adversarial term vanishes could not protect it).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from conftest import REPO_ROOT
from mt_dnn.losses import symmetric_kl
from mt_dnn.model import build_model
from mt_dnn.task_def import load_task_defs
from noise_training.base import StepContext, perturbable_token_mask
from noise_training.registry import build_provider, resolve_options
from tiny_models import SIGNAL_INIT, tiny_bert

TASK = load_task_defs(paths=[REPO_ROOT / "task_defs" / "anli.yml"])["anli"]
PAIRS = [
    ("the man drives a big car in the city .", "a man drives an auto ."),
    ("she is happy and glad today .", "he was sad ."),
    ("a small dog sleeps .", "the little cat eats in the kitchen with a large dog ."),
]
HEAD_SCALE = 10.0

# Settings under which each provider's adversarial term is visible on these tiny batches. SMART's defaults
# (η = σ = 1e-5) move the input by 1e-5: its term is then ~1e-5 of the gradient, under any guard.
# 2-3 changes the 15% least salient tokens halfway: 0.15% of the gradient here; 30% of them, all the way: 3.7%.
# R3F's ε = 1e-5 likewise; ε = 0.3 gives a term of the size of 1-1's on this fixture.
SETTINGS = {"smart": {"adv_step_size": 1e-1, "adv_noise_var": 1e-2}, "2-3": {"noise_ratio": 0.3, "noise_size": 1.0},
            "r3f": {"noise_eps": 0.3}}


def signal_bert_setup(root: Path) -> dict:
    """The tiny BERT (eval mode, float64), its tokenizer, a labelled batch of PAIRS, the special ids."""
    from transformers import AutoTokenizer

    folder = tiny_bert(root / "bert", hidden=48, initializer_range=SIGNAL_INIT)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = build_model(model_name=str(folder), tasks={"anli": TASK}, tokenizer=tokenizer)
    # no dropout: every difference below comes from the provider; float64: none from rounding
    model.double().eval()
    with torch.no_grad():
        model.heads["anli"].classifier.weight.mul_(HEAD_SCALE)
    batch = tokenizer([p for p, _ in PAIRS], [h for _, h in PAIRS], padding=True, return_tensors="pt",
                      return_token_type_ids=True)
    batch = dict(batch)
    batch["labels"] = torch.tensor([0, 2, 1])
    special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)))
    with torch.no_grad():
        probabilities = model(task="anli", input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                              token_type_ids=batch["token_type_ids"]).softmax(-1)
    # the random-init BERT of before gave 0.1746, 0.1585, 0.1135 for class 0 on all three pairs
    assert (probabilities.amax(0) - probabilities.amin(0)).max() > 0.1, f"fixture degenerate: {probabilities}"
    return {"model": model, "tokenizer": tokenizer, "batch": batch, "special_ids": special_ids,
            "cache": root / "cache"}


def make_provider(tiny, name, **given):
    spec, options = resolve_options(name=name, given=given)
    return build_provider(name=spec.name, options=options, model=tiny["model"], tokenizer=tiny["tokenizer"],
                          cache_dir=tiny["cache"])


def make_context(tiny, provider):
    model, batch = tiny["model"], tiny["batch"]
    tok_emb = model.token_embeddings(batch["input_ids"])
    logits = model(task="anli", inputs_embeds=tok_emb, attention_mask=batch["attention_mask"],
                   token_type_ids=batch["token_type_ids"])
    loss_sum = torch.nn.functional.cross_entropy(logits, batch["labels"], reduction="sum")
    saliency = None
    if getattr(provider, "needs_saliency", False):
        (grad,) = torch.autograd.grad(loss_sum, tok_emb, retain_graph=True)
        saliency = grad.abs().sum(-1)

    def forward(*, inputs_embeds, forward_context=None, position_numbering="padding_aware"):
        with (forward_context or contextlib.nullcontext)():
            return model(task="anli", inputs_embeds=inputs_embeds, attention_mask=batch["attention_mask"],
                         token_type_ids=batch["token_type_ids"], position_numbering=position_numbering)

    def embedding_output():
        return model.embedding_output(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"])

    perturbable = perturbable_token_mask(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                         special_ids=tiny["special_ids"])
    ctx = StepContext(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                      token_type_ids=batch["token_type_ids"], token_embeddings=tok_emb, logits=logits,
                      perturbable_mask=perturbable, forward=forward, adv_loss=symmetric_kl, saliency=saliency,
                      embedding_output=embedding_output)
    return ctx, loss_sum
