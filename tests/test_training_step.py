"""run_training_step's own duties, whatever the provider: what it hands the provider, what it does with a
non-finite adversarial term or task loss, and the caller's backward.

On the provider tests' tiny BERT with signal (tests/provider_setup.py); the providers here are
small stand-ins that return a chosen perturbation, so that each case is exactly the one named.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from mt_dnn.training_step import run_training_step
from noise_training.base import Perturbation
from provider_setup import TASK, signal_bert_setup


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return signal_bert_setup(tmp_path_factory.mktemp("training_step"))


class _Returning:
    """A provider whose perturbation is ``make(ctx)``; it keeps the context it was given."""

    needs_saliency = False

    def __init__(self, make):
        self.make, self.contexts = make, []

    def perturb(self, ctx):
        self.contexts.append(ctx)
        return self.make(ctx)


def _moved(ctx, scale: float) -> Perturbation:
    # random directions: a shift common to every hidden unit would vanish in the embeddings' LayerNorm
    noise = torch.randn(ctx.token_embeddings.shape, generator=torch.Generator().manual_seed(0),
                        dtype=ctx.token_embeddings.dtype)
    delta = scale * noise
    return Perturbation(embeddings=ctx.token_embeddings + delta, delta=delta.detach(), changed=ctx.perturbable_mask)


def _step(tiny, provider, *, model=None, **kwargs):
    model = model or tiny["model"]
    model.zero_grad(set_to_none=True)
    return run_training_step(model=model, forward_model=model, provider=provider, batch=tiny["batch"], task=TASK,
                             adv_alpha=1.0, special_ids=tiny["special_ids"], normaliser=3.0, **kwargs)


def _grads(model) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_the_provider_sees_the_batch_as_it_is(tiny):
    provider = _Returning(lambda ctx: None)
    _step(tiny, provider)
    (ctx,) = provider.contexts
    batch = tiny["batch"]
    for name in ("input_ids", "attention_mask", "token_type_ids"):
        assert torch.equal(getattr(ctx, name), batch[name]), name
    assert bool(batch["token_type_ids"].any()), "the batch must hold a hypothesis segment for this check"


def test_a_non_finite_adversarial_term_is_skipped_and_left_out_of_the_gradient(tiny):
    model = tiny["model"]
    _step(tiny, _Returning(lambda ctx: None))
    task_only = _grads(model)
    outcome = _step(tiny, _Returning(lambda ctx: _moved(ctx, float("nan"))))
    assert outcome.adv_skipped is True and outcome.adv_loss is None
    assert math.isfinite(outcome.task_loss) and bool(torch.isfinite(outcome.loss))
    grads = _grads(model)
    assert grads.keys() == task_only.keys()
    assert all(torch.allclose(grads[name], task_only[name], rtol=1e-9, atol=1e-12) for name in grads)
    # the guard: a finite perturbation of the same size does change the gradient here
    _step(tiny, _Returning(lambda ctx: _moved(ctx, 0.5)))
    assert not all(torch.allclose(g, task_only[name], rtol=1e-9, atol=1e-12) for name, g in _grads(model).items())


def test_a_non_finite_task_loss_is_reported_as_nan(tiny):
    model = copy.deepcopy(tiny["model"])
    with torch.no_grad():  # class 0 impossible: the pair labelled 0 has an infinite cross-entropy
        model.heads["anli"].classifier.bias[0] = float("-inf")
    outcome = _step(tiny, _Returning(lambda ctx: None), model=model)
    assert math.isnan(outcome.task_loss)


def test_the_callers_backward_receives_the_steps_loss(tiny):
    received = []

    def backward(loss):
        received.append(loss)
        loss.backward()

    outcome = _step(tiny, _Returning(lambda ctx: _moved(ctx, 0.5)), backward=backward)
    (loss,) = received
    assert isinstance(loss, torch.Tensor) and loss.requires_grad and torch.equal(loss.detach(), outcome.loss)
    assert _grads(tiny["model"]), "the given backward ran, so the parameters have gradients"
