"""SMART, both of them: the corrected ``smart`` and MT-DNN's ``smart_mtdnn``, on models with signal.

The fixtures are tiny random models initialised wide (``SIGNAL_INIT``) so that their
predictions, and the adversarial term, depend on the input; expected values come from
transcriptions written here, one line per step of the algorithm, calling no project helper.
"""

from __future__ import annotations

import pytest
import torch

from mt_dnn.model import build_model
from mt_dnn.task_def import load_task_defs
from mt_dnn.training_step import run_training_step
from noise_training.registry import build_provider, resolve_options
from conftest import REPO_ROOT
from tiny_models import SIGNAL_INIT, synthetic_sentences, tiny_bert, tiny_roberta

TASK = load_task_defs(paths=[REPO_ROOT / "task_defs" / "anli.yml"])["anli"]
LENGTH = 40  # every batch padded to the same length, so one example's tensors line up across batches


def _setup(folder, *, head_scale: float):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = build_model(model_name=str(folder), tasks={"anli": TASK}, tokenizer=tokenizer)
    # float64, no dropout: every difference comes from the perturbation, not from float32 rounding of a
    # KL between nearly equal predictions (which moves SMART's step by ~0.5% of η between batch shapes)
    model.double().eval()
    with torch.no_grad():
        model.heads["anli"].classifier.weight.mul_(head_scale)
    sentences = synthetic_sentences(64, seed=3)
    batch = dict(tokenizer(sentences[:32], sentences[32:], padding="max_length", max_length=LENGTH,
                           truncation=True, return_tensors="pt", return_token_type_ids=True))
    batch["labels"] = torch.arange(32) % 3
    special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)))
    return {"model": model, "tokenizer": tokenizer, "batch": batch, "special_ids": special_ids}


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return _setup(tiny_bert(tmp_path_factory.mktemp("smart") / "bert", hidden=48, initializer_range=SIGNAL_INIT),
                  head_scale=10.0)


@pytest.fixture(scope="module")
def roberta(tmp_path_factory):
    return _setup(tiny_roberta(tmp_path_factory.mktemp("smart") / "roberta", hidden=48,
                               initializer_range=SIGNAL_INIT), head_scale=10.0)


def _provider(setup, name, tmp_path, **given):
    spec, options = resolve_options(name=name, given=given)
    return build_provider(name=spec.name, options=options, model=setup["model"], tokenizer=setup["tokenizer"],
                          cache_dir=tmp_path)


def _rows(batch, rows):
    return {key: value[rows] for key, value in batch.items()}


class _Recording:
    """Wraps a provider: fixes its initial noise per example and records the δ it returns."""

    def __init__(self, provider, initial_noise):
        self.provider, self.initial_noise, self.rows, self.deltas = provider, initial_noise, None, []
        self.needs_saliency, self.depends_on_step1 = provider.needs_saliency, provider.depends_on_step1
        provider.initial_noise = lambda like: self.initial_noise[self.rows].to(like.dtype)

    def perturb(self, ctx):
        result = self.provider.perturb(ctx)
        self.deltas.append(result.delta.clone())
        return result


def _step(setup, recording, rows, *, normaliser):
    recording.rows = rows
    setup["model"].zero_grad(set_to_none=True)
    return run_training_step(model=setup["model"], forward_model=setup["model"], provider=recording,
                             batch=_rows(setup["batch"], rows), task=TASK, adv_alpha=1.0,
                             special_ids=setup["special_ids"], normaliser=normaliser)


# ------------------------------------------------------------------- smart (corrected)

