"""Data that is legal but suspicious: said once per file and kind, with a count, never silently.

A duplicate or null uid makes predictions impossible to join back to the data; an empty
premise or hypothesis, or a text made only of characters the tokenizer does not know (it
becomes ``[UNK]``/special tokens only), trains the model on nothing. None of these stops a
run (released data sets contain a few), but each is one warning line per file:
``FILE: N examples with KIND (first at line L)``. The notes are stored with the token
cache, so a cached split warns exactly as a freshly read one does.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from mt_dnn.data import Example

logger = logging.getLogger(__name__)


def _note(count: int, what: str, first_line: int, detail: str = "") -> str:
    noun = "example" if count == 1 else "examples"
    return f"{count} {noun} with {what} (first at line {first_line}{detail})"


def example_notes(examples: list[Example]) -> list[str]:
    """Duplicate and null uids, empty premises and hypotheses."""
    notes = []
    seen: Counter = Counter()
    duplicates = []
    for example in examples:
        if not example.null_uid:
            seen[example.uid] += 1
            if seen[example.uid] >= 2:
                duplicates.append(example)
    if duplicates:
        notes.append(_note(len(duplicates), "a duplicate uid", duplicates[0].line, f": {duplicates[0].uid!r}"))
    for what, test in (("a null uid (its line number is used)", lambda e: e.null_uid),
                       ("an empty premise", lambda e: not e.premise.strip()),
                       ("an empty hypothesis", lambda e: e.hypothesis is not None and not e.hypothesis.strip())):
        found = [e for e in examples if test(e)]
        if found:
            notes.append(_note(len(found), what, found[0].line))
    return notes


def special_only_notes(examples: list[Example], *, tokenizer) -> list[str]:
    """Non-empty premises/hypotheses whose tokens are all special ([UNK], ...) or none at all."""
    special = set(tokenizer.all_special_ids)
    notes = []
    for field in ("premise", "hypothesis"):
        rows = [e for e in examples if (getattr(e, field) or "").strip()]  # a single sentence has no hypothesis
        if not rows:
            continue
        ids = tokenizer([getattr(e, field) for e in rows], add_special_tokens=False)["input_ids"]
        found = [e for e, tokens in zip(rows, ids) if all(t in special for t in tokens)]
        if found:
            notes.append(_note(len(found), f"a {field} that tokenises to special tokens only", found[0].line))
    return notes


def log_notes(path: Path, notes: list[str]) -> None:
    for note in notes:
        logger.warning("%s: %s", path, note)
