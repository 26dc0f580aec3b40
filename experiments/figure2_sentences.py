"""Figure 2's sentences: real sentences holding "she", "he" or "you", and where the words sit in them.

One job of experiments.figure2: pick up to N sentences per word (ANLI dev/test hypotheses when
the files are at hand, else a built-in list) and find the token positions whose text is
exactly one of the words, so the figure compares the same occurrences across variants.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch

# Used when no ANLI file is at hand (or it holds too few occurrences of a word).
BUILT_IN_SENTENCES = (
    "She moved to Paris after she finished her degree.",
    "She was the first woman to win the award.",
    "After the match she thanked the crowd.",
    "She wrote three novels before she turned thirty.",
    "Nobody knew where she had hidden the letters.",
    "She is a member of the city council.",
    "When the storm came she closed the shop early.",
    "She never played professional football.",
    "The reporter said she would publish the story on Monday.",
    "She and her brother founded the company in 1998.",
    "He was born in a small village near the coast.",
    "He played for the national team for ten years.",
    "After the election he resigned from the party.",
    "He did not attend the ceremony.",
    "The film he directed won several prizes.",
    "He studied law before he became a journalist.",
    "Everyone agreed that he had been treated unfairly.",
    "He sold the house and moved abroad.",
    "He is older than his sister.",
    "The coach said he was proud of the players.",
    "You can buy tickets at the station.",
    "If you leave now you will catch the last train.",
    "You should read the instructions first.",
    "Did you see the game last night?",
    "You need a passport to cross the border.",
    "The museum is closed when you arrive on Monday.",
    "You will find the keys on the kitchen table.",
    "Thank you for coming to the meeting.",
    "You cannot park your car in front of the gate.",
    "I told you the shop opens at nine.",
)


@dataclass(frozen=True)
class Occurrence:
    sentence: int  # row in the batch
    position: int  # token position in that row
    word: str


def find_sentences(*, data_dir: Path | None, words: tuple[str, ...], per_word: int) -> list[str]:
    """Up to ``per_word`` sentences per word: ANLI dev/test hypotheses first, then the built-in list."""
    pools: dict[str, list[str]] = {word: [] for word in words}
    patterns = {word: re.compile(rf"\b{re.escape(word)}\b", re.IGNORECASE) for word in words}
    candidates: list[str] = []
    if data_dir is not None:
        for round_name in ("R1", "R2", "R3"):
            for split in ("dev", "test"):
                path = Path(data_dir) / round_name / f"{split}.jsonl"
                if not path.is_file():
                    continue
                with open(path, encoding="utf-8") as handle:
                    for number, line in enumerate(handle, start=1):
                        if not line.strip():
                            continue
                        try:
                            hypothesis = json.loads(line)["hypothesis"]
                        except (json.JSONDecodeError, KeyError, TypeError):
                            raise SystemExit(f"figure2: error: {path}:{number}: expected a JSON object with a "
                                             "'hypothesis' field (ANLI v1.0 format)") from None
                        candidates.append(str(hypothesis))
    candidates += list(BUILT_IN_SENTENCES)
    chosen: list[str] = []
    for sentence in candidates:
        wanted = [w for w in words if patterns[w].search(sentence) and len(pools[w]) < per_word]
        if wanted:
            for word in wanted:
                pools[word].append(sentence)
            chosen.append(sentence)
        if all(len(pool) >= per_word for pool in pools.values()):
            break
    return chosen


def locate(*, sentences: list[str], offsets: torch.Tensor, attention_mask: torch.Tensor,
           words: tuple[str, ...]) -> list[Occurrence]:
    """Token positions whose text is exactly one of the words (not a piece of a longer word)."""
    found = []
    for row, sentence in enumerate(sentences):
        lowered = sentence.lower()
        for position in range(offsets.shape[1]):
            start, end = (int(v) for v in offsets[row, position])
            if not attention_mask[row, position] or end <= start:
                continue
            text = lowered[start:end].strip()
            before = lowered[start - 1] if start > 0 else " "
            after = lowered[end] if end < len(lowered) else " "
            if text in words and not before.isalnum() and not after.isalnum():
                found.append(Occurrence(row, position, text))
    return found