@pytest.mark.numerics
def test_smart_delta_of_an_example_does_not_depend_on_its_batch(bert, tmp_path):
    hidden = bert["model"].encoder.config.hidden_size
    torch.manual_seed(0)
    noise = torch.randn(32, LENGTH, hidden, dtype=torch.float64) * 1e-5
    recording = _Recording(_provider(bert, "smart", tmp_path), noise)
    everything = torch.arange(32)
    _step(bert, recording, everything, normaliser=32)
    in_32 = recording.deltas[-1]
    for start in range(0, 32, 8):  # gradient accumulation: 4 micro-batches of 8, one update of 32
        _step(bert, recording, everything[start:start + 8], normaliser=32)
    in_8 = torch.cat(recording.deltas[-4:])
    alone = []
    for row in (0, 5, 31):
        _step(bert, recording, everything[row:row + 1], normaliser=1)
        alone.append(recording.deltas[-1][0])
    # The step is η·g/(‖g‖∞ + ε) with ε comparable to g here: a batch-mean loss shrinks g by the batch
    # size and changes the step by about a third of η (measured in float32: 0.33 η between batches of 8
    # and 32, 0.49 η alone vs in 32); with the summed loss it is a property of the example alone.
    tolerance = dict(rtol=0, atol=1e-4 * 1e-5)
    torch.testing.assert_close(in_8, in_32, **tolerance)
    for row, delta in zip((0, 5, 31), alone):
        torch.testing.assert_close(delta, in_32[row], **tolerance)
    assert (in_32 - noise * (in_32 != 0)).abs().amax() > 0.5 * 1e-5  # a real step was taken


@pytest.mark.numerics
def test_smart_step_has_the_size_of_eta_per_token(bert, tmp_path):
    # σ 1e-4 in a batch of 32: the summed loss's gradient dwarfs ε = 1e-6, so the normalised step is η per
    # token (a batch-mean loss, 1/32 of it, gives a median of 0.95 η here)
    eta, sigma = 1e-3, 1e-4
    hidden = bert["model"].encoder.config.hidden_size
    torch.manual_seed(1)
    noise = torch.randn(32, LENGTH, hidden, dtype=torch.float64) * sigma
    recording = _Recording(_provider(bert, "smart", tmp_path, adv_step_size=eta, adv_noise_var=sigma), noise)
    _step(bert, recording, torch.arange(32), normaliser=32)
    special = torch.isin(bert["batch"]["input_ids"], bert["special_ids"])
    perturbable = bert["batch"]["attention_mask"].bool() & ~special
    step = (recording.deltas[-1] - noise * perturbable.unsqueeze(-1)).abs().amax(-1)
    ratio = step[perturbable] / eta
    assert ratio.median() > 0.99 and ratio.max() <= 1.0 + 1e-9, (ratio.median().item(), ratio.max().item())
    assert (step[~perturbable] == 0).all()


def _transcribed_smart(setup, noise, *, eta, epsilon, p_norm, k):
    """SMART's ascent as the papers write it, one line per step (the loss summed over the examples)."""
    model, batch = setup["model"], setup["batch"]
    mask = (batch["attention_mask"].bool() & ~torch.isin(batch["input_ids"], setup["special_ids"])).unsqueeze(-1)
    token_embeddings = model.encoder.get_input_embeddings()(batch["input_ids"]).detach()
    forward = lambda e: model(task="anli", inputs_embeds=e, attention_mask=batch["attention_mask"],
                              token_type_ids=batch["token_type_ids"])
    clean = forward(token_embeddings).detach()
    delta = noise * mask
    for _ in range(k):
        delta = delta.detach().requires_grad_(True)
        p, q = clean.log_softmax(-1), forward(token_embeddings + delta).log_softmax(-1)
        # SymKlCriterion: KL(p||q) + KL(q||p), each target detached, so with p detached only KL(p||q) moves δ
        kl = (p.exp() * (p - q)).sum() + (q.exp() * (q - p)).detach().sum()
        (g,) = torch.autograd.grad(kl, delta)
        g = g * mask
        norm = {"inf": g.abs().amax(-1, keepdim=True), "l2": g.pow(2).sum(-1, keepdim=True).sqrt(),
                "l1": g.abs().sum(-1, keepdim=True)}[p_norm]
        delta = delta.detach() + eta * g / (norm + epsilon) * mask
    return delta


