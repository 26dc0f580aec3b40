"""The training step's fast paths give what the straightforward code gives.

Providers whose noise needs nothing from step 1 are asked for it first, and steps 1 and 2
run as one forward pass over [clean; perturbed]; the perturbation statistics are computed on
the device without boolean indexing. On a tiny real BERT with dropout off and a fixed seed,
the fused and the two-pass step must give the same perturbation, losses, statistics and
parameter gradients (up to float rounding), and the fused step must run the model once. The
tiny models are initialised wide (``SIGNAL_INIT``) and run in float64, so the adversarial term is
far above rounding and the comparisons' tolerances are relative to the compared gradients.
"""

from __future__ import annotations

import pytest
import torch

from mt_dnn.model import build_model
from mt_dnn.task_def import load_task_defs
from mt_dnn.training_step import run_training_step
from noise_training.base import Perturbation, perturbation_stats
from noise_training.registry import build_provider, provider_names, resolve_options
from conftest import REPO_ROOT
from provider_setup import SETTINGS
from tiny_models import SIGNAL_INIT, tiny_bert, tiny_roberta

TASK = load_task_defs(paths=[REPO_ROOT / "task_defs" / "anli.yml"])["anli"]
PAIRS = [
    ("the man drives a big car in the city .", "a man drives an auto ."),
    ("she is happy and glad today .", "he was sad ."),
    ("a small dog sleeps .", "the little cat eats in the kitchen with a large dog ."),
    ("the old woman reads a new book in the garden", "a woman reads ."),
]


def _setup(folder, cache):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = build_model(model_name=str(folder), tasks={"anli": TASK}, tokenizer=tokenizer)
    model.double().eval()  # no dropout: the fused pass would draw its masks for 2B rows at once
    with torch.no_grad():  # sharper logits: the KL between clean and perturbed predictions is ~1e-2, not ~1e-8
        model.heads["anli"].classifier.weight.mul_(10.0)
    batch = dict(tokenizer([p for p, _ in PAIRS], [h for _, h in PAIRS], padding=True, return_tensors="pt",
                           return_token_type_ids=True))
    batch["labels"] = torch.tensor([0, 2, 1, 0])
    special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)))
    return {"model": model, "tokenizer": tokenizer, "batch": batch, "special_ids": special_ids, "cache": cache}


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    root = tmp_path_factory.mktemp("fast_bert")
    return _setup(tiny_bert(root / "bert", hidden=48, initializer_range=SIGNAL_INIT), root / "cache")


@pytest.fixture(scope="module")
def roberta(tmp_path_factory):
    root = tmp_path_factory.mktemp("fast_roberta")
    return _setup(tiny_roberta(root / "roberta", hidden=48, initializer_range=SIGNAL_INIT), root / "cache")


def _assert_close_relative(got, want):
    """Gradients equal to rounding, relative to the largest gradient entry (float64: 1e-9 is far above it)."""
    assert got.keys() == want.keys()
    scale = max(g.abs().max().item() for g in want.values())
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-9, atol=1e-9 * scale, msg=key)


def _provider(tiny, name, given=None):
    spec, options = resolve_options(name=name, given=given or {})
    return build_provider(name=spec.name, options=options, model=tiny["model"], tokenizer=tiny["tokenizer"],
                          cache_dir=tiny["cache"])


class _Recording:
    """Wraps a real provider and keeps what it returned (and whether it saw step 1's logits)."""

    def __init__(self, provider):
        self.provider = provider
        self.needs_saliency = getattr(provider, "needs_saliency", False)
        self.depends_on_step1 = getattr(provider, "depends_on_step1", True)
        self.perturbs_step1_input = getattr(provider, "perturbs_step1_input", False)
        self.options = provider.options
        self.result: Perturbation | None = None
        self.saw_logits = None

    def perturb(self, ctx):
        self.saw_logits = ctx.logits is not None
        self.result = self.provider.perturb(ctx)
        return self.result


