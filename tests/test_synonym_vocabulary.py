"""How the synonym table reads a vocabulary: which tokenizers it accepts, what its cache key follows,
the two WordNet readings, and what it logs when it builds or loads a table.

Tokenizers are built here with the `tokenizers` library (WordPiece from a word list, BPE with
and without a byte-level pre-tokenizer) and WordNet is the installed 3.0 database, as in
test_wordnet_synonyms.py; these small vocabularies keep every table build under a second.
"""

from __future__ import annotations

import logging
import re

import pytest

from noise_training.errors import ProviderConfigError
from noise_training.synonyms import (
    build_synonym_table, cache_path, load_or_build_synonym_table, table_key, vocabulary_scheme,
)

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _word_piece(words: list[str]):
    from transformers import BertTokenizer

    return BertTokenizer(vocab={token: i for i, token in enumerate(SPECIALS + words)})


def _bpe(folder, *, pre_tokenizer):
    """A BPE tokenizer trained on a few lines, saved to ``folder`` and loaded back (so it has a name)."""
    from tokenizers import Tokenizer, models, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizer
    backend.train_from_iterator(["the car is big", "a happy dog 42 times"] * 20,
                                trainer=trainers.BpeTrainer(vocab_size=80, special_tokens=["<unk>", "<s>", "</s>"]))
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>").save_pretrained(folder)
    return AutoTokenizer.from_pretrained(str(folder))


def test_byte_level_bpe_is_found_inside_a_sequence_pre_tokenizer(tmp_path):
    from tokenizers import pre_tokenizers

    tokenizer = _bpe(tmp_path / "seq", pre_tokenizer=pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]))
    scheme = vocabulary_scheme(tokenizer=tokenizer)
    assert scheme.kind == "byte_level_bpe" and scheme.word_start_marker == "\u0120"


def test_a_bpe_that_is_not_byte_level_is_refused_naming_the_tokenizer(tmp_path):
    from tokenizers import pre_tokenizers

    folder = tmp_path / "plain-bpe"
    tokenizer = _bpe(folder, pre_tokenizer=pre_tokenizers.Whitespace())
    expected = (f"tokenizer {folder}: model type BPE is not supported for WordNet synonyms "
                "(expected WordPiece or byte-level BPE)")
    with pytest.raises(ProviderConfigError, match=f"^{re.escape(expected)}$"):
        vocabulary_scheme(tokenizer=tokenizer)


def test_the_cache_key_follows_every_token_of_the_vocabulary():
    # the same size, specials and scheme: only one token's spelling differs
    car, cat = _word_piece(["car", "auto", "happy"]), _word_piece(["cat", "auto", "happy"])
    assert len(car) == len(cat)
    assert table_key(tokenizer=car, wordnet_version="3.0") != table_key(tokenizer=cat, wordnet_version="3.0")
    assert table_key(tokenizer=car, wordnet_version="3.0") == table_key(tokenizer=_word_piece(["car", "auto", "happy"]),
                                                                        wordnet_version="3.0")


def test_morphy_gives_a_plural_the_synonyms_of_its_singular_and_exact_does_not(wordnet_info):
    tokenizer = _word_piece(["cars", "car", "auto", "automobile", "happy"])
    cars = tokenizer.convert_tokens_to_ids("cars")
    words = lambda table: set(tokenizer.convert_ids_to_tokens(table.synonyms_of(cars)))  # noqa: E731
    assert words(build_synonym_table(tokenizer=tokenizer, lookup="exact")) == set()  # "cars" is no lemma
    assert words(build_synonym_table(tokenizer=tokenizer, lookup="morphy")) == {"car", "auto", "automobile"}


def test_building_and_loading_log_what_and_where(wordnet_info, tmp_path, caplog):
    tokenizer = _word_piece(["car", "auto", "automobile", "happy", "glad", "the"])
    with caplog.at_level(logging.INFO, logger="noise_training.synonyms"):
        table = load_or_build_synonym_table(tokenizer=tokenizer, cache_dir=tmp_path)
    path = cache_path(cache_dir=tmp_path, key=table.key)
    covered = int((table.counts() > 0).sum())
    assert covered == 5 and table.vocab_size == 11  # every word but "the"; 5 specials + 6 words
    built = [r.getMessage() for r in caplog.records if r.getMessage().startswith("built WordNet synonym table")]
    assert len(built) == 1 and re.fullmatch(
        rf"built WordNet synonym table in \d+\.\d s: {covered} of 11 tokens have synonyms, "
        rf"{table.synonym_ids.numel()} entries; cached at {re.escape(str(path))}", built[0]), built
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="noise_training.synonyms"):
        load_or_build_synonym_table(tokenizer=tokenizer, cache_dir=tmp_path)
    assert [r.getMessage() for r in caplog.records] == [f"loaded WordNet synonym table from {path}"]