@pytest.mark.numerics
@pytest.mark.parametrize("p_norm,k", [("inf", 1), ("l2", 1), ("l1", 1), ("inf", 2)])
def test_smart_delta_equals_the_transcribed_algorithm(bert, tmp_path, p_norm, k):
    eta, sigma, epsilon = 1e-2, 1e-3, 1e-6
    hidden = bert["model"].encoder.config.hidden_size
    torch.manual_seed(2)
    noise = torch.randn(32, LENGTH, hidden, dtype=torch.float64) * sigma
    recording = _Recording(_provider(bert, "smart", tmp_path, adv_step_size=eta, adv_noise_var=sigma,
                                     adv_p_norm=p_norm, adv_k=k), noise)
    outcome = _step(bert, recording, torch.arange(32), normaliser=32)
    assert (outcome.forwards, outcome.backwards) == (2 + k, 1 + k)  # step 1, K ascent passes, the final pass
    expected = _transcribed_smart(bert, noise, eta=eta, epsilon=epsilon, p_norm=p_norm, k=k)
    step_size = (expected - noise * (expected != 0)).abs().amax()
    assert step_size > 0.5 * eta / (LENGTH if p_norm == "l1" else 1)
    torch.testing.assert_close(recording.deltas[-1], expected, rtol=0, atol=1e-6 * step_size.item())


@pytest.mark.numerics
def test_smart_at_embedding_output_adds_delta_once_after_the_embedding_block(bert, tmp_path):
    model, batch = bert["model"], bert["batch"]
    provider = _provider(bert, "smart", tmp_path, smart_at="embedding_output", adv_step_size=1e-2, adv_noise_var=1e-3)
    torch.manual_seed(3)
    recording = _Recording(provider, torch.randn(32, LENGTH, model.encoder.config.hidden_size,
                                                 dtype=torch.float64) * 1e-3)
    captured = {}
    original = recording.perturb

    def keep(ctx):
        captured["result"] = original(ctx)
        return captured["result"]

    recording.perturb = keep
    outcome = _step(bert, recording, torch.arange(32), normaliser=32)
    delta = captured["result"].delta
    # By hand: δ added once to the embedding block's output (a hook written here), the ids fed as usual.
    handle = model.encoder.embeddings.register_forward_hook(lambda module, args, output: output + delta)
    try:
        with torch.no_grad():
            common = dict(task="anli", input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                          token_type_ids=batch["token_type_ids"])
            perturbed = model(**common)
    finally:
        handle.remove()
    with torch.no_grad():
        clean = model(**common)
    p, q = clean.log_softmax(-1), perturbed.log_softmax(-1)
    kl = ((p.exp() * (p - q)).sum(-1) + (q.exp() * (q - p)).sum(-1)).mean()
    assert delta.abs().amax() > 0.5e-2 and kl > 1e-6
    assert outcome.adv_loss == pytest.approx(kl.item(), rel=1e-6)


# ------------------------------------------------------------------- smart_mtdnn (MT-DNN's code)

def _transcribed_mtdnn(setup, noise, *, eta, sigma_noise_given=True, epsilon=1e-6, p_norm="inf"):
    """MT-DNN's SmartPerturbation (K 1; its _norm_grad for norm_p inf, l2, l1), one line per step; α = 1."""
    model, batch = setup["model"], setup["batch"]
    ids, mask, types = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
    encoder, head = model.encoder, lambda hidden: model.heads["anli"](model.pooler(hidden))
    use_types = encoder.config.type_vocab_size > 1
    kw = {"token_type_ids": types} if use_types else {}
    logits = head(encoder(input_ids=ids, attention_mask=mask, **kw).last_hidden_state)       # step 1, from ids
    embed = encoder.embeddings(input_ids=ids, **kw)                                           # embed_encode
    adv_input = lambda n: dict(inputs_embeds=embed.detach() + n, attention_mask=mask, **kw)  # no position ids
    noise = noise.clone().requires_grad_(True)
    adv_logits = head(encoder(**adv_input(noise)).last_hidden_state)
    p, y = adv_logits.softmax(-1), logits.detach().softmax(-1)
    rp = -(1.0 / (p.detach() + 1e-6) - 1 + 1e-6).log()
    ry = -(1.0 / (y + 1e-6) - 1 + 1e-6).log()
    ascent_loss = (p * (rp - ry) * 2).sum()                                                   # stable_kl, summed
    (g,) = torch.autograd.grad(ascent_loss, noise)
    moved = noise.detach() + g * eta
    if p_norm == "l1":
        new_noise, effective = moved.sign(), (g * eta).sign()
    else:
        scale = (moved.norm(dim=-1, keepdim=True) if p_norm == "l2" else moved.abs().amax(-1, keepdim=True)) + epsilon
        new_noise, effective = moved / scale, (g * eta) / scale
    final = head(encoder(inputs_embeds=embed + new_noise, attention_mask=mask, **kw).last_hidden_state)
    sym_kl = (torch.nn.functional.kl_div(final.log_softmax(-1), logits.detach().softmax(-1), reduction="batchmean")
              + torch.nn.functional.kl_div(logits.log_softmax(-1), final.detach().softmax(-1), reduction="batchmean"))
    task = torch.nn.functional.cross_entropy(logits, batch["labels"])
    return {"adv_input": embed.detach() + new_noise, "noise": new_noise, "ascent_loss": ascent_loss.item(),
            "adv_loss": sym_kl.item(), "loss": task + sym_kl,
            "logged": (effective.abs().mean() / embed.detach().abs().mean()).item()}


