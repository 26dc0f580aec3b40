"""A word in another case is not its own synonym, and a one-letter capital is capitalised (issue 19).

In a cased vocabulary WordNet's spellings of the same word are other tokens: "it" has the
lemma "IT" (information technology), "an" has "AN", "more" has "More" (Thomas More). The
table once offered them as synonyms, because it only refused the token's own id; on the real
RoBERTa tokenizer 2,299 tokens had such a variant, 855 as their only synonym. These tests
read the real RoBERTa vocabulary (../shared/tokenizers/roberta) and real WordNet 3.0, and
check the rule independently of the code: strip the word-start marker, compare lower-cased.
A cache written under the old rule must not be read back.
"""

from __future__ import annotations

import logging
import warnings

import pytest
import torch
from safetensors.torch import save as safetensors_save

from conftest import REPO_ROOT
from noise_training import synonyms as synonyms_module
from noise_training.synonyms import (
    BYTE_LEVEL_WORD_START,
    FORMAT_VERSION,
    build_synonym_table,
    cache_path,
    load_or_build_synonym_table,
    table_key,
)

ROBERTA_DIR = REPO_ROOT.parent / "shared" / "tokenizers" / "roberta"
G = BYTE_LEVEL_WORD_START
# The six words of the issue, each with only a same-word variant (or, for "U", lower-case ones) before.
ISSUE_WORDS = [G + "it", G + "It", G + "an", G + "more", G + "who", G + "U"]


@pytest.fixture(scope="module")
def roberta_tokenizer():
    if not (ROBERTA_DIR / "vocab.json").is_file():
        pytest.skip(f"{ROBERTA_DIR} holds no vocab.json: RoBERTa's real tokenizer is needed for this test")
    from experiments.wordnet_coverage import load_tokenizer

    return load_tokenizer(str(ROBERTA_DIR))


@pytest.fixture(scope="module")
def roberta_table(roberta_tokenizer, wordnet_info):
    return build_synonym_table(tokenizer=roberta_tokenizer, wordnet_version=wordnet_info.version)


def _word(token: str) -> str:
    return token[len(G):] if token.startswith(G) else token


def _is_capitalised(word: str) -> bool:
    return word[:1].isupper() and (len(word) == 1 or word[1:].islower())


def _synonyms(tokenizer, table, token: str) -> list[str]:
    token_id = tokenizer.convert_tokens_to_ids(token)
    assert tokenizer.convert_ids_to_tokens(token_id) == token, f"{token!r} is not in the vocabulary"
    return tokenizer.convert_ids_to_tokens(table.synonyms_of(token_id))


@pytest.mark.parametrize("token", ISSUE_WORDS)
def test_the_issues_words_get_no_same_word_variant(roberta_tokenizer, roberta_table, token):
    found = _synonyms(roberta_tokenizer, roberta_table, token)
    same = [s for s in found if _word(s).lower() == _word(token).lower()]
    assert same == [], f"{token!r} lists itself in another case: {found}"
    if _is_capitalised(_word(token)):
        assert all(_word(s)[:1].isupper() for s in found), f"{token!r} got uncapitalised synonyms: {found}"


def test_a_single_capital_letter_gets_capitalised_synonyms(roberta_tokenizer, roberta_table):
    # "I" (the numeral one) has synonyms in the vocabulary both ways; a capital gets the capitals.
    found = _synonyms(roberta_tokenizer, roberta_table, G + "I")
    assert G + "One" in found, found
    assert all(s.startswith(G) and _word(s)[:1].isupper() for s in found), found


