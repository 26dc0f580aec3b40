"""A copy of the real ANLI dev/test files without the training files, for tests that need them absent.

The shared folder holds only dev and test; a user's machine, following the README, holds the
whole release. Tests that check what happens without the training files build this copy
instead of assuming what ``$ANLI_DIR`` holds.
"""

from __future__ import annotations

import shutil
from pathlib import Path

ROUNDS = ("R1", "R2", "R3")


def dev_test_only(anli_dir: Path, target: Path) -> Path:
    """``target`` with R1-R3 dev.jsonl and test.jsonl copied from ``anli_dir``, and no train.jsonl."""
    for name in ROUNDS:
        (target / name).mkdir(parents=True, exist_ok=True)
        for split in ("dev", "test"):
            shutil.copyfile(anli_dir / name / f"{split}.jsonl", target / name / f"{split}.jsonl")
    return target