@pytest.mark.numerics
@pytest.mark.parametrize("which,p_norm", [("bert", "inf"), ("roberta", "inf"), ("bert", "l2"), ("bert", "l1")])
def test_smart_mtdnn_equals_the_transcription_of_mtdnn(which, p_norm, request, tmp_path):
    setup = request.getfixturevalue(which)
    model = setup["model"]
    eta = 1e-5
    torch.manual_seed(4)
    noise = torch.randn(32, LENGTH, model.encoder.config.hidden_size, dtype=torch.float64) * 1e-5
    provider = _provider(setup, "smart_mtdnn", tmp_path, adv_p_norm=p_norm)
    recording = _Recording(provider, noise)
    seen = {}
    original = recording.perturb

    def keep(ctx):
        result = original(ctx)
        seen["result"], seen["ctx"] = result, ctx
        return result

    recording.perturb = keep
    outcome = _step(setup, recording, torch.arange(32), normaliser=32)
    ours = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    model.zero_grad(set_to_none=True)
    expected = _transcribed_mtdnn(setup, noise, eta=eta, p_norm=p_norm)
    expected["loss"].backward()
    theirs = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    result = seen["result"]
    torch.testing.assert_close(result.delta, expected["noise"], rtol=1e-4, atol=1e-6)
    # the norm ≈ 1 per position after the step: MT-DNN's renormalisation, kept on purpose (l1: signs)
    size = result.delta.norm(dim=-1) if p_norm == "l2" else result.delta.abs().amax(-1)
    assert size.min() > 0.9 and size.max() < 1.0 + 1e-6
    torch.testing.assert_close(result.embeddings, expected["adv_input"], rtol=1e-4, atol=1e-5)
    assert outcome.adv_loss == pytest.approx(expected["adv_loss"], rel=1e-3)
    assert expected["adv_loss"] > 1e-3, "fixture degenerate: the adversarial term is negligible"
    assert (outcome.forwards, outcome.backwards) == (3, 2)
    # the noise share is measured against the embedding block's output, which smart_mtdnn perturbs, over
    # the perturbable tokens (real, not special) as for every provider
    ids = setup["batch"]["input_ids"]
    tokens = setup["batch"]["attention_mask"].bool() & ~torch.isin(ids, setup["special_ids"])
    embed = expected["adv_input"] - expected["noise"]
    share = (expected["noise"].norm(dim=-1)[tokens] / embed.norm(dim=-1)[tokens]).mean().item()
    assert outcome.stats["noise_share"] == pytest.approx(share, rel=1e-3)
    assert outcome.stats["mtdnn_logged_share"] == pytest.approx(expected["logged"], rel=1e-3)
    assert theirs.keys() == ours.keys()
    for name, grad in theirs.items():
        scale = grad.abs().max().item()
        torch.testing.assert_close(ours[name], grad, rtol=0, atol=1e-3 * scale + 1e-9, msg=name)
    # the gradient reaches the embedding block's parameters through `embed` too (word embeddings, LayerNorm)
    assert "encoder.embeddings.LayerNorm.weight" in ours


