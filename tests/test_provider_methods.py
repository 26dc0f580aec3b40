"""Each perturbation method's own behaviour, on the provider tests' tiny BERT with signal.

What test_providers.py checks for every registered provider (shapes, specials, determinism, the
step's gradient against the formula) is not repeated here: these are the methods' own rules
(1-1_1.0 lands on the neighbour, 1-2 draws from the top ten, partial counts and saliency,
SMART's step and its NaN guard, WordNet's whole-word rule and midpoint, 2-1's positions, and
placeholder tokens never chosen).
"""

from __future__ import annotations

import pytest
import torch

from conftest import REPO_ROOT
from mt_dnn.losses import symmetric_kl
from mt_dnn.model import build_model
from mt_dnn.training_step import run_training_step
from provider_setup import TASK, make_context, make_provider, signal_bert_setup


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return signal_bert_setup(tmp_path_factory.mktemp("provider_methods"))


# ---------------------------------------------------------------------------------- similar words

def test_one_one_full_gives_exactly_the_neighbour(tiny):
    provider = make_provider(tiny, "1-1_1.0")
    ctx, _ = make_context(tiny, provider)
    result = provider.perturb(ctx)
    weight = tiny["model"].encoder.get_input_embeddings().weight
    neighbours = weight[provider.neighbors[ctx.input_ids, 0]]
    mask = ctx.perturbable_mask
    torch.testing.assert_close(result.embeddings[mask], neighbours[mask], rtol=0, atol=1e-6)


def test_one_one_half_way(tiny):
    provider = make_provider(tiny, "1-1")
    ctx, _ = make_context(tiny, provider)
    result = provider.perturb(ctx)
    weight = tiny["model"].encoder.get_input_embeddings().weight
    expected = 0.5 * (ctx.token_embeddings + weight[provider.neighbors[ctx.input_ids, 0]])
    mask = ctx.perturbable_mask
    torch.testing.assert_close(result.embeddings[mask], expected[mask])


def test_one_two_draws_uniformly_from_the_top_ten_only(tiny):
    provider = make_provider(tiny, "1-2")
    assert provider.neighbors.shape[1] == 10
    token = tiny["tokenizer"].convert_tokens_to_ids("car")
    ids = torch.full((200, 50), token)
    draws = torch.cat([provider.choose_neighbors(ids).flatten() for _ in range(3)])
    allowed = set(provider.neighbors[token].tolist())
    counts = torch.bincount(draws, minlength=provider.neighbors.max() + 1)
    assert set(draws.unique().tolist()) == allowed  # only the top 10, and all of them
    seen = counts[list(allowed)].float()
    assert seen.min() > 0.8 * seen.mean() and seen.max() < 1.2 * seen.mean()  # 30,000 draws, uniform


# ---------------------------------------------------------------------------------- partial noise

def test_partial_count_per_example():
    from noise_training.providers.partial import tokens_to_change

    perturbable = torch.zeros(5, 40, dtype=torch.bool)
    for row, n in enumerate([1, 3, 10, 20, 37]):
        perturbable[row, 1 : 1 + n] = True
    # round-half-up(0.15 n), at least one: 0.15→1, 0.45→1, 1.5→2, 3.0→3, 5.55→6
    assert tokens_to_change(perturbable=perturbable, ratio=0.15).tolist() == [1, 1, 2, 3, 6]


@pytest.mark.parametrize("name", ["2-1", "2-2", "2-3"])
def test_partial_providers_change_exactly_the_count(tiny, name):
    from noise_training.providers.partial import tokens_to_change

    provider = make_provider(tiny, name)
    ctx, _ = make_context(tiny, provider)
    result = provider.perturb(ctx)
    expected = tokens_to_change(perturbable=ctx.perturbable_mask, ratio=0.15)
    assert result.changed.sum(1).tolist() == expected.tolist()


