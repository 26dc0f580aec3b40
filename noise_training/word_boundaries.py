"""Which positions of a batch hold a whole word, as opposed to a piece of a longer word.

WordNet synonyms are looked up per vocabulary token, but in "pan ##ini" the token "pan" is
not the word "pan"; replacing it by "trash" would be noise of another kind than the paper's.
A position holds a whole word when its token starts a word (WordPiece: no ``##`` prefix;
byte-level BPE: a ``Ġ`` prefix, or the first token after a special token) and the next
token does not continue it.
"""

from __future__ import annotations

import torch


def word_start_vocabulary_mask(*, tokenizer) -> torch.Tensor:
    """Bool [V]: True for tokens that begin a word by their spelling alone."""
    from noise_training.synonyms import vocabulary_scheme  # imports NLTK: only when a table is built

    scheme = vocabulary_scheme(tokenizer=tokenizer)
    vocab = tokenizer.get_vocab()
    mask = torch.zeros(max(len(tokenizer), max(vocab.values()) + 1), dtype=torch.bool)
    for token, index in vocab.items():
        if scheme.kind == "wordpiece":
            mask[index] = not token.startswith(scheme.continuation_prefix)
        else:
            mask[index] = token.startswith(scheme.word_start_marker)
    return mask


def whole_word_positions(*, input_ids: torch.Tensor, real_tokens: torch.Tensor,
                         word_start_vocab: torch.Tensor) -> torch.Tensor:
    """Bool [B, T]: real, non-special tokens that form a word on their own.

    ``real_tokens`` marks positions that are neither padding nor special tokens.
    """
    after_boundary = torch.ones_like(real_tokens)
    after_boundary[:, 1:] = ~real_tokens[:, :-1]  # first token after <s>, </s> or padding
    starts = (word_start_vocab[input_ids] | after_boundary) & real_tokens
    next_continues = torch.zeros_like(real_tokens)
    next_continues[:, :-1] = real_tokens[:, 1:] & ~starts[:, 1:]
    return starts & ~next_continues
