"""Checkpoints that survive a crash at any moment, and are checked before they are trusted.

Each checkpoint is written to a temporary file, flushed, fsynced and renamed; a small JSON
manifest with its size and SHA-256 is written (the same way) only after that, so a
checkpoint without a valid manifest never existed. Loading verifies the manifest and uses
``torch.load(weights_only=True)``, which executes no code from the file. When the newest
checkpoint is corrupt, the previous one is used, and the log says so.

The trainer never asks for a checkpoint while its last update was bad (non-finite loss or
weights), so rotating out the oldest checkpoint never loses the last good one. The
environment variable named by ``PAUSE_ENV`` exists for the crash tests only.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import torch

from mt_dnn.errors import UserError
from mt_dnn.run_files import atomic_write_bytes, atomic_write_json, fsync_dir

logger = logging.getLogger(__name__)

_STEP_NAME = re.compile(r"^step-(\d{9})\.pt$")


class CheckpointError(UserError):
    """No usable checkpoint where one was required."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _manifest_path(path: Path) -> Path:
    return path.with_suffix(".json")


# Test-only: seconds to sleep while a checkpoint's temporary file is complete but not yet
# renamed, so that the crash tests can SIGKILL a run in the middle of a checkpoint write.
PAUSE_ENV = "MT_DNN_TEST_PAUSE_IN_CHECKPOINT_WRITE"


def _pause_for_crash_tests() -> None:
    seconds = os.environ.get(PAUSE_ENV)
    if seconds:
        time.sleep(float(seconds))


def write_checkpoint(path: Path, state: dict[str, Any], *, info: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    manifest = _manifest_path(path)
    if manifest.exists():
        # Replacing a checkpoint of the same name: drop its manifest first, so that a crash
        # between the two renames leaves a checkpoint without manifest (removed on resume)
        # rather than a new file under the old manifest (reported as corrupt).
        manifest.unlink()
        fsync_dir(path.parent)
    atomic_write_bytes(path, data, before_replace=_pause_for_crash_tests)
    atomic_write_json(manifest, {**info, "file": path.name, "size": len(data), "sha256": _sha256(data)})


def read_checkpoint(path: Path, *, map_location="cpu") -> dict[str, Any]:
    """The checkpoint's state after checking it against its manifest; raises CheckpointError."""
    manifest_path = _manifest_path(path)
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        data = path.read_bytes()
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: bad JSON, UTF-8 or a huge number
        raise CheckpointError(f"{path}: unreadable checkpoint or manifest ({exc})") from None
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{manifest_path}: corrupt manifest (expected a JSON object)")
    if len(data) != manifest.get("size") or _sha256(data) != manifest.get("sha256"):
        raise CheckpointError(f"{path}: corrupt checkpoint (size or SHA-256 differs from {manifest_path.name})")
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for a bad pickle stream
        raise CheckpointError(f"{path}: cannot load checkpoint ({type(exc).__name__}: {exc})") from None


class CheckpointManager:
    """``checkpoints/step-NNNNNNNNN.pt`` (the newest ``keep_last`` kept) and ``best.pt``."""

    def __init__(self, folder: Path, *, keep_last: int = 2) -> None:
        self.folder = Path(folder)
        self.keep_last = max(1, keep_last)

    def step_checkpoints(self) -> list[Path]:
        if not self.folder.exists():
            return []
        found = [p for p in self.folder.iterdir() if _STEP_NAME.match(p.name)]
        return sorted(found, key=lambda p: int(_STEP_NAME.match(p.name).group(1)), reverse=True)

    def save(self, state: dict[str, Any], *, step: int, info: dict[str, Any]) -> Path:
        path = self.folder / f"step-{step:09d}.pt"
        write_checkpoint(path, state, info={**info, "step": step})
        for old in self.step_checkpoints()[self.keep_last:]:
            _manifest_path(old).unlink(missing_ok=True)
            old.unlink(missing_ok=True)
        return path

    def save_best(self, state: dict[str, Any], *, info: dict[str, Any]) -> Path:
        path = self.folder / "best.pt"
        write_checkpoint(path, state, info=info)
        return path

    def load_latest(self, *, map_location="cpu") -> tuple[Path, dict[str, Any]] | None:
        """The newest checkpoint that verifies, falling back to older ones; None if there is none."""
        failures = []
        for path in self.step_checkpoints():
            try:
                state = read_checkpoint(path, map_location=map_location)
            except CheckpointError as exc:
                failures.append(str(exc))
                logger.warning("%s; falling back to the previous checkpoint", exc)
                continue
            return path, state
        if failures:
            raise CheckpointError(f"{self.folder}: no valid checkpoint to resume from ({failures[-1]})")
        return None

    def clean_partial_files(self) -> None:
        """Remove temporary files a killed writer left behind, and checkpoints without manifest."""
        if not self.folder.exists():
            return
        for path in self.folder.iterdir():
            if path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)
            elif path.suffix == ".pt" and not _manifest_path(path).exists():
                path.unlink(missing_ok=True)
            elif path.suffix == ".json" and not path.with_suffix(".pt").exists():
                path.unlink(missing_ok=True)