def test_saliency_selection_on_a_hand_checked_example():
    from noise_training.providers.partial import select_top

    saliency = torch.tensor([[9.0, 0.5, 3.0, 7.0, 0.1, 2.0, 8.0, 0.0]])
    perturbable = torch.tensor([[False, True, True, True, True, True, True, False]])  # [CLS] ... [PAD]
    count = torch.tensor([2])
    high = select_top(scores=saliency, perturbable=perturbable, count=count)
    low = select_top(scores=-saliency, perturbable=perturbable, count=count)
    assert high.nonzero()[:, 1].tolist() == [3, 6]  # 7.0 and 8.0; [CLS]'s 9.0 is not perturbable
    assert low.nonzero()[:, 1].tolist() == [1, 4]  # 0.5 and 0.1; padding's 0.0 never counts


def test_wordnet_providers_use_the_lookup_they_are_given(tiny):
    from noise_training.synonyms import load_or_build_synonym_table

    keys = set()
    for lookup in ("exact", "morphy"):
        provider = make_provider(tiny, "wordnet_1.0", wordnet_lookup=lookup)
        expected = load_or_build_synonym_table(tokenizer=tiny["tokenizer"], cache_dir=tiny["cache"] / "synonyms",
                                               lookup=lookup)
        assert provider.table.key == expected.key
        assert torch.equal(provider.table.offsets.cpu(), expected.offsets)
        keys.add(provider.table.key)
    assert len(keys) == 2


def test_noise_of_size_zero_changes_nothing_and_says_so(tiny):
    provider = make_provider(tiny, "1-1", noise_size=0.0)
    ctx, _ = make_context(tiny, provider)
    result = provider.perturb(ctx)
    assert not result.changed.any() and not result.delta.abs().max() > 0
    assert torch.equal(result.embeddings, ctx.token_embeddings)


@pytest.mark.parametrize("name", ["2-2", "2-3"])
def test_saliency_providers_use_the_step_one_gradient(tiny, name):
    """2-2 changes the tokens of highest saliency, 2-3 those of lowest (step 1's gradient)."""
    provider = make_provider(tiny, name)
    ctx, _ = make_context(tiny, provider)
    assert provider.needs_saliency and ctx.saliency is not None
    result = provider.perturb(ctx)
    for row in range(ctx.input_ids.shape[0]):
        chosen = ctx.saliency[row][result.changed[row]]
        others = ctx.saliency[row][ctx.perturbable_mask[row] & ~result.changed[row]]
        assert chosen.numel() and others.numel()
        assert ctx.saliency[row][ctx.perturbable_mask[row]].unique().numel() > 1, "fixture degenerate: flat saliency"
        if name == "2-2":
            assert chosen.min() >= others.max()
        else:
            assert chosen.max() <= others.min()


# ---------------------------------------------------------------------------------- SMART