def test_no_roberta_token_lists_its_own_word_and_capitals_keep_capitals(roberta_tokenizer, roberta_table):
    tokens = roberta_tokenizer.convert_ids_to_tokens(list(range(roberta_table.vocab_size)))
    owners = torch.repeat_interleave(torch.arange(roberta_table.vocab_size), roberta_table.counts()).tolist()
    assert len(owners) > 10_000, "the real RoBERTa table should list many synonyms"
    same_word, uncapitalised = [], []
    for owner, synonym in zip(owners, roberta_table.synonym_ids.tolist()):
        word, other = _word(tokens[owner]), _word(tokens[synonym])
        if word.lower() == other.lower():
            same_word.append((tokens[owner], tokens[synonym]))
        # A capitalised word gets its synonyms with a capital first letter ("K" -> "KB" stays).
        if _is_capitalised(word) and not other[:1].isupper():
            uncapitalised.append((tokens[owner], tokens[synonym]))
    assert same_word == [], f"{len(same_word)} same-word variants, e.g. {same_word[:5]}"
    assert uncapitalised == [], f"{len(uncapitalised)} lower-case synonyms of capitalised words, e.g. {uncapitalised[:5]}"


def test_a_different_lemma_in_capitals_stays_a_synonym(roberta_tokenizer, roberta_table):
    # "USA" is a lemma of the army synset, written as WordNet writes it: a synonym, not a variant.
    assert G + "USA" in _synonyms(roberta_tokenizer, roberta_table, G + "Army")
    assert G + "USA" in _synonyms(roberta_tokenizer, roberta_table, G + "army")


# ----------------------------------------------------------------------------- the cache


def _cased_word_piece():
    from transformers import BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "it", "IT", "army", "USA", "car", "auto"]
    return BertTokenizer(vocab={token: i for i, token in enumerate(words)}, do_lower_case=False)


def _old_rule_file(tokenizer, *, key: str) -> bytes:
    """The table the old rule built for this vocabulary ("it" -> "IT"), as the old code wrote it."""
    vocab = tokenizer.get_vocab()
    lists = {vocab["it"]: [vocab["IT"]], vocab["IT"]: [vocab["it"]], vocab["army"]: [vocab["USA"]],
             vocab["car"]: [vocab["auto"]], vocab["auto"]: [vocab["car"]]}
    offsets, ids = [0], []
    for token_id in range(len(vocab)):
        ids.extend(lists.get(token_id, []))
        offsets.append(len(ids))
    return safetensors_save({"offsets": torch.tensor(offsets), "synonym_ids": torch.tensor(ids)},
                            metadata={"key": key, "format_version": "1"})


def test_a_cache_written_under_the_old_rule_is_refused_and_rebuilt(wordnet_info, tmp_path, monkeypatch, caplog):
    tokenizer = _cased_word_piece()
    vocab = tokenizer.get_vocab()
    with monkeypatch.context() as patch:
        patch.setattr(synonyms_module, "FORMAT_VERSION", "1")
        old_key = table_key(tokenizer=tokenizer, wordnet_version=wordnet_info.version)
    new_key = table_key(tokenizer=tokenizer, wordnet_version=wordnet_info.version)
    old_file = _old_rule_file(tokenizer, key=old_key)
    cache_path(cache_dir=tmp_path, key=old_key).write_bytes(old_file)

    # Where the old code left it: the new key never looks there, and builds by the new rule.
    with caplog.at_level(logging.INFO, logger="noise_training.synonyms"):
        table = load_or_build_synonym_table(tokenizer=tokenizer, cache_dir=tmp_path)
    assert "built WordNet synonym table" in caplog.text
    assert table.key == new_key and table.synonyms_of(vocab["it"]) == []
    assert table.synonyms_of(vocab["army"]) == [vocab["USA"]]
    assert cache_path(cache_dir=tmp_path, key=old_key).read_bytes() == old_file, "the old file is left alone"

    # The same old file under the new name is refused for its format version, then replaced.
    new_path = cache_path(cache_dir=tmp_path, key=new_key)
    new_path.write_bytes(old_file)
    with pytest.warns(UserWarning, match=f"format_version 1, expected {FORMAT_VERSION}"):
        rebuilt = load_or_build_synonym_table(tokenizer=tokenizer, cache_dir=tmp_path)
    assert rebuilt.synonyms_of(vocab["it"]) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reloaded = load_or_build_synonym_table(tokenizer=tokenizer, cache_dir=tmp_path)
    assert torch.equal(reloaded.synonym_ids, rebuilt.synonym_ids)
