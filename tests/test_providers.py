"""Every registered perturbation provider, driven by the registry, on a tiny real BERT with signal.

A new provider registered in ``noise_training.providers`` is tested here without editing
this file. The fixture is a tiny BERT initialised wide (``SIGNAL_INIT``), in float64, with
its head scaled, so that its predictions depend on the input: a guard fails the step test of
any provider whose adversarial term carries under 1% of the step's gradient norm on the test
batch (a fixture that cannot see the term cannot protect it). Expected values come from
formulas written here, compared with tolerances relative to the size of what is compared.
Method-specific behaviour (1-1_1.0, 1-2, partial counts and saliency, SMART's step and its NaN
guard, WordNet's whole-word rule and midpoint) is tested in test_provider_methods.py.
"""

from __future__ import annotations

import pytest
import torch

from mt_dnn.losses import symmetric_kl
from mt_dnn.training_step import run_training_step
from noise_training.registry import get_spec, provider_names, resolve_options
from provider_setup import SETTINGS, TASK, make_context, make_provider, signal_bert_setup

GUARD_SHARE = 0.01  # the adversarial term's least share of the step's gradient norm


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return signal_bert_setup(tmp_path_factory.mktemp("providers"))


PERTURBING = [name for name in provider_names() if name != "none"]


@pytest.mark.parametrize("name", provider_names())
def test_every_provider_shape_specials_and_determinism(tiny, name):
    provider = make_provider(tiny, name)
    torch.manual_seed(0)
    ctx, _ = make_context(tiny, provider)
    first = provider.perturb(ctx)
    if name == "none":
        assert first is None
        return
    assert first.embeddings.shape == ctx.token_embeddings.shape
    assert first.embeddings.dtype == ctx.token_embeddings.dtype
    assert not first.delta.requires_grad
    if provider.perturbs_every_position:
        # smart_mtdnn (as MT-DNN's SMART: the embedding block's output), r3f and neftune (token embeddings):
        # every real position moved
        base = ctx.embedding_output() if first.position_numbering == "encoder_default" else ctx.token_embeddings
        assert torch.equal(first.changed, ctx.attention_mask.bool())
        assert (first.delta.abs().amax(-1) > 0).all()
        torch.testing.assert_close(first.embeddings, base + first.delta)
    else:
        frozen = ~ctx.perturbable_mask  # special tokens and padding
        assert torch.equal(first.embeddings[frozen], ctx.token_embeddings[frozen])
        assert not first.changed[frozen].any()
        assert first.changed.any(), f"{name} changed nothing in this batch"
        # only positions marked changed differ
        differs = (first.embeddings - ctx.token_embeddings).abs().amax(-1) > 0
        assert not (differs & ~first.changed).any()
    torch.manual_seed(0)
    ctx2, _ = make_context(tiny, provider)
    second = provider.perturb(ctx2)
    assert torch.equal(first.delta, second.delta) and torch.equal(first.changed, second.changed)