def test_smart_noise_after_the_step_matches_the_formula(tiny):
    provider = make_provider(tiny, "smart", adv_step_size=1e-3)
    ctx, _ = make_context(tiny, provider)
    torch.manual_seed(5)
    result = provider.perturb(ctx)
    mask = ctx.perturbable_mask.unsqueeze(-1).float()
    torch.manual_seed(5)
    delta0 = (torch.randn_like(ctx.token_embeddings) * 1e-5 * mask).requires_grad_(True)
    adv = ctx.forward(inputs_embeds=ctx.token_embeddings.detach() + delta0)
    (grad,) = torch.autograd.grad(symmetric_kl(ctx.logits.detach(), adv, reduction="sum"), delta0)
    grad = grad * mask
    expected = delta0.detach() + 1e-3 * grad / (grad.abs().amax(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(result.delta, expected * mask, rtol=1e-5, atol=1e-9)
    assert result.extra_forwards == 1 and result.extra_backwards == 1
    # the step is small: no renormalisation of the whole delta to norm 1 (an MT-DNN defect)
    assert result.delta.abs().max() <= 1e-3 + 1e-4


def test_smart_ascent_increases_the_adversarial_loss(tiny):
    # On this model with signal the ascent is measurable at small sizes: σ 1e-3, an ∞-norm step of 1e-2
    # (and a negligible epsilon); compared with a random step of the same size.
    settings = dict(adv_step_size=1e-2, adv_noise_var=1e-3, adv_epsilon=1e-12)
    provider = make_provider(tiny, "smart", **settings)
    ctx, _ = make_context(tiny, provider)
    torch.manual_seed(2)
    result = provider.perturb(ctx)
    mask = ctx.perturbable_mask.unsqueeze(-1)
    torch.manual_seed(2)
    initial = torch.randn_like(ctx.token_embeddings) * 1e-3 * mask
    random_step = initial + 1e-2 * torch.sign(torch.randn_like(initial)) * mask  # same size, no gradient
    with torch.no_grad():
        kl = lambda delta: symmetric_kl(ctx.logits, ctx.forward(inputs_embeds=ctx.token_embeddings + delta)).item()
        before, after, unguided = kl(initial), kl(result.delta), kl(random_step)
    assert after > 10 * before and after > 2 * unguided, (before, after, unguided)


def test_smart_inner_step_leaves_parameter_gradients_alone(tiny):
    provider = make_provider(tiny, "smart")
    tiny["model"].zero_grad(set_to_none=True)
    ctx, _ = make_context(tiny, provider)
    provider.perturb(ctx)
    assert all(p.grad is None for p in tiny["model"].parameters())


def test_smart_non_finite_gradient_skips_and_counts(tiny):
    model = tiny["model"]
    provider = make_provider(tiny, "smart")
    # A NaN gradient flowing back out of the encoder, as an fp16 overflow would produce.
    def poison(module, args, output):
        if output.requires_grad:
            output.register_hook(lambda grad: torch.full_like(grad, float("nan")))

    handle = model.encoder.embeddings.register_forward_hook(poison)
    try:
        ctx, _ = make_context(tiny, provider)
        result = provider.perturb(ctx)
        assert result.skipped and provider.skipped_steps == 1 and not result.changed.any()
        # the ascent pass ran (one forward, one backward: K = 1) before its gradient was found non-finite
        assert (result.extra_forwards, result.extra_backwards) == (provider.k, provider.k) == (1, 1)
        ctx, _ = make_context(tiny, provider)
        assert provider.perturb(ctx).skipped and provider.skipped_steps == 2  # every skip counts
    finally:
        handle.remove()
    outcome = run_training_step(model=model, forward_model=model, provider=_Skipping(result), batch=tiny["batch"],
                                task=TASK, adv_alpha=1.0, special_ids=tiny["special_ids"], normaliser=3.0)
    assert outcome.adv_skipped and outcome.adv_loss is None and outcome.forwards == 1 + result.extra_forwards
    model.zero_grad(set_to_none=True)


class _Skipping:
    needs_saliency = False

    def __init__(self, result):
        self.result = result

    def perturb(self, ctx):
        return self.result


def test_smart_at_embedding_output_uses_a_hook_and_adds_nothing_twice(tiny):
    provider = make_provider(tiny, "smart", smart_at="embedding_output", adv_step_size=1e-3)
    ctx, _ = make_context(tiny, provider)
    result = provider.perturb(ctx)
    assert torch.equal(result.embeddings, ctx.token_embeddings)  # token embeddings untouched
    assert (result.extra_forwards, result.extra_backwards) == (1, 1)  # its ascent pass, K = 1
    assert result.reference is not None and result.reference.shape == result.delta.shape
    model, batch = tiny["model"], tiny["batch"]
    common = dict(task="anli", attention_mask=batch["attention_mask"], token_type_ids=batch["token_type_ids"])
    with torch.no_grad():
        clean = model(inputs_embeds=ctx.token_embeddings, **common)
        with result.forward_context():
            hooked = model(inputs_embeds=ctx.token_embeddings, **common)
        after = model(inputs_embeds=ctx.token_embeddings, **common)
    assert not torch.equal(clean, hooked) and torch.equal(clean, after)  # the hook is gone afterwards


# ---------------------------------------------------------------------------------- WordNet

def test_wordnet_changes_only_whole_words_with_synonyms(tiny):
    provider = make_provider(tiny, "wordnet_1.0")
    ctx, _ = make_context(tiny, provider)
    torch.manual_seed(0)
    result = provider.perturb(ctx)
    tokenizer = tiny["tokenizer"]
    weight = tiny["model"].encoder.get_input_embeddings().weight
    tokens = [tokenizer.convert_ids_to_tokens(row) for row in ctx.input_ids.tolist()]
    changed_words = {tokens[r][c] for r, c in result.changed.nonzero().tolist()}
    assert {"car", "happy"} & changed_words
    assert not {"the", ".", "a"} & changed_words  # no synonyms (or, for "a", none among single tokens here)
    for r, c in result.changed.nonzero().tolist():
        replacement = (weight - result.embeddings[r, c]).abs().sum(-1).argmin().item()
        assert replacement in provider.table.synonyms_of(ctx.input_ids[r, c].item())


def test_wordnet_half_moves_exactly_to_the_midpoint_of_a_listed_synonym(tiny):
    provider = make_provider(tiny, "wordnet_0.5")
    ctx, _ = make_context(tiny, provider)
    weight = tiny["model"].encoder.get_input_embeddings().weight.detach()
    original = ctx.token_embeddings.detach()
    scale = original.abs().max().item()
    drawn = set()
    for seed in range(6):
        torch.manual_seed(seed)
        result = provider.perturb(ctx)
        got = result.embeddings.detach()
        assert result.changed.any()
        assert torch.equal(got[~result.changed], original[~result.changed])  # elsewhere exactly unchanged
        for r, c in result.changed.nonzero().tolist():
            token, e = ctx.input_ids[r, c].item(), original[r, c]
            # E + 0.5 (E_syn - E) for the one synonym that was drawn (float64: equal to rounding)
            matches = [s for s in provider.table.synonyms_of(token)
                       if torch.allclose(got[r, c], e + 0.5 * (weight[s] - e), rtol=0, atol=1e-12 * scale)]
            assert len(matches) == 1, (tiny["tokenizer"].convert_ids_to_tokens(token), matches)
            drawn.add((token, matches[0]))
    car = tiny["tokenizer"].convert_tokens_to_ids("car")
    assert len({s for t, s in drawn if t == car}) == 2  # auto and automobile: the synonym is drawn


# ---------------------------------------------------------------------------------- 2-1 randomness

def test_two_one_positions_vary_with_the_seed_and_cover_every_position(tiny):
    provider = make_provider(tiny, "2-1")
    ctx, _ = make_context(tiny, provider)
    mask = ctx.perturbable_mask
    n = mask.sum(1)
    count = torch.floor(0.15 * n.double() + 0.5).clamp_min(1)  # round-half-up(15% of n), at least one
    draws = 800
    hits = torch.zeros(mask.shape)
    patterns = set()
    for seed in range(draws):
        torch.manual_seed(seed)
        changed = provider.perturb(ctx).changed
        assert changed.sum(1).tolist() == count.long().tolist()
        hits += changed
        patterns.add(tuple(changed.flatten().tolist()))
    assert len(patterns) > 0.9 * draws, f"only {len(patterns)} different choices in {draws} seeds"
    assert (hits[~mask] == 0).all()
    # every perturbable position is drawn, each about count/n of the time (uniform choice)
    expected = (count / n).unsqueeze(1).expand_as(hits)[mask] * draws
    assert (hits[mask] > 0).all(), hits
    assert ((hits[mask] - expected).abs() < 0.35 * expected).all(), (hits[mask], expected)


# ---------------------------------------------------------------------------------- placeholders

def test_placeholder_tokens_are_never_neighbours_nor_synonyms(tmp_path):
    """[unused…] and madeupword… rows identical to "car"'s: the nearest by far, and still never chosen."""
    from transformers import BertConfig, BertModel, BertTokenizer

    from noise_training.neighbors import never_neighbor_token_ids
    from tiny_models import WORDS

    placeholders = ["[unused0]", "[unused1]", "madeupword0000"]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *placeholders, *sorted(set(WORDS) | set(".,"))]
    tokenizer = BertTokenizer(vocab={t: i for i, t in enumerate(vocab)})
    torch.manual_seed(0)
    encoder = BertModel(BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=32, max_position_embeddings=64))
    car = vocab.index("car")
    placeholder_ids = [vocab.index(t) for t in placeholders]
    with torch.no_grad():
        for i in placeholder_ids:
            encoder.embeddings.word_embeddings.weight[i] = encoder.embeddings.word_embeddings.weight[car]
    encoder.save_pretrained(tmp_path / "bert")
    tokenizer.save_pretrained(tmp_path / "bert")
    assert set(placeholder_ids) <= set(never_neighbor_token_ids(tokenizer=tokenizer))
    model = build_model(model_name=str(tmp_path / "bert"), tasks={"anli": TASK}, tokenizer=tokenizer)
    setup = {"model": model, "tokenizer": tokenizer, "cache": tmp_path / "cache"}
    for name in ("1-1", "1-2"):
        table = make_provider(setup, name).neighbors
        assert not torch.isin(table, torch.tensor(placeholder_ids)).any(), name
    weight = model.encoder.get_input_embeddings().weight.detach()
    cosine = torch.nn.functional.cosine_similarity(weight, weight[car].unsqueeze(0), dim=-1)
    cosine[[car, *placeholder_ids]] = -2
    assert make_provider(setup, "1-1").neighbors[car, 0].item() == cosine.argmax().item()
    table = make_provider(setup, "wordnet_1.0").table
    assert not torch.isin(table.synonym_ids, torch.tensor(placeholder_ids)).any()
    assert table.counts()[placeholder_ids].sum() == 0 and table.counts()[car] > 0


