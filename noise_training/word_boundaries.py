"""Which positions of a batch hold a whole word, as opposed to a piece of a longer word.

WordNet synonyms are looked up per vocabulary token, but in "pan ##ini" the token "pan" is
not the word "pan"; replacing it by "trash" would be noise of another kind than the paper's.
A token *continues* the word before it when

- WordPiece (BERT): it has the ``##`` prefix;
- byte-level BPE (RoBERTa): it has no ``Ġ`` word-start marker, starts with a letter, and
  the token before it ends with a letter ("Ġpan" "ini"). Punctuation glued to a word
  ("Ġcar" ","; "ĠJohn" "'s"; "Ġfriend" ".") continues nothing, and a word glued to
  punctuation before it ("(" "car") starts a word of its own.

Letters are read from the text a byte-level token stands for, not from its byte symbols:
"Zürich" is "ĠZ" "Ã¼" "rich", and "Ã¼" is the letter ü (read symbol by symbol, its "¼" is no
letter, so "rich" would pass for a whole word and be replaced by "wealthy"). A token that
starts or ends inside a character split between two tokens counts as a letter there: what it
holds is part of one character, hence of one word.

The first real token after a special token or padding never continues anything (the first
word of the premise after ``<s>`` and of the hypothesis after ``</s></s>`` has no ``Ġ``).
A position holds a whole word when it does not continue a word and the next token does not
continue it. Capitalisation plays no part here (the synonym table handles case).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class WordPieceRules:
    """Per-vocabulary-token facts the whole-word rule needs (bool [V] each)."""

    glues: torch.Tensor  # may continue the token before it
    ends_in_letter: torch.Tensor  # its last character is a letter (BPE: what a glued token may continue)

    def to(self, device) -> "WordPieceRules":
        return WordPieceRules(glues=self.glues.to(device), ends_in_letter=self.ends_in_letter.to(device))


def word_piece_rules(*, tokenizer) -> WordPieceRules:
    """The rules of ``tokenizer``'s vocabulary (WordPiece or byte-level BPE)."""
    from noise_training.synonyms import vocabulary_scheme  # imports NLTK: only when a table is built

    scheme = vocabulary_scheme(tokenizer=tokenizer)
    vocab = tokenizer.get_vocab()
    size = max(len(tokenizer), max(vocab.values()) + 1)
    glues = torch.zeros(size, dtype=torch.bool)
    ends_in_letter = torch.ones(size, dtype=torch.bool)
    for token, index in vocab.items():
        if scheme.kind == "wordpiece":
            glues[index] = token.startswith(scheme.continuation_prefix)
        else:
            marked = token.startswith(scheme.word_start_marker)
            text = _byte_level_text(tokenizer, token[len(scheme.word_start_marker):] if marked else token)
            glues[index] = not marked and _is_letter(text[:1])
            ends_in_letter[index] = _is_letter(text[-1:])
    return WordPieceRules(glues=glues, ends_in_letter=ends_in_letter)


def _byte_level_text(tokenizer, symbols: str) -> str:
    """The text byte-level symbols stand for ("Ã¼" -> "ü"), with U+FFFD where a character is cut."""
    return tokenizer.convert_tokens_to_string([symbols]) if symbols else ""


def _is_letter(character: str) -> bool:
    # U+FFFD: the token holds part of a character split between tokens, so it joins that word
    return character == "\ufffd" or character.isalpha()


def whole_word_positions(*, input_ids: torch.Tensor, real_tokens: torch.Tensor,
                         rules: WordPieceRules) -> torch.Tensor:
    """Bool [B, T]: real, non-special tokens that form a word on their own.

    ``real_tokens`` marks positions that are neither padding nor special tokens.
    """
    continues = torch.zeros_like(real_tokens)
    continues[:, 1:] = (real_tokens[:, 1:] & real_tokens[:, :-1] & rules.glues[input_ids[:, 1:]]
                        & rules.ends_in_letter[input_ids[:, :-1]])
    next_continues = torch.zeros_like(real_tokens)
    next_continues[:, :-1] = continues[:, 1:]
    return real_tokens & ~continues & ~next_continues
