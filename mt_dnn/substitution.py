"""Robust accuracy: a split scored again with words substituted, the same substitutes for every model.

Adversarial training exists to make a model robust to small changes of its input, yet no table
of the paper measures that. ``predict.py --substitute KIND --substitution_rate R`` replaces
tokens of the split before scoring it:

- ``wordnet``: each whole word that has a WordNet synonym (the table and whole-word rule the
  WordNet providers use) is replaced, with probability R, by one of its synonyms;
- ``neighbour``: each non-special token is replaced, with probability R, by its most similar
  vocabulary token (the top-1 neighbour table the 1-x providers use).

The substitutes depend only on the example (its uid), the seed, the tokenizer and the
*pretrained* model's input embeddings (not the fine-tuned ones), so models fine-tuned from the
same encoder, by any method, are scored on exactly the same substituted text. Rate 0 leaves
the split unchanged. Substitutions are single tokens, so lengths and truncation do not change.
"""

from __future__ import annotations

import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from mt_dnn.features import TokenizedSplit

SUBSTITUTIONS = ("wordnet", "neighbour")
DEFAULT_RATES = {"wordnet": 1.0, "neighbour": 0.15}


class Substituter:
    """Candidate substitutes of every vocabulary token, for one kind of substitution."""

    def __init__(self, *, kind: str, tokenizer, embeddings: torch.Tensor | None, cache_dir: Path) -> None:
        if kind not in SUBSTITUTIONS:
            raise ValueError(f"kind: expected one of {SUBSTITUTIONS}, got {kind!r}")
        self.kind = kind
        self.special_ids = np.array(sorted({int(i) for i in tokenizer.all_special_ids}), dtype=np.int64)
        if kind == "wordnet":
            from noise_training.synonyms import load_or_build_synonym_table
            from noise_training.word_boundaries import word_piece_rules

            table = load_or_build_synonym_table(tokenizer=tokenizer, cache_dir=Path(cache_dir) / "synonyms")
            self.offsets = table.offsets.numpy()
            self.synonyms = table.synonym_ids.numpy()
            self.rules = word_piece_rules(tokenizer=tokenizer)
        else:
            from noise_training.neighbors import load_or_build_neighbor_table, never_neighbor_token_ids

            table = load_or_build_neighbor_table(embeddings=embeddings, k=1, cache_dir=Path(cache_dir) / "neighbors",
                                                 excluded_ids=never_neighbor_token_ids(tokenizer=tokenizer))
            self.top1 = table.indices[:, 0].numpy()

    def eligible(self, ids: np.ndarray) -> np.ndarray:
        """Bool [T]: positions of one example that may be substituted."""
        real = ~np.isin(ids, self.special_ids)
        if self.kind == "neighbour":
            return real
        from noise_training.word_boundaries import whole_word_positions

        tensor = torch.from_numpy(ids.astype(np.int64))[None]
        whole = whole_word_positions(input_ids=tensor, real_tokens=torch.from_numpy(real)[None],
                                     rules=self.rules)[0].numpy()
        counts = self.offsets[ids + 1] - self.offsets[ids]
        return whole & (counts > 0)

    def substitute(self, ids: np.ndarray, positions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = ids.copy()
        if self.kind == "neighbour":
            out[positions] = self.top1[ids[positions]]
            return out
        for position in positions:
            start, end = self.offsets[ids[position]], self.offsets[ids[position] + 1]
            out[position] = self.synonyms[start + rng.integers(end - start)]
        return out


def substitute_split(*, data: TokenizedSplit, substituter: Substituter, rate: float,
                     seed: int) -> tuple[TokenizedSplit, dict]:
    """``data`` with tokens substituted, and what was done (shares of tokens and examples changed)."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate: expected a number in [0, 1], got {rate}")
    input_ids = data.input_ids.copy()
    changed_tokens = real_tokens = changed_examples = 0
    for index in range(len(data)):
        start, end = int(data.offsets[index]), int(data.offsets[index + 1])
        ids = data.input_ids[start:end].astype(np.int64)
        # One generator per example, keyed by its uid: the same substitutes whatever the batch or order.
        rng = np.random.default_rng([seed, zlib.crc32(str(data.uids[index]).encode("utf-8"))])
        eligible = substituter.eligible(ids)
        chosen = np.flatnonzero(eligible & (rng.random(len(ids)) < rate))
        new = substituter.substitute(ids, chosen, rng)
        input_ids[start:end] = new.astype(input_ids.dtype)
        differs = int((new != ids).sum())
        changed_tokens += differs
        changed_examples += int(differs > 0)
        real_tokens += int((~np.isin(ids, substituter.special_ids)).sum())
    report = {"kind": substituter.kind, "rate": rate, "seed": seed,
              "changed_token_share": changed_tokens / max(1, real_tokens),
              "changed_example_share": changed_examples / max(1, len(data))}
    return replace(data, input_ids=input_ids), report


def pretrained_input_embeddings(*, model_name: str) -> torch.Tensor:
    """The input embedding matrix of the pretrained encoder a run started from."""
    from transformers import AutoModel

    return AutoModel.from_pretrained(model_name).get_input_embeddings().weight.detach()