def test_real_roberta_tokenizer_placeholders_are_never_neighbours():
    path = REPO_ROOT.parent / "shared" / "tokenizers" / "roberta"
    if not (path / "vocab.json").is_file():
        pytest.skip(f"{path} holds no vocab.json: RoBERTa's real tokenizer is needed for this test")
    from transformers import RobertaTokenizer

    from noise_training.neighbors import never_neighbor_token_ids

    tokenizer = RobertaTokenizer(vocab=str(path / "vocab.json"), merges=str(path / "merges.txt"))
    excluded = set(tokenizer.convert_ids_to_tokens(never_neighbor_token_ids(tokenizer=tokenizer)))
    assert {"madeupword0000", "madeupword0001", "madeupword0002", "<s>", "</s>", "<pad>", "<unk>"} <= excluded
    assert not excluded & {"Ġcar", "car", "made", "Ġmade"}



# ---------------------------------------------------------------------------------- R3F

def test_r3f_noise_lies_within_eps_and_is_centred(tiny):
    """Uniform(−ε, ε) at every position (fairseq perturbs every token): bounded, mean ≈ 0, spread ≈ ε/√3."""
    eps = 1e-5
    provider = make_provider(tiny, "r3f")
    assert provider.eps == eps and provider.noise_type == "uniform"
    ctx, _ = make_context(tiny, provider)
    torch.manual_seed(0)
    result = provider.perturb(ctx)
    assert result.delta.abs().max() <= eps and torch.equal(result.changed, ctx.attention_mask.bool())
    assert (result.delta.abs().amax(-1) > 0).all()  # special tokens and padding too
    # the law itself, on many draws of a larger batch
    noise = provider.draw(torch.zeros(64, 128, 48, dtype=torch.float64))
    n = noise.numel()
    assert noise.abs().max() <= eps and noise.abs().max() > 0.999 * eps
    assert abs(noise.mean().item()) < 4 * (eps / 3 ** 0.5) / n ** 0.5  # 4 standard errors of the mean
    assert noise.std().item() == pytest.approx(eps / 3 ** 0.5, rel=0.01)
    normal = make_provider(tiny, "r3f", noise_type="normal").draw(torch.zeros(64, 128, 48, dtype=torch.float64))
    assert normal.std().item() == pytest.approx(eps, rel=0.01) and abs(normal.mean().item()) < 4 * eps / n ** 0.5


