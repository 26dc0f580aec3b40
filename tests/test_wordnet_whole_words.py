"""The whole-word rule of the WordNet providers on real vocabularies: RoBERTa's byte-level BPE
(the real tokenizer from ../shared/tokenizers/roberta) and the packaged MiniLM's WordPiece.

A word followed directly by punctuation ("car," "friend." "John's") is a whole word; a word
split into several pieces is never replaced, also when a non-ASCII letter is among its pieces
("Zürich"); the first word of the premise and of the hypothesis (no Ġ after <s> or </s>)
starts a word.
"""

from __future__ import annotations

import pytest
import torch

from conftest import REPO_ROOT
from noise_training.base import perturbable_token_mask
from noise_training.word_boundaries import whole_word_positions, word_piece_rules

ROBERTA_DIR = REPO_ROOT.parent / "shared" / "tokenizers" / "roberta"
G = "\u0120"


@pytest.fixture(scope="module")
def roberta_tokenizer():
    if not (ROBERTA_DIR / "vocab.json").is_file():
        pytest.skip(f"{ROBERTA_DIR} holds no vocab.json: RoBERTa's real tokenizer is needed for this test")
    from tokenizers import AddedToken
    from transformers import RobertaTokenizer

    return RobertaTokenizer(vocab=str(ROBERTA_DIR / "vocab.json"), merges=str(ROBERTA_DIR / "merges.txt"),
                            mask_token=AddedToken("<mask>", lstrip=True))


@pytest.fixture(scope="module")
def minilm_tokenizer(minilm_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_path))


def _whole_words(tokenizer, premise, hypothesis):
    batch = tokenizer([premise], [hypothesis], return_tensors="pt")
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)))
    real = perturbable_token_mask(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                  special_ids=special)
    whole = whole_word_positions(input_ids=batch["input_ids"], real_tokens=real,
                                 rules=word_piece_rules(tokenizer=tokenizer))
    tokens = tokenizer.convert_ids_to_tokens(batch["input_ids"][0])
    return tokens, dict(zip(range(len(tokens)), whole[0].tolist()))


def test_bpe_word_before_punctuation_is_a_whole_word(roberta_tokenizer):
    tokens, whole = _whole_words(roberta_tokenizer, "The car, which was red, stopped.", "John's friend.")
    by_token = {token: whole[i] for i, token in enumerate(tokens)}
    assert tokens[:8] == ["<s>", "The", G + "car", ",", G + "which", G + "was", G + "red", ","]
    for word in (G + "car", G + "red", G + "stopped", G + "which", "John", G + "friend"):
        assert by_token[word], f"{word} should be a whole word in {tokens}"
    # "'s" continues nothing (it does not start with a letter), so "John" before it stays whole
    # the first word of the premise (after <s>) and of the hypothesis (after </s></s>) start words
    assert by_token["The"] and by_token["John"]


def test_bpe_word_in_several_pieces_is_never_whole(roberta_tokenizer):
    tokens, whole = _whole_words(roberta_tokenizer, "The paninis were delicious.", "Unhappily, the Zorblaxians left.")
    multi = [i for i, token in enumerate(tokens) if token[:1].isalpha() and not token.startswith(G)
             and i > 0 and tokens[i - 1][-1:].isalpha() and tokens[i - 1] not in ("<s>", "</s>")]
    assert multi, f"expected words split into pieces in {tokens}"
    for i in multi:  # the continuation piece and the piece before it
        assert not whole[i] and not whole[i - 1], (tokens[i - 1], tokens[i])


def test_bpe_words_with_non_ascii_letters_are_never_whole_in_any_piece(roberta_tokenizer):
    # "Zürich" is "ĠZ" "Ã¼" "rich" and "Phạm" "ĠPh" "á" "º" "¡" "m" (ạ cut across three tokens): read
    # symbol by symbol, "¼" and "¡" are no letters, so "rich" and "m" passed for whole words, and
    # WordNet has synonyms for both ("wealthy", "meter")
    tokens, whole = _whole_words(roberta_tokenizer, "She visited Zürich often.", "Phạm met Trần there.")
    assert tokens[3:6] == [G + "Z", "Ã¼", "rich"], tokens
    start = tokens.index("Ph")  # the hypothesis's first word: no Ġ after </s></s>
    assert tokens[start:start + 5] == ["Ph", "á", "º", "¡", "m"], tokens
    for i in (3, 4, 5, *range(start, start + 5)):
        assert not whole[i], f"{tokens[i]!r} is a piece of a longer word in {tokens}"
    by_token = {token: whole[i] for i, token in enumerate(tokens)}
    assert by_token[G + "visited"] and by_token[G + "often"] and by_token[G + "met"] and by_token[G + "there"]


def test_wordpiece_continuations_are_never_whole(minilm_tokenizer):
    tokens, whole = _whole_words(minilm_tokenizer, "The paninis were delicious.", "The car, which was red.")
    pieces = [i for i, token in enumerate(tokens) if token.startswith("##")]
    assert pieces, tokens
    for i in pieces:
        assert not whole[i] and not whole[i - 1], (tokens[i - 1], tokens[i])
    by_token = {token: whole[i] for i, token in enumerate(tokens)}
    assert by_token["car"] and by_token["red"] and by_token["delicious"]