def _step(tiny, provider, *, fuse, model=None, seed=7):
    module = tiny["model"]
    module.zero_grad(set_to_none=True)
    calls = []
    handle = module.register_forward_pre_hook(lambda mod, args, kwargs: calls.append(kwargs["inputs_embeds"].shape[0]),
                                              with_kwargs=True)
    recording = _Recording(provider)
    torch.manual_seed(seed)
    try:
        outcome = run_training_step(model=model or module, forward_model=module, provider=recording,
                                    batch=tiny["batch"], task=TASK, adv_alpha=0.7, special_ids=tiny["special_ids"],
                                    normaliser=4.0, fuse_passes=fuse)
    finally:
        handle.remove()
    grads = {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
    module.zero_grad(set_to_none=True)
    return outcome, grads, recording, calls


def _fusable(provider) -> bool:
    """What the provider declares: a step 2 whose noise needs nothing from step 1."""
    return not (provider.depends_on_step1 or provider.needs_saliency or provider.perturbs_step1_input)


@pytest.mark.numerics
@pytest.mark.parametrize("name", provider_names())
def test_fused_step_equals_two_pass_step(bert, name):
    provider = _provider(bert, name, SETTINGS.get(name))  # settings under which the term is visible
    fused, fused_grads, fused_seen, fused_calls = _step(bert, provider, fuse=True)
    plain, plain_grads, plain_seen, plain_calls = _step(bert, provider, fuse=False)
    n = bert["batch"]["labels"].shape[0]
    if not _fusable(provider):
        # nothing to fuse: the flag changes nothing, one model call of the batch per forward pass
        assert fused_calls == plain_calls == [n] * fused.forwards
        assert (fused.task_loss, fused.adv_loss, fused.stats) == (plain.task_loss, plain.adv_loss, plain.stats)
        _assert_close_relative(fused_grads, plain_grads)
        return

    assert fused_calls == [2 * n] and plain_calls == [n, n]  # one pass over [clean; perturbed] vs two
    assert fused_seen.saw_logits is False and plain_seen.saw_logits is True
    # the same noise (same seed, no dropout, so the provider's draws do not depend on when it runs)
    assert torch.equal(fused_seen.result.delta, plain_seen.result.delta)
    assert torch.equal(fused_seen.result.changed, plain_seen.result.changed)
    assert fused.task_loss == pytest.approx(plain.task_loss, rel=1e-5)
    assert fused.adv_loss == pytest.approx(plain.adv_loss, rel=1e-6)  # float64, reported through float32
    assert fused.adv_loss > 1e-3  # the second pass really saw the perturbed input (fixture with signal)
    assert (fused.forwards, fused.backwards) == (plain.forwards, plain.backwards) == (2, 1)
    assert fused.stats.keys() == plain.stats.keys()
    for key in fused.stats:
        assert fused.stats[key] == pytest.approx(plain.stats[key], rel=1e-6)
    assert fused_grads.keys() == plain_grads.keys()
    assert any(key.startswith("encoder.embeddings.word_embeddings") for key in fused_grads)
    _assert_close_relative(fused_grads, plain_grads)


@pytest.mark.numerics
def test_fused_step_on_roberta_position_ids(roberta):
    """RoBERTa numbers positions from the attention mask: the doubled batch must keep them."""
    provider = _provider(roberta, "1-1")
    fused, fused_grads, _, calls = _step(roberta, provider, fuse=True)
    plain, plain_grads, _, _ = _step(roberta, provider, fuse=False)
    assert calls == [2 * roberta["batch"]["labels"].shape[0]]
    assert fused.adv_loss == pytest.approx(plain.adv_loss, rel=1e-6)  # float64, reported through float32
    _assert_close_relative(fused_grads, plain_grads)


@pytest.mark.parametrize("name", ["smart", "2-2", "2-3"])
def test_providers_that_need_step_one_are_not_fused(bert, name):
    provider = _provider(bert, name)
    assert provider.depends_on_step1 is True
    outcome, _, seen, calls = _step(bert, provider, fuse=True)
    n = bert["batch"]["labels"].shape[0]
    assert seen.saw_logits is True
    expected = [n, n, n] if name == "smart" else [n, n]  # SMART's ascent pass runs the model once more
    assert calls == expected and outcome.adv_loss is not None


@pytest.mark.numerics
def test_fused_step_through_a_ddp_wrapper(bert, tmp_path):
    """One forward call per step through DistributedDataParallel; same gradients as the bare module."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    if dist.is_initialized():
        pytest.skip("a process group is already initialised in this process")
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        provider = _provider(bert, "1-1")
        wrapped = DistributedDataParallel(bert["model"])
        outcome, grads, _, calls = _step(bert, provider, fuse=True, model=wrapped)
        plain, plain_grads, _, _ = _step(bert, provider, fuse=False)
    finally:
        dist.destroy_process_group()
    assert calls == [2 * bert["batch"]["labels"].shape[0]]
    assert outcome.adv_loss == pytest.approx(plain.adv_loss, rel=1e-6)  # float64, reported through float32
    _assert_close_relative(grads, plain_grads)


def _straightforward_stats(*, perturbation, token_embeddings, perturbable_mask):
    """The statistics as first written: boolean indexing and a host read per figure."""
    changed = perturbation.changed & perturbable_mask
    n_perturbable, n_changed = int(perturbable_mask.sum()), int(changed.sum())
    reference = perturbation.reference if perturbation.reference is not None else token_embeddings
    noise_share = 0.0
    if n_changed:
        delta_norm = perturbation.delta.float().norm(dim=-1)[changed]
        ref_norm = reference.detach().float().norm(dim=-1)[changed].clamp_min(1e-12)
        noise_share = float((delta_norm / ref_norm).mean())
    return {"changed_share": n_changed / n_perturbable if n_perturbable else 0.0, "noise_share": noise_share,
            "changed_tokens": float(n_changed), "perturbable_tokens": float(n_perturbable)}


@pytest.mark.numerics
def test_on_device_stats_equal_the_straightforward_ones():
    torch.manual_seed(3)
    emb = torch.randn(5, 9, 16)
    emb[0, 3] = 0.0  # a zero reference norm on a changed token: clamped, not a division by zero
    delta = torch.randn(5, 9, 16) * 0.1
    changed = torch.rand(5, 9) > 0.4
    mask = torch.rand(5, 9) > 0.2
    mask[0, 3] = changed[0, 3] = True
    cases = [
        Perturbation(embeddings=emb + delta, delta=delta, changed=changed),
        Perturbation(embeddings=emb, delta=delta, changed=changed, reference=emb * 2),
        Perturbation(embeddings=emb, delta=torch.zeros_like(delta), changed=torch.zeros_like(changed)),
    ]
    for perturbation in cases:
        got = perturbation_stats(perturbation=perturbation, token_embeddings=emb, perturbable_mask=mask)
        want = _straightforward_stats(perturbation=perturbation, token_embeddings=emb, perturbable_mask=mask)
        assert got.keys() == want.keys()
        for key in want:
            assert got[key] == pytest.approx(want[key], rel=1e-6), key
    empty = perturbation_stats(perturbation=cases[0], token_embeddings=emb, perturbable_mask=torch.zeros_like(mask))
    assert empty["changed_share"] == 0.0 and empty["noise_share"] == 0.0


@pytest.mark.numerics
def test_step_stats_match_the_provider_output(bert):
    """The step's reported statistics are those of the perturbation it used (read in one transfer)."""
    for name in ("1-1", "2-2"):
        outcome, _, seen, _ = _step(bert, _provider(bert, name), fuse=True)
        from noise_training.base import perturbable_token_mask

        batch = bert["batch"]
        mask = perturbable_token_mask(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                      special_ids=bert["special_ids"])
        with torch.no_grad():
            emb = bert["model"].token_embeddings(batch["input_ids"])
        want = _straightforward_stats(perturbation=seen.result, token_embeddings=emb, perturbable_mask=mask)
        for key in want:
            assert outcome.stats[key] == pytest.approx(want[key], rel=1e-6), (name, key)
        assert 0 < outcome.stats["changed_share"] <= 1


@pytest.mark.numerics
def test_similar_word_noise_equals_the_formula(bert):
    """E + s·(E_nb − E) on perturbable positions, exactly E elsewhere (the optimised arithmetic)."""
    provider = _provider(bert, "1-1")
    batch = bert["batch"]
    from noise_training.base import StepContext, perturbable_token_mask

    mask = perturbable_token_mask(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                  special_ids=bert["special_ids"])
    emb = bert["model"].token_embeddings(batch["input_ids"])
    ctx = StepContext(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                      token_type_ids=batch["token_type_ids"], token_embeddings=emb, logits=None,
                      perturbable_mask=mask, forward=None, adv_loss=None)
    result = provider.perturb(ctx)
    weight = bert["model"].encoder.get_input_embeddings().weight.detach()
    neighbour = weight[provider.neighbors[batch["input_ids"], 0]]
    straightforward = torch.where(mask.unsqueeze(-1), 0.5 * (neighbour - emb.detach()), 0.0)
    assert torch.equal(result.delta, straightforward)  # bit for bit: the same float operations
    torch.testing.assert_close(result.embeddings.detach(), emb.detach() + straightforward, rtol=0, atol=0)
    assert result.embeddings.requires_grad and not result.delta.requires_grad
    assert torch.equal(result.changed, mask)
