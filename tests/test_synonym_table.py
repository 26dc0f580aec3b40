"""SynonymTable's own rules on hand-written tables: what it refuses, how it samples, what coverage counts.

No WordNet and no tokenizer: the tables are small CSR lists written here, so that every
expected value is known (the tables built from real WordNet are tested in
test_wordnet_synonyms.py).
"""

from __future__ import annotations

import re

import pytest
import torch

from noise_training.synonyms import SynonymTable, synonym_coverage


def _table(offsets, synonym_ids) -> SynonymTable:
    return SynonymTable(offsets=torch.tensor(offsets, dtype=torch.int64),
                        synonym_ids=torch.tensor(synonym_ids, dtype=torch.int64), key="k")


@pytest.mark.parametrize("field, tensor, described", [
    ("offsets", torch.zeros(2, 2, dtype=torch.int64), "torch.int64 (2, 2)"),  # int64, but not 1-D
    ("offsets", torch.zeros(3, dtype=torch.float32), "torch.float32 (3,)"),  # 1-D, but not int64
    ("synonym_ids", torch.zeros(1, 2, dtype=torch.int64), "torch.int64 (1, 2)"),
    ("synonym_ids", torch.zeros(2, dtype=torch.int32), "torch.int32 (2,)"),
])
def test_table_refuses_tensors_that_are_not_1d_int64_naming_the_field(field, tensor, described):
    given = {"offsets": torch.tensor([0, 1, 2]), "synonym_ids": torch.tensor([1, 0])}
    given[field] = tensor
    expected = f"SynonymTable.{field}: expected a 1-D int64 tensor, got {described}"
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        SynonymTable(**given, key="k")


def test_table_needs_one_offset_and_one_is_enough():
    with pytest.raises(ValueError, match=r"^SynonymTable\.offsets: expected at least one entry \(V \+ 1 offsets\)$"):
        _table([], [])
    empty = _table([0], [])  # a vocabulary of none: valid
    assert empty.vocab_size == 0 and empty.counts().tolist() == []


def test_a_table_with_a_single_synonym_samples_it():
    table = _table([0, 1, 1], [1])  # token 0's one synonym is token 1; token 1 has none
    replacement, has_synonym = table.sample(torch.tensor([[0, 1, 0]]), generator=torch.Generator().manual_seed(0))
    assert replacement.tolist() == [[1, 1, 1]] and has_synonym.tolist() == [[True, False, True]]


def test_a_table_without_synonyms_changes_nothing():
    table = _table([0, 0, 0], [])
    token_ids = torch.tensor([1, 0, 1])
    replacement, has_synonym = table.sample(token_ids)
    assert torch.equal(replacement, token_ids) and not has_synonym.any()


def test_coverage_reads_an_integer_mask_as_true_where_it_is_not_zero():
    table = _table([0, 1, 1, 2], [2, 0])  # tokens 0 and 2 have synonyms, token 1 none
    token_ids = torch.tensor([[0, 1, 2, 1]])
    for dtype in (torch.bool, torch.int64, torch.int32):  # attention masks come as int64
        mask = torch.tensor([[1, 1, 0, 1]]).to(dtype)
        assert synonym_coverage(table=table, token_ids=token_ids, mask=mask) == pytest.approx(1 / 3)
    # a weight-like mask: each non-zero position counts once, as one position
    assert synonym_coverage(table=table, token_ids=token_ids, mask=torch.tensor([[2, 1, 0, 0]])) == pytest.approx(1 / 2)
