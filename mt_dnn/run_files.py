"""Writing a run's files so that a crash never leaves a half-written one.

JSON files are written to a temporary file, fsynced and renamed (the writer itself is
noise_training.atomic_files); ``metrics.jsonl`` is appended a line at a time and truncated
back to the last checkpoint's line count on resume, so a record is never lost or duplicated.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

# The atomic writer lives with the providers' caches, which need it too (see its docstring).
from noise_training.atomic_files import atomic_write_bytes, fsync_dir

__all__ = ["MetricsLog", "atomic_write_bytes", "atomic_write_json", "atomic_write_jsonl", "fsync_dir"]


def atomic_write_json(path: Path, value: Any) -> None:
    atomic_write_bytes(path, (json.dumps(value, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8"))


def atomic_write_jsonl(path: Path, records: list[dict]) -> None:
    atomic_write_bytes(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode("utf-8"))


class MetricsLog:
    """``metrics.jsonl``: one JSON object per line, appended and flushed as they come."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def count(self) -> int:
        return len(self.read())

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        records = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut by a crash ends the valid part
        return records

    def truncate(self, count: int) -> None:
        """Keep the first ``count`` records (those the checkpoint being resumed had seen)."""
        atomic_write_jsonl(self.path, self.read()[:count])

    def append(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