def test_r3f_step_two_gives_the_embedding_table_no_gradient(tiny):
    """Step 2 runs on a detached copy: the adversarial term alone reaches the model but not the table."""
    model = tiny["model"]
    provider = make_provider(tiny, "r3f", noise_eps=0.3)  # a term far above rounding on this fixture
    table = model.encoder.get_input_embeddings().weight
    ctx, _ = make_context(tiny, provider)
    result = provider.perturb(ctx)
    assert not result.embeddings.requires_grad
    model.zero_grad(set_to_none=True)
    symmetric_kl(ctx.logits.detach(), ctx.forward(inputs_embeds=result.embeddings), reduction="sum").backward()
    assert table.grad is None or not table.grad.any()
    assert model.encoder.encoder.layer[0].attention.self.query.weight.grad.abs().max() > 0  # it reached the model
    # the guard: the same noise on the embeddings with their graph does reach the table
    model.zero_grad(set_to_none=True)
    adv = ctx.forward(inputs_embeds=ctx.token_embeddings + result.delta)
    symmetric_kl(ctx.logits.detach(), adv, reduction="sum").backward()
    assert table.grad.abs().max() > 0
    model.zero_grad(set_to_none=True)


def test_r3f_with_eps_zero_adds_exactly_nothing(tiny):
    """ε = 0: step 2's input is the clean input bit for bit, and (two passes) so are its predictions. The term
    is then the loss of two equal predictions, which is not the float 0: symmetric_kl takes log(softmax) of
    the target and log_softmax of the input, equal only to the last bit (−6e-17 here). In the fused pass the
    rows of the 2B batch go through differently blocked matrix products: 0 to rounding only."""
    model = tiny["model"]
    provider = make_provider(tiny, "r3f", noise_eps=0.0)
    ctx, _ = make_context(tiny, provider)
    result = provider.perturb(ctx)
    assert torch.equal(result.embeddings, ctx.token_embeddings) and not result.changed.any()
    for fuse in (False, True):
        outputs = []
        handle = model.register_forward_hook(lambda module, args, output: outputs.append(output.detach()))
        try:
            outcome = run_training_step(model=model, forward_model=model, provider=provider, batch=tiny["batch"],
                                        task=TASK, adv_alpha=1.0, special_ids=tiny["special_ids"], normaliser=3.0,
                                        fuse_passes=fuse)
        finally:
            handle.remove()
        model.zero_grad(set_to_none=True)
        assert outcome.stats["changed_share"] == 0.0 and outcome.forwards == 2
        if fuse:
            assert abs(outcome.adv_loss) < 1e-12  # float64 rounding; ε = 1e-5 gives ~2e-9 on this fixture
        else:
            clean, perturbed = outputs
            assert torch.equal(clean, perturbed)
            floor = symmetric_kl(clean, clean, reduction="sum").float().item() / 3  # as the step reports it
            assert outcome.adv_loss == floor and abs(floor) < 1e-15


