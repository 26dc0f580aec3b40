"""The synonym table over real tokenizers and real WordNet 3.0 (paper Experiment 3).

No mocks: WordNet is the installed 3.0 database (scripts/install_wordnet.sh), the BERT
vocabulary is the packaged MiniLM's, and the RoBERTa-style byte-level BPE tokenizer is
trained here with the `tokenizers` library on a few hundred generated lines. How WordNet
itself is found, installed and laid out is tested in test_wordnet_data.py.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
import warnings

import pytest
import torch
from safetensors.torch import save_file

from noise_training import synonyms as synonyms_module
from noise_training.synonyms import (
    BYTE_LEVEL_WORD_START,
    FORMAT_VERSION,
    SynonymTable,
    build_synonym_table,
    cache_path,
    load_or_build_synonym_table,
    synonym_coverage,
    table_key,
    vocabulary_scheme,
)

G = BYTE_LEVEL_WORD_START
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def minilm_tokenizer(minilm_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_path))


@pytest.fixture(scope="module")
def minilm_table(minilm_tokenizer, wordnet_info, tmp_path_factory):
    cache_dir = tmp_path_factory.mktemp("synonym-cache")
    started = time.perf_counter()
    table = load_or_build_synonym_table(tokenizer=minilm_tokenizer, cache_dir=cache_dir)
    print(f"\nMiniLM synonym table built in {time.perf_counter() - started:.1f} s (WordNet already loaded)")
    return table, cache_dir


def _corpus_lines(*, capitalised: bool = True) -> list[str]:
    """A few hundred lines with the test words both line-initially (no Ġ) and after spaces (Ġ)."""
    rng = random.Random(0)
    words = ["car", "auto", "automobile", "happy", "glad", "big", "large", "house", "dog", "the", "a", "is"]
    lines = []
    for index in range(400):
        chosen = [rng.choice(words) for _ in range(6)]
        start = words[index % 7]  # every one of car..large also starts lines
        if capitalised and index % 3 == 0:
            start = start.capitalize()
        lines.append(" ".join([start, *chosen]) + ".")
    return lines


def _byte_level_tokenizer(*, lines: list[str], lowercase: bool = False, vocab_size: int = 600):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizerFast

    bpe = ByteLevelBPETokenizer(lowercase=lowercase)
    bpe.train_from_iterator(lines, vocab_size=vocab_size, min_frequency=1, special_tokens=SPECIALS, show_progress=False)
    return RobertaTokenizerFast(
        tokenizer_object=bpe._tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
    )


@pytest.fixture(scope="module")
def roberta_style_tokenizer():
    return _byte_level_tokenizer(lines=_corpus_lines())


def _ids(tokenizer, tokens: list[str]) -> list[int]:
    vocab = tokenizer.get_vocab()
    return [vocab[token] for token in tokens if token in vocab]


def _synonym_tokens(tokenizer, table: SynonymTable, token: str) -> set[str]:
    token_id = tokenizer.get_vocab()[token]
    return set(tokenizer.convert_ids_to_tokens(table.synonyms_of(token_id)))


# ----------------------------------------------------------------------------- BERT WordPiece


def test_minilm_scheme_is_uncased_wordpiece(minilm_tokenizer):
    scheme = vocabulary_scheme(tokenizer=minilm_tokenizer)
    assert scheme.kind == "wordpiece"
    assert scheme.lowercase is True
    assert scheme.continuation_prefix == "##"


def test_minilm_synonyms_are_wordnet_synonyms(minilm_tokenizer, minilm_table):
    table, _ = minilm_table
    assert table.vocab_size == len(minilm_tokenizer)
    assert _synonym_tokens(minilm_tokenizer, table, "car") & {"automobile", "auto"}
    assert "glad" in _synonym_tokens(minilm_tokenizer, table, "happy")
    assert "large" in _synonym_tokens(minilm_tokenizer, table, "big")
    for token in ("the", ".", ",", "[CLS]"):
        assert _synonym_tokens(minilm_tokenizer, table, token) == set(), token
    # No morphy: an inflected form does not borrow its lemma's synonyms (is -> be -> cost).
    assert _synonym_tokens(minilm_tokenizer, table, "is") == set()


def test_minilm_table_excludes_pieces_specials_and_self(minilm_tokenizer, minilm_table):
    table, _ = minilm_table
    vocab = minilm_tokenizer.get_vocab()
    counts = table.counts()
    pieces = torch.tensor([i for t, i in vocab.items() if t.startswith("##")])
    assert len(pieces) > 1000
    assert int(counts[pieces].sum()) == 0
    special = torch.tensor(minilm_tokenizer.all_special_ids)
    assert int(counts[special].sum()) == 0
    assert not bool(torch.isin(table.synonym_ids, special).any())
    owners = torch.repeat_interleave(torch.arange(table.vocab_size), counts)
    assert not bool((owners == table.synonym_ids).any()), "a token listed as its own synonym"
    assert not bool(torch.isin(table.synonym_ids, pieces).any()), "a ## piece listed as a synonym"
    # Sanity of the CSR layout itself.
    assert int(table.offsets[0]) == 0 and int(table.offsets[-1]) == table.synonym_ids.numel()
    assert bool((counts >= 0).all())


# ----------------------------------------------------------------------------- byte-level BPE


def test_byte_level_scheme_respects_the_word_start_marker(roberta_style_tokenizer, wordnet_info):
    tokenizer = roberta_style_tokenizer
    vocab = tokenizer.get_vocab()
    for token in ("car", G + "car", G + "auto", G + "automobile", "auto", G + "happy", G + "glad", "Car", "Auto"):
        assert token in vocab, f"the trained test tokenizer lacks {token!r}"
    scheme = vocabulary_scheme(tokenizer=tokenizer)
    assert scheme.kind == "byte_level_bpe" and scheme.lowercase is False

    table = build_synonym_table(tokenizer=tokenizer, wordnet_version=wordnet_info.version)
    assert _synonym_tokens(tokenizer, table, G + "car") & {G + "auto", G + "automobile"}
    assert _synonym_tokens(tokenizer, table, "car") & {"auto", "automobile"}
    assert G + "glad" in _synonym_tokens(tokenizer, table, G + "happy")
    assert "glad" in _synonym_tokens(tokenizer, table, "happy")
    # Cased vocabulary: a capitalised word gets capitalised synonyms.
    assert "Auto" in _synonym_tokens(tokenizer, table, "Car")
    for token, token_id in vocab.items():
        found = tokenizer.convert_ids_to_tokens(table.synonyms_of(token_id))
        if token.startswith(G):
            assert all(s.startswith(G) for s in found), (token, found)
        else:
            assert not any(s.startswith(G) for s in found), (token, found)
    special = torch.tensor(tokenizer.all_special_ids)
    assert int(table.counts()[special].sum()) == 0
    assert not bool(torch.isin(table.synonym_ids, special).any())


def test_lowercasing_is_detected_from_the_normalizer(wordnet_info):
    lines = _corpus_lines()
    cased = _byte_level_tokenizer(lines=lines, lowercase=False)
    uncased = _byte_level_tokenizer(lines=lines, lowercase=True)
    assert vocabulary_scheme(tokenizer=uncased).lowercase is True
    assert vocabulary_scheme(tokenizer=cased).lowercase is False
    assert table_key(tokenizer=cased, wordnet_version="3.0") != table_key(tokenizer=uncased, wordnet_version="3.0")


# ----------------------------------------------------------------------------- sampling


def test_sample_draws_only_listed_synonyms_and_covers_them(minilm_tokenizer, minilm_table):
    table, _ = minilm_table
    car, the, big = _ids(minilm_tokenizer, ["car", "the", "big"])
    listed_big = set(table.synonyms_of(big))
    assert len(listed_big) >= 5
    token_ids = torch.tensor([[car, the, big, the]]).repeat(4000, 1)
    generator = torch.Generator().manual_seed(1234)
    replacement, has_synonym = table.sample(token_ids, generator=generator)
    assert replacement.shape == token_ids.shape and replacement.dtype == torch.int64
    assert has_synonym.dtype == torch.bool
    assert bool(has_synonym[:, 0].all()) and bool(has_synonym[:, 2].all())
    assert not bool(has_synonym[:, 1].any()) and not bool(has_synonym[:, 3].any())
    assert bool((replacement[:, 1] == the).all()) and bool((replacement[:, 3] == the).all())
    assert set(replacement[:, 0].tolist()) == set(table.synonyms_of(car))
    drawn_big = replacement[:, 2].tolist()
    assert set(drawn_big) == listed_big
    # Uniform: every synonym's share within 5 standard deviations of 1/k.
    k, n = len(listed_big), len(drawn_big)
    expected, spread = n / k, 5 * (n * (1 / k) * (1 - 1 / k)) ** 0.5
    for synonym in listed_big:
        assert abs(drawn_big.count(synonym) - expected) < spread, synonym


def test_sample_is_reproducible_with_a_seeded_generator(minilm_tokenizer, minilm_table):
    table, _ = minilm_table
    token_ids = torch.randint(0, table.vocab_size, (8, 64), generator=torch.Generator().manual_seed(0))
    first = table.sample(token_ids, generator=torch.Generator().manual_seed(7))
    again = table.sample(token_ids, generator=torch.Generator().manual_seed(7))
    other = table.sample(token_ids, generator=torch.Generator().manual_seed(8))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert torch.equal(first[1], other[1])
    if int(first[1].sum()) > 20:
        assert not torch.equal(first[0], other[0])
    moved = table.to("cpu")
    assert moved.key == table.key and torch.equal(moved.offsets, table.offsets)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_sample_runs_on_cuda(minilm_tokenizer, minilm_table):
    table, _ = minilm_table
    device = torch.device("cuda")
    on_device = table.to(device)
    token_ids = torch.tensor(_ids(minilm_tokenizer, ["car", "the", "happy"]), device=device)
    replacement, has_synonym = on_device.sample(token_ids, generator=torch.Generator(device=device).manual_seed(0))
    assert replacement.device.type == "cuda" and has_synonym.tolist() == [True, False, True]
    glad = _ids(minilm_tokenizer, ["glad"])[0]
    assert int(replacement[2]) in table.synonyms_of(int(token_ids[2]))
    assert glad in table.synonyms_of(int(token_ids[2]))


def test_synonym_coverage_counts_only_masked_positions(minilm_tokenizer, minilm_table):
    table, _ = minilm_table
    car, the, happy = _ids(minilm_tokenizer, ["car", "the", "happy"])
    token_ids = torch.tensor([[car, the, happy, the]])
    assert synonym_coverage(table=table, token_ids=token_ids, mask=torch.ones_like(token_ids, dtype=torch.bool)) == 0.5
    assert synonym_coverage(table=table, token_ids=token_ids, mask=torch.tensor([[True, True, False, False]])) == 0.5
    assert synonym_coverage(table=table, token_ids=token_ids, mask=torch.tensor([[False, True, False, True]])) == 0.0
    assert synonym_coverage(table=table, token_ids=token_ids, mask=torch.zeros_like(token_ids, dtype=torch.bool)) == 0.0


# ----------------------------------------------------------------------------- cache


def test_cache_loads_on_second_call_without_rebuilding(minilm_tokenizer, minilm_table, caplog):
    table, cache_dir = minilm_table
    path = cache_path(cache_dir=cache_dir, key=table.key)
    assert path.is_file()
    written = path.stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger=synonyms_module.__name__):
        again = load_or_build_synonym_table(tokenizer=minilm_tokenizer, cache_dir=cache_dir)
    messages = [record.getMessage() for record in caplog.records]
    assert any(m.startswith("loaded WordNet synonym table") for m in messages), messages
    assert not any(m.startswith("built") for m in messages), messages
    assert path.stat().st_mtime_ns == written
    assert again.key == table.key
    assert torch.equal(again.offsets, table.offsets) and torch.equal(again.synonym_ids, table.synonym_ids)
    assert [p.name for p in cache_dir.iterdir()] == [path.name], "temporary files left in the cache folder"


def test_corrupt_cache_warns_and_rebuilds(roberta_style_tokenizer, tmp_path, caplog):
    tokenizer = roberta_style_tokenizer
    built = load_or_build_synonym_table(tokenizer=tokenizer, cache_dir=tmp_path)
    path = cache_path(cache_dir=tmp_path, key=built.key)

    path.write_bytes(b"\x00garbage, not a safetensors file")
    with pytest.warns(UserWarning, match="invalid synonym table cache"):
        rebuilt = load_or_build_synonym_table(tokenizer=tokenizer, cache_dir=tmp_path)
    assert torch.equal(rebuilt.offsets, built.offsets) and torch.equal(rebuilt.synonym_ids, built.synonym_ids)

    # A readable file with the right key but broken contents (non-monotone offsets).
    broken = built.offsets.clone()
    broken[1], broken[2] = 5, 1
    save_file(
        {"offsets": broken, "synonym_ids": built.synonym_ids},
        str(path),
        metadata={"key": built.key, "format_version": FORMAT_VERSION},
    )
    with pytest.warns(UserWarning, match="not monotone"):
        load_or_build_synonym_table(tokenizer=tokenizer, cache_dir=tmp_path)

    # A file whose key belongs to something else is not trusted either.
    save_file(
        {"offsets": built.offsets, "synonym_ids": built.synonym_ids},
        str(path),
        metadata={"key": "0" * 64, "format_version": FORMAT_VERSION},
    )
    with pytest.warns(UserWarning, match="key does not match"):
        again = load_or_build_synonym_table(tokenizer=tokenizer, cache_dir=tmp_path)
    assert again.key == built.key
    with caplog.at_level(logging.INFO, logger=synonyms_module.__name__):
        load_or_build_synonym_table(tokenizer=tokenizer, cache_dir=tmp_path)
    assert any(r.getMessage().startswith("loaded") for r in caplog.records)


def _spoilt(table, case: str, vocab_size: int):
    """(tensors, metadata) of a cache file broken in one way, and the whole reason the warning must give."""
    offsets, ids = table.offsets.clone(), table.synonym_ids.clone()
    metadata = {"key": table.key, "format_version": FORMAT_VERSION}
    tensors = {"offsets": offsets, "synonym_ids": ids}
    if case == "extra tensor":
        return {**tensors, "more": ids[:1].clone()}, metadata, \
            "tensors ['more', 'offsets', 'synonym_ids'], expected offsets and synonym_ids"
    if case == "old format":
        return tensors, {**metadata, "format_version": "0"}, f"format_version 0, expected {FORMAT_VERSION}"
    if case == "another key":
        return tensors, {**metadata, "key": "0" * 64}, "key does not match this tokenizer/WordNet"
    if case == "another vocabulary":
        return {**tensors, "offsets": offsets[:-1]}, metadata, \
            f"offsets shape ({vocab_size},), expected ({vocab_size + 1},)"
    if case == "cut short":
        offsets[-1] = offsets[-1] - 1
        return tensors, metadata, "offsets do not span synonym_ids"
    if case == "not monotone":
        # a token whose list ends before it starts, first and last offsets intact
        i = int(torch.nonzero(offsets[2:] > offsets[1:-1])[0]) + 1
        offsets[i] = offsets[i + 1] + 1
        return tensors, metadata, "offsets are not monotone"
    if case == "id out of range":
        ids[0] = vocab_size
        return tensors, metadata, f"synonym ids outside [0, {vocab_size})"
    if case == "negative id":
        ids[0] = -1
        return tensors, metadata, f"synonym ids outside [0, {vocab_size})"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["extra tensor", "old format", "another key", "another vocabulary", "cut short",
                                  "not monotone", "id out of range", "negative id"])
def test_each_cache_check_refuses_its_kind_of_broken_file(roberta_style_tokenizer, tmp_path, case):
    tokenizer = roberta_style_tokenizer
    built = load_or_build_synonym_table(tokenizer=tokenizer, cache_dir=tmp_path)
    assert built.synonym_ids.numel() > 0
    path = cache_path(cache_dir=tmp_path, key=built.key)
    tensors, metadata, reason = _spoilt(built, case, len(tokenizer))
    save_file(tensors, str(path), metadata=metadata)
    with pytest.warns(UserWarning, match=re.escape(f"invalid synonym table cache ({reason}); rebuilding it")):
        rebuilt = load_or_build_synonym_table(tokenizer=tokenizer, cache_dir=tmp_path)
    assert torch.equal(rebuilt.offsets, built.offsets) and torch.equal(rebuilt.synonym_ids, built.synonym_ids)


def test_a_cached_table_listing_token_id_0_is_accepted(roberta_style_tokenizer, tmp_path):
    """Id 0 is a valid synonym id (a special token in BERT and RoBERTa, a word in other vocabularies)."""
    built = load_or_build_synonym_table(tokenizer=roberta_style_tokenizer, cache_dir=tmp_path)
    ids = built.synonym_ids.clone()
    ids[0] = 0
    save_file({"offsets": built.offsets, "synonym_ids": ids}, str(cache_path(cache_dir=tmp_path, key=built.key)),
              metadata={"key": built.key, "format_version": FORMAT_VERSION})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "invalid cache" warning: read, not rebuilt
        loaded = load_or_build_synonym_table(tokenizer=roberta_style_tokenizer, cache_dir=tmp_path)
    assert torch.equal(loaded.synonym_ids, ids)


def test_different_vocabulary_gives_a_different_key(roberta_style_tokenizer, tmp_path, wordnet_info):
    smaller = _byte_level_tokenizer(lines=_corpus_lines(), vocab_size=295)
    assert smaller.get_vocab() != roberta_style_tokenizer.get_vocab()
    key_a = table_key(tokenizer=roberta_style_tokenizer, wordnet_version=wordnet_info.version)
    key_b = table_key(tokenizer=smaller, wordnet_version=wordnet_info.version)
    assert key_a != key_b
    assert key_a == table_key(tokenizer=roberta_style_tokenizer, wordnet_version=wordnet_info.version)
    assert key_a != table_key(tokenizer=roberta_style_tokenizer, wordnet_version="3.1")
    table_a = load_or_build_synonym_table(tokenizer=roberta_style_tokenizer, cache_dir=tmp_path)
    table_b = load_or_build_synonym_table(tokenizer=smaller, cache_dir=tmp_path)
    assert table_a.key == key_a and table_b.key == key_b
    assert len(list(tmp_path.glob("*.safetensors"))) == 2


# ----------------------------------------------------------------------------- real data


def test_anli_r1_dev_synonym_coverage(anli_dir, minilm_tokenizer, minilm_table):
    """Measured figure for the report; the paper saw about 30% of BERT tokens replaced."""
    table, _ = minilm_table
    text = (anli_dir / "R1" / "dev.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line]
    encoded = minilm_tokenizer(
        [row["context"] for row in rows], [row["hypothesis"] for row in rows], return_special_tokens_mask=True
    )
    token_ids = torch.tensor([i for ids in encoded["input_ids"] for i in ids])
    special = torch.tensor([m for mask in encoded["special_tokens_mask"] for m in mask], dtype=torch.bool)
    coverage = synonym_coverage(table=table, token_ids=token_ids, mask=~special)
    print(f"\nANLI R1 dev: {len(rows)} pairs, {int((~special).sum())} non-special tokens, "
          f"{coverage:.1%} have at least one WordNet synonym")
    first = torch.tensor(encoded["input_ids"][0])
    replacement, has_synonym = table.sample(first, generator=torch.Generator().manual_seed(0))
    pairs = [
        f"{a} -> {b}"
        for a, b, h in zip(
            minilm_tokenizer.convert_ids_to_tokens(first.tolist()),
            minilm_tokenizer.convert_ids_to_tokens(replacement.tolist()),
            has_synonym.tolist(),
        )
        if h
    ]
    print("example replacements: " + ", ".join(pairs[:25]))
    assert 0.15 < coverage < 0.6
