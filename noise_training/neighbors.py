"""Top-k cosine neighbour table of a vocabulary (paper section 3.1), cached on disk: the entry point.

Why this file exists
--------------------
Experiments 1 and 2 move a token embedding toward "the most similar other token" (method 1-1)
or one of its 10 most similar tokens (method 1-2).  The paper computes cosine similarity
between every pair of token embeddings and sorts every row; only the top 10 are ever used, so
this module keeps a top-k table instead (30,522^2 int32 indices alone would be 3.7 GB).  The
table is computed once per (embedding matrix, k, excluded tokens) before training and cached.

Which tokens may never be a neighbour (``never_neighbor_token_ids``)
--------------------------------------------------------------------
* The tokenizer's special tokens (``tokenizer.all_special_ids``: BERT ``[CLS] [SEP] [PAD]
  [UNK] [MASK]``, RoBERTa ``<s> </s> <pad> <unk> <mask>``).  They are not words: [CLS]/<s>,
  [SEP]/</s> and [PAD]/<pad> mark structure, and moving a word toward [MASK] would feed the
  model its pre-training objective (a partly masked input) instead of a word-level change.
* Never-used placeholder tokens: BERT's ``[unused0]`` ... ``[unused993]`` and fairseq/RoBERTa's
  ``madeupword0000`` ...  Their embeddings were never trained on text (they stayed near their
  random initialisation), so moving a word toward them moves it toward noise, not toward a
  similar word.
Excluded tokens still get their own neighbours (the provider leaves special tokens alone, but
a complete table costs little and keeps ``indices[token]`` valid for every token id); they
simply never appear in anyone's list.

Where the parts live: the kernel (tensors in, tensors out) is noise_training.neighbors_topk,
its per-panel selection noise_training.neighbors_select, the cache (key, file format,
validation) noise_training.neighbors_cache. This module holds which tokens may never be a
neighbour and gathers the public names, so callers import from one place.
"""

from __future__ import annotations

import re

from noise_training.neighbors_cache import (
    FORMAT_VERSION, NeighborTable, load_or_build_neighbor_table, neighbor_table_key, save_neighbor_table,
)
from noise_training.neighbors_topk import DEFAULT_BLOCK_SIZE, topk_cosine_neighbors

__all__ = [
    "DEFAULT_BLOCK_SIZE", "FORMAT_VERSION", "NeighborTable", "load_or_build_neighbor_table", "neighbor_table_key",
    "never_neighbor_token_ids", "save_neighbor_table", "topk_cosine_neighbors",
]

_PLACEHOLDER_TOKEN = re.compile(r"^(\[unused\d+\]|madeupword\d+)$")


def never_neighbor_token_ids(*, tokenizer) -> list[int]:
    """Token ids that may never be anyone's neighbour: special and placeholder tokens.

    Special tokens come from ``tokenizer.all_special_ids``; placeholders are vocabulary entries
    named ``[unused<N>]`` (BERT) or ``madeupword<N>`` (RoBERTa/fairseq).  Why: see the module
    docstring.  Returns a sorted list without duplicates.
    """
    ids = {int(i) for i in tokenizer.all_special_ids if i is not None}
    ids.update(int(i) for token, i in tokenizer.get_vocab().items() if _PLACEHOLDER_TOKEN.match(token))
    return sorted(ids)