# ---------------------------------------------------------------------------------- 1-1_random

def _token_cosines(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a[mask].double(), b[mask].double(), dim=-1)


def test_one_one_random_has_one_ones_norms_and_shares(tiny):
    from noise_training.base import perturbation_stats

    ctx, _ = make_context(tiny, make_provider(tiny, "1-1"))
    one_one = make_provider(tiny, "1-1").perturb(ctx)
    torch.manual_seed(0)
    random = make_provider(tiny, "1-1_random").perturb(ctx)
    mask = ctx.perturbable_mask
    torch.testing.assert_close(random.delta.norm(dim=-1), one_one.delta.norm(dim=-1), rtol=1e-12, atol=0)
    assert torch.equal(random.changed, one_one.changed) and torch.equal(random.changed, mask)
    frozen = ~mask  # special tokens and padding: exactly unchanged
    assert not random.delta[frozen].any() and torch.equal(random.embeddings[frozen], ctx.token_embeddings[frozen])
    shares = [perturbation_stats(perturbation=p, token_embeddings=ctx.token_embeddings, perturbable_mask=mask)
              for p in (one_one, random)]
    assert shares[0]["noise_share"] > 0.05  # 1-1 moves the tokens visibly on this fixture
    assert shares[1]["noise_share"] == pytest.approx(shares[0]["noise_share"], rel=1e-9)
    assert shares[1]["changed_share"] == shares[0]["changed_share"] == 1.0
    # not 1-1's direction: the cosines are spread around 0, 1-1's with itself is 1
    assert (_token_cosines(one_one.delta, one_one.delta, mask) - 1).abs().max() < 1e-12
    assert _token_cosines(random.delta, one_one.delta, mask).abs().max() < 0.9


def test_one_one_random_draws_a_new_direction_every_step(tiny):
    provider = make_provider(tiny, "1-1_random")
    ctx, _ = make_context(tiny, provider)
    first, second = provider.perturb(ctx), provider.perturb(ctx)
    mask = ctx.perturbable_mask
    torch.testing.assert_close(first.delta.norm(dim=-1), second.delta.norm(dim=-1), rtol=1e-12, atol=0)
    assert _token_cosines(first.delta, second.delta, mask).max() < 0.99  # every token's direction changed