def _hand_loss(tiny, ctx, loss_sum, perturbation, *, alpha, normaliser, on_input=False):
    """(CE sum + alpha * Σ (KL(p||q) + KL(q||p))) / normaliser, written out, with the provider's (constant) delta.

    Returns the loss and the batch's KL sum. A provider that perturbs step 1's input (NEFTune) has no
    KL term: the loss is the CE of the token embeddings + delta (returned with None)."""
    model, batch = tiny["model"], tiny["batch"]
    if perturbation is not None and on_input:
        logits = model(task="anli", inputs_embeds=ctx.token_embeddings + perturbation.delta,
                       attention_mask=batch["attention_mask"], token_type_ids=batch["token_type_ids"])
        return torch.nn.functional.cross_entropy(logits, batch["labels"], reduction="sum") / normaliser, None
    loss = loss_sum / normaliser
    if perturbation is None:
        return loss, None
    if perturbation.position_numbering == "encoder_default":  # smart_mtdnn: embedding block output + noise
        step2_input = ctx.embedding_output() + perturbation.delta
    elif perturbation.reference is None:
        # a provider that detaches the clean embeddings in step 2 (R3F) gives the table no gradient through it
        clean = ctx.token_embeddings if perturbation.embeddings.requires_grad else ctx.token_embeddings.detach()
        step2_input = clean + perturbation.delta
    else:  # smart --smart_at embedding_output: the hook adds delta inside the model
        step2_input = ctx.token_embeddings
    with perturbation.forward_context():
        adv_logits = model(task="anli", inputs_embeds=step2_input, position_numbering=perturbation.position_numbering,
                           attention_mask=batch["attention_mask"], token_type_ids=batch["token_type_ids"])
    logp, logq = ctx.logits.log_softmax(-1), adv_logits.log_softmax(-1)
    kl = (logp.detach().exp() * (logp.detach() - logq)).sum() + (logq.detach().exp() * (logq.detach() - logp)).sum()
    return loss + alpha * kl / normaliser, kl.item()