def test_roberta_wordnet_provider_replaces_car_and_red(roberta_tokenizer, tmp_path):
    from transformers import RobertaConfig, RobertaModel

    from mt_dnn.model import build_model
    from mt_dnn.task_def import load_task_defs
    from noise_training.base import StepContext
    from noise_training.registry import build_provider, resolve_options

    folder = tmp_path / "roberta"
    config = RobertaConfig(vocab_size=len(roberta_tokenizer), hidden_size=16, num_hidden_layers=1,
                           num_attention_heads=2, intermediate_size=32, max_position_embeddings=514,
                           pad_token_id=1, type_vocab_size=1)
    RobertaModel(config).save_pretrained(folder)
    roberta_tokenizer.save_pretrained(folder)
    task = load_task_defs(paths=[REPO_ROOT / "task_defs" / "anli.yml"])["anli"]
    model = build_model(model_name=str(folder), tasks={"anli": task}, tokenizer=roberta_tokenizer)
    spec, options = resolve_options(name="wordnet_1.0", given={})
    provider = build_provider(name=spec.name, options=options, model=model, tokenizer=roberta_tokenizer,
                              cache_dir=tmp_path / "cache")
    batch = roberta_tokenizer(["The car, which was red, stopped."], ["John's friend."], return_tensors="pt")
    special = torch.tensor(sorted(set(roberta_tokenizer.all_special_ids)))
    perturbable = perturbable_token_mask(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                         special_ids=special)
    ctx = StepContext(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], token_type_ids=None,
                      token_embeddings=model.token_embeddings(batch["input_ids"]), logits=None,
                      perturbable_mask=perturbable, forward=None, adv_loss=None)
    torch.manual_seed(0)
    result = provider.perturb(ctx)
    tokens = roberta_tokenizer.convert_ids_to_tokens(batch["input_ids"][0])
    changed = {tokens[i] for i in result.changed[0].nonzero().flatten().tolist()}
    assert {G + "car", G + "red"} <= changed, changed
    assert not changed & {",", ".", "'s", "<s>", "</s>"}


def test_minilm_wordnet_provider_skips_words_in_pieces_whose_first_piece_has_synonyms(minilm_path, minilm_tokenizer,
                                                                                      tmp_path):
    """The provider itself, on the packaged MiniLM: "pan ##ini ##s", "big ##wig", "hard ##top", "sun ##room"
    start with pieces that WordNet lists (pan, big, hard, sun); only whole words may change."""
    from mt_dnn.model import build_model
    from mt_dnn.task_def import load_task_defs
    from noise_training.base import StepContext
    from noise_training.registry import build_provider, resolve_options

    task = load_task_defs(paths=[REPO_ROOT / "task_defs" / "anli.yml"])["anli"]
    model = build_model(model_name=str(minilm_path), tasks={"anli": task}, tokenizer=minilm_tokenizer)
    spec, options = resolve_options(name="wordnet_1.0", given={})
    provider = build_provider(name=spec.name, options=options, model=model, tokenizer=minilm_tokenizer,
                              cache_dir=tmp_path / "cache")
    batch = minilm_tokenizer(["The paninis and the bigwig were delicious."],
                             ["A hardtop in the sunroom, and a big car."], return_tensors="pt")
    tokens = minilm_tokenizer.convert_ids_to_tokens(batch["input_ids"][0])
    starts = [i for i in range(len(tokens) - 1) if tokens[i + 1].startswith("##") and not tokens[i].startswith("##")]
    assert [tokens[i] for i in starts] == ["pan", "big", "hard", "sun"], tokens
    # the guard: without the whole-word rule these pieces would be replaced
    listed = lambda i: bool(provider.table.synonyms_of(int(batch["input_ids"][0, i])))
    assert all(listed(i) for i in starts)
    whole_with_synonyms = [i for i, t in enumerate(tokens)
                           if t in ("big", "car", "delicious") and i not in starts and listed(i)]
    assert [tokens[i] for i in whole_with_synonyms] == ["delicious", "big", "car"]

    special = torch.tensor(sorted(set(minilm_tokenizer.all_special_ids)))
    perturbable = perturbable_token_mask(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                         special_ids=special)
    with torch.no_grad():
        embeddings = model.token_embeddings(batch["input_ids"])
    ctx = StepContext(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                      token_type_ids=batch["token_type_ids"], token_embeddings=embeddings, logits=None,
                      perturbable_mask=perturbable, forward=None, adv_loss=None)
    pieces = [i for i, t in enumerate(tokens) if t.startswith("##")]
    for seed in range(5):
        torch.manual_seed(seed)
        changed = set(provider.perturb(ctx).changed[0].nonzero().flatten().tolist())
        assert not changed & set(starts + pieces), [tokens[i] for i in sorted(changed)]
        assert set(whole_with_synonyms) <= changed, [tokens[i] for i in sorted(changed)]