def test_smart_mtdnn_non_finite_gradient_skips_and_counts(bert, tmp_path):
    model = bert["model"]
    provider = _provider(bert, "smart_mtdnn", tmp_path)

    def poison(module, args, output):
        if output.requires_grad:
            output.register_hook(lambda grad: torch.full_like(grad, float("nan")))

    handle = model.encoder.encoder.layer[0].register_forward_hook(
        lambda module, args, output: poison(module, args, output[0] if isinstance(output, tuple) else output))
    try:
        for _ in range(2):
            outcome = run_training_step(model=model, forward_model=model, provider=provider, batch=bert["batch"],
                                        task=TASK, adv_alpha=1.0, special_ids=bert["special_ids"], normaliser=32)
    finally:
        handle.remove()
        model.zero_grad(set_to_none=True)
    assert provider.skipped_steps == 2
    assert outcome.adv_skipped and outcome.adv_loss is None
    assert outcome.forwards == 2 and outcome.backwards == 2  # step 1 + the ascent pass; no final pass


@pytest.mark.parametrize("name", ["smart", "smart_mtdnn"])
def test_a_skip_at_the_first_of_two_ascent_steps_reports_the_passes_that_ran(bert, tmp_path, name):
    model = bert["model"]
    provider = _provider(bert, name, tmp_path, adv_k=2)

    def poison(module, args, output):
        output = output[0] if isinstance(output, tuple) else output
        if output.requires_grad:
            output.register_hook(lambda grad: torch.full_like(grad, float("nan")))

    handle = model.encoder.encoder.layer[0].register_forward_hook(poison)
    try:
        outcome = run_training_step(model=model, forward_model=model, provider=provider, batch=bert["batch"],
                                    task=TASK, adv_alpha=1.0, special_ids=bert["special_ids"], normaliser=32)
    finally:
        handle.remove()
        model.zero_grad(set_to_none=True)
    assert outcome.adv_skipped and provider.skipped_steps == 1
    # step 1 and the first ascent pass; the second ascent step and the adversarial pass never ran
    assert (outcome.forwards, outcome.backwards) == (2, 2)


# ------------------------------------------------------------------- shared pieces

@pytest.mark.parametrize("name", ["smart", "smart_mtdnn"])
def test_initial_noise_is_gaussian_with_the_given_sigma(bert, tmp_path, name):
    provider = _provider(bert, name, tmp_path, adv_noise_var=1e-3)
    torch.manual_seed(0)
    noise = provider.initial_noise(torch.empty(64, LENGTH, 32, dtype=torch.float64))
    assert noise.shape == (64, LENGTH, 32) and noise.dtype == torch.float64
    assert noise.std().item() == pytest.approx(1e-3, rel=0.02) and abs(noise.mean().item()) < 1e-4


def test_mtdnn_stable_kl_of_half_precision_logits_is_float32():
    from noise_training.providers.smart_mtdnn import stable_kl

    torch.manual_seed(0)
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    assert stable_kl(a.half(), b.half()).dtype == torch.float32
    assert stable_kl(a.double(), b.double()).dtype == torch.float64
    assert stable_kl(a.half(), b.half()).item() == pytest.approx(stable_kl(a, b).item(), rel=1e-2)


@pytest.mark.parametrize("name", ["smart", "smart_mtdnn"])
def test_norm_and_location_options_accept_their_choices_and_refuse_others(name):
    from noise_training.errors import ProviderConfigError

    for p_norm in ("inf", "l2", "l1"):
        assert resolve_options(name=name, given={"adv_p_norm": p_norm})[1]["adv_p_norm"] == p_norm
    with pytest.raises(ProviderConfigError, match=r"--adv_p_norm: expected one of inf, l2, l1, got 'l3'"):
        resolve_options(name=name, given={"adv_p_norm": "l3"})
    if name == "smart":
        assert resolve_options(name=name, given={"smart_at": "embedding_output"})[1]["smart_at"] == "embedding_output"
        with pytest.raises(ProviderConfigError, match="--smart_at: expected one of token_embeddings, embedding_output"):
            resolve_options(name=name, given={"smart_at": "layer2"})