def _snli_batch(tokenizer, snli_dir, *, pairs: int = 64):
    import json

    lines = (snli_dir / "snli_dev.jsonl").read_text(encoding="utf-8").splitlines()[:pairs]
    rows = [json.loads(line) for line in lines]
    return tokenizer([r["sentence1"] for r in rows], [r["sentence2"] for r in rows], padding=True, return_tensors="pt",
                     return_token_type_ids=True)


@pytest.mark.slow
def test_one_one_random_is_unrelated_to_one_ones_direction_on_real_snli(minilm_path, snli_dir, tmp_path):
    """On real SNLI tokens and the packaged MiniLM: mean cosine with 1-1's noise near 0, the same norms."""
    from transformers import AutoTokenizer

    from noise_training.base import StepContext, perturbable_token_mask

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    model = build_model(model_name=str(minilm_path), tasks={"anli": TASK}, tokenizer=tokenizer)
    setup = {"model": model, "tokenizer": tokenizer, "cache": tmp_path / "cache"}
    batch = _snli_batch(tokenizer, snli_dir)
    special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)))
    mask = perturbable_token_mask(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                  special_ids=special_ids)
    with torch.no_grad():
        emb = model.token_embeddings(batch["input_ids"])
    ctx = StepContext(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                      token_type_ids=batch["token_type_ids"], token_embeddings=emb, logits=None,
                      perturbable_mask=mask, forward=None, adv_loss=None)
    one_one = make_provider(setup, "1-1").perturb(ctx)
    torch.manual_seed(0)
    random = make_provider(setup, "1-1_random").perturb(ctx)
    assert int(mask.sum()) > 1000  # real tokens, not a handful
    cosines = _token_cosines(random.delta, one_one.delta, mask)
    assert abs(cosines.mean().item()) < 0.05
    assert (_token_cosines(one_one.delta, one_one.delta, mask) - 1).abs().max() < 1e-6
    torch.testing.assert_close(random.delta.norm(dim=-1), one_one.delta.norm(dim=-1), rtol=1e-5, atol=1e-7)
    assert not random.delta[~mask].any()


# ---------------------------------------------------------------------------------- NEFTune

def test_neftune_noise_lies_within_its_bound_and_fills_it(tiny):
    provider = make_provider(tiny, "neftune")
    assert provider.alpha == 5.0 and provider.perturbs_step1_input
    ctx, _ = make_context(tiny, provider)
    length, hidden = ctx.token_embeddings.shape[1:]
    bound = 5.0 / (length * hidden) ** 0.5
    torch.manual_seed(0)
    noise = torch.cat([provider.perturb(ctx).delta.flatten() for _ in range(20)])
    assert noise.abs().max() <= bound * (1 + 1e-6) and noise.abs().max() > 0.99 * bound
    assert noise.std().item() == pytest.approx(bound / 3 ** 0.5, rel=0.03)
    assert abs(noise.mean().item()) < 4 * bound / 3 ** 0.5 / noise.numel() ** 0.5


@pytest.mark.parametrize("alpha", [5.0, 10.0, 15.0])
def test_neftune_noise_equals_transformers_hook(tiny, alpha):
    """The same generator state gives transformers' neftune_post_forward_hook's noise, bit for bit."""
    from transformers.integrations.neftune import neftune_post_forward_hook

    provider = make_provider(tiny, "neftune", neftune_noise_alpha=alpha)
    ctx, _ = make_context(tiny, provider)
    embedding = tiny["model"].encoder.get_input_embeddings()
    embedding.neftune_noise_alpha = alpha
    handle = embedding.register_forward_hook(neftune_post_forward_hook)
    was_training = embedding.training
    try:
        embedding.train()
        torch.manual_seed(3)
        theirs = embedding(ctx.input_ids)
        embedding.eval()  # the hook adds nothing outside training
        assert torch.equal(embedding(ctx.input_ids), ctx.token_embeddings)
    finally:
        handle.remove()
        del embedding.neftune_noise_alpha
        embedding.train(was_training)
    torch.manual_seed(3)
    ours = provider.perturb(ctx)
    assert not torch.equal(theirs, ctx.token_embeddings)
    assert torch.equal(ours.embeddings, theirs)