def _gradients(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward(retain_graph=True)
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


def _norm(grads):
    return torch.sqrt(sum((g ** 2).sum() for g in grads.values())).item()


# (forward, backward) encoder passes per step: step 1; the provider's own (SMART's K ascent passes,
# the saliency gradient); the adversarial pass. Fused passes of [clean; perturbed] count as two.
PASSES = {"none": (1, 1), "smart": (3, 2), "smart_mtdnn": (3, 2), "1-1": (2, 1), "1-2": (2, 1), "2-1": (2, 1),
          "2-2": (2, 2), "2-3": (2, 2), "wordnet_1.0": (2, 1), "1-1_1.0": (2, 1), "wordnet_0.5": (2, 1),
          "r3f": (2, 1), "1-1_random": (2, 1), "neftune": (1, 1)}


@pytest.mark.numerics
@pytest.mark.parametrize("name", provider_names())
def test_every_provider_step_gradients_match_the_formula(tiny, name):
    model, batch = tiny["model"], tiny["batch"]
    provider = make_provider(tiny, name, **SETTINGS.get(name, {}))
    alpha = 1.0 if name == "none" else 0.7
    if name != "none":
        provider.options["adv_alpha"] = alpha

    # this batch of 3 as half of an accumulation group of 6: both terms are divided by the group's size
    normaliser = 6.0
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    outcome = run_training_step(model=model, forward_model=model, provider=provider, batch=batch, task=TASK,
                                adv_alpha=alpha, special_ids=tiny["special_ids"], normaliser=normaliser)
    assert torch.isfinite(outcome.loss)
    step_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert any(n.startswith("encoder.encoder.layer.0") for n in step_grads), "backward must reach the encoder"

    torch.manual_seed(1)
    ctx, loss_sum = make_context(tiny, provider)
    perturbation = provider.perturb(ctx)
    on_input = getattr(provider, "perturbs_step1_input", False)
    loss, kl_sum = _hand_loss(tiny, ctx, loss_sum, perturbation, alpha=alpha, normaliser=normaliser,
                              on_input=on_input)
    hand_grads = _gradients(model, loss)
    if perturbation is not None:
        # The guard: this fixture must be able to see the adversarial term (or, for a provider that perturbs
        # step 1's input, the noise), or the comparison below is void.
        task_only = _gradients(model, loss_sum / normaliser)
        share = _norm({k: hand_grads[k] - task_only.get(k, 0) for k in hand_grads}) / _norm(hand_grads)
        assert share >= GUARD_SHARE, (f"fixture degenerate for {name}: the perturbation carries {share:.2e} of "
                                      f"the step's gradient norm (needs {GUARD_SHARE})")
        if on_input:
            assert outcome.adv_loss is None  # no second pass, no term
        else:
            assert outcome.adv_loss == pytest.approx(kl_sum / 3, rel=1e-6)  # the batch's mean, through float32
    # what the step reports: the task loss's batch mean (of the noisy input's, for a provider that perturbs
    # step 1's input), no skip, and the passes it ran
    reported = loss.item() * normaliser if on_input else loss_sum.item()
    assert outcome.task_loss == pytest.approx(reported / 3, rel=1e-6) and not outcome.adv_skipped
    assert (outcome.forwards, outcome.backwards) == PASSES[name], name
    assert hand_grads.keys() == step_grads.keys()
    scale = max(g.abs().max().item() for g in hand_grads.values())
    for key in hand_grads:  # float64: the two computations agree to rounding, far under the term's share
        torch.testing.assert_close(step_grads[key], hand_grads[key], rtol=1e-7, atol=1e-9 * scale, msg=key)
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_losses_of_half_precision_logits_are_computed_in_float32(dtype):
    """Under autocast the logits come in half precision; the KL between near-equal predictions would drown in it."""
    from mt_dnn.losses import cross_entropy

    torch.manual_seed(0)
    logits = torch.randn(4, 3) * 3
    adv = logits + 0.3 * torch.randn(4, 3)  # KL ~1e-2: far above float32 rounding of the log-probabilities
    labels = torch.tensor([0, 1, 2, 0])
    kl = symmetric_kl(logits.to(dtype), adv.to(dtype), reduction="sum")
    ce = cross_entropy(logits.to(dtype), labels, reduction="sum")
    assert kl.dtype == ce.dtype == torch.float32
    p, q = logits.to(dtype).float().log_softmax(-1), adv.to(dtype).float().log_softmax(-1)
    expected = (p.exp() * (p - q)).sum() + (q.exp() * (q - p)).sum()
    assert kl.item() == pytest.approx(expected.item(), rel=1e-4)
    assert ce.item() == pytest.approx(-p[torch.arange(4), labels].sum().item(), rel=1e-6)


def test_registry_names_aliases_and_option_ownership():
    expected = {"none", "smart", "1-1", "1-2", "2-1", "2-2", "2-3", "wordnet_1.0", "1-1_1.0", "wordnet_0.5",
                "r3f", "1-1_random", "neftune"}
    assert expected <= set(provider_names())
    assert get_spec("similar-top1").name == "1-1"
    from noise_training.errors import ProviderConfigError as ConfigError  # the registry's own error type

    with pytest.raises(ConfigError, match="--top_k does not apply to --perturbation 1-1"):
        resolve_options(name="1-1", given={"top_k": 5})
    with pytest.raises(ConfigError, match="--noise_size: fixed to 1.0 by --perturbation 1-1_1.0"):
        resolve_options(name="1-1_1.0", given={"noise_size": 0.3})
    with pytest.raises(ConfigError, match=r"--noise_size: expected a number in \[0.0, 1.0\], got 1.5"):
        resolve_options(name="1-1", given={"noise_size": 1.5})
    with pytest.raises(ConfigError, match=r"unknown provider \(choices: none, "):
        resolve_options(name="2-4", given={})
    _, options = resolve_options(name="smart", given={})
    assert options["adv_step_size"] == 1e-5 and options["adv_noise_var"] == 1e-5 and options["adv_k"] == 1
    _, options = resolve_options(name="2-2", given={})
    assert options["noise_ratio"] == 0.15 and options["noise_size"] == 0.5


@pytest.mark.parametrize("name", provider_names())
def test_every_provider_refuses_an_option_meant_for_another(name):
    from noise_training.errors import ProviderConfigError as ConfigError
    from noise_training.registry import all_options

    owned = {option.name for option in get_spec(name).options} | set(get_spec(name).fixed)
    foreign = sorted(set(all_options()) - owned)
    assert foreign, "every provider leaves some option to the others"
    for option in foreign:
        value = all_options()[option].default
        with pytest.raises(ConfigError, match=f"^--{option} does not apply to --perturbation {name} "):
            resolve_options(name=name, given={option: value})