def test_neftune_trains_on_the_noisy_input_in_one_pass(tiny):
    model = tiny["model"]
    provider = make_provider(tiny, "neftune")
    calls = []
    handle = model.register_forward_pre_hook(lambda mod, args, kwargs: calls.append(kwargs["inputs_embeds"]),
                                             with_kwargs=True)
    try:
        torch.manual_seed(4)
        outcome = run_training_step(model=model, forward_model=model, provider=provider, batch=tiny["batch"],
                                    task=TASK, adv_alpha=0.0, special_ids=tiny["special_ids"], normaliser=3.0)
    finally:
        handle.remove()
    model.zero_grad(set_to_none=True)
    assert (outcome.forwards, outcome.backwards) == (1, 1) and outcome.adv_loss is None
    (seen,) = calls  # one model call, on the noisy embeddings
    clean = model.token_embeddings(tiny["batch"]["input_ids"])
    length, hidden = clean.shape[1:]
    moved = (seen - clean).detach()
    assert moved.abs().max() <= 5.0 / (length * hidden) ** 0.5 * (1 + 1e-6) and (moved.abs().amax(-1) > 0).all()
    assert outcome.stats["changed_share"] == 1.0 and outcome.stats["noise_share"] > 0


def test_neftune_adds_no_noise_in_evaluation(tiny):
    """Evaluation never calls the provider: after training steps, the model's predictions are the clean ones."""
    from mt_dnn.evaluation import predict_split
    from mt_dnn.features import TokenizedSplit

    model, batch = tiny["model"], tiny["batch"]
    common = dict(task="anli", input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                  token_type_ids=batch["token_type_ids"])
    with torch.no_grad():
        before = model(**common)
    provider = make_provider(tiny, "neftune", neftune_noise_alpha=15.0)
    was_training = model.training
    model.train()
    try:
        for _ in range(2):
            run_training_step(model=model, forward_model=model, provider=provider, batch=batch, task=TASK,
                              adv_alpha=0.0, special_ids=tiny["special_ids"], normaliser=3.0)
        model.zero_grad(set_to_none=True)
        model.eval()
        with torch.no_grad():
            assert torch.equal(model(**common), before)
        assert not model.encoder.get_input_embeddings()._forward_hooks  # nothing left on the table
    finally:
        model.train(was_training)
        model.zero_grad(set_to_none=True)


@pytest.mark.slow
def test_neftune_alpha_zero_run_equals_none_weight_for_weight(tmp_path):
    """train.py, dropout on: α = 0 draws nothing, so the run is `none`'s; α = 5 is not (the guard)."""
    from mt_dnn.checkpoint import CheckpointManager
    from mt_dnn.cli_train import main as train_main
    from tiny_models import tiny_bert, write_anli_like

    model, data = tiny_bert(tmp_path / "bert"), write_anli_like(tmp_path / "anli")

    def weights(name, *extra):
        out = tmp_path / name
        argv = ["--model", str(model), "--data_dir", str(data), "--cache_dir", str(tmp_path / "cache"),
                "--train_datasets", "anli:r1_train", "--test_datasets", "anli:r1_dev", "--epochs", "1",
                "--batch_size", "8", "--max_seq_len", "48", "--learning_rate", "1e-3", "--no_progress",
                "--no_export", "--output_dir", str(out), *extra]
        assert train_main(argv) == 0
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        epoch = next(r for r in records if r["kind"] == "train_epoch")
        return CheckpointManager(out / "checkpoints").load_latest()[1]["model"], epoch

    import json

    none, _ = weights("none")
    zero, zero_epoch = weights("alpha0", "--perturbation", "neftune", "--neftune_noise_alpha", "0")
    five, five_epoch = weights("alpha5", "--perturbation", "neftune")
    assert none.keys() == zero.keys()
    assert all(torch.equal(none[key], zero[key]) for key in none)
    assert not all(torch.equal(none[key], five[key]) for key in none)
    for epoch in (zero_epoch, five_epoch):  # one forward and one backward per update, whatever α
        assert epoch["forward_passes_per_update"] == 1.0 and epoch["backward_passes_per_update"] == 1.0
    assert five_epoch["perturbation"]["noise_share"] > 0 and five_epoch["perturbation"]["changed_share"] == 1.0
    assert five_epoch["perturbation"]["adv_loss"] is None
