"""The output folder's life: its lock, the checks before a run uses it, and the files a run starts with.

Order matters for "nothing half-written": the folder is only locked while the inputs are
checked (a folder this run had to create for its lock is removed again if a check fails),
and :func:`start_run_folder` writes ``model/`` and ``task_defs/`` (each built beside its
final name and renamed whole) before ``run_config.json``, the file that says a run exists.

A folder whose run never reached a checkpoint holds nothing to continue: ``--resume``
starts it afresh with the current settings (saying so) instead of refusing them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from mt_dnn.distributed import DistInfo, barrier, broadcast_object
from mt_dnn.errors import ConfigError
from mt_dnn.run_files import atomic_write_json
from mt_dnn.run_lock import RunLock, RunLockError

logger = logging.getLogger(__name__)

RUN_RESULT_FILES = ("run_config.json", "metrics.jsonl", "run_summary.json", "checkpoints", "predictions", "model",
                    "task_defs", "hf_model", "tensorboard")
TASK_DEF_COPIES = "task_defs"


def check_output_path(output_dir: Path) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise ConfigError(f"--output_dir {output_dir}: exists and is not a folder")


def acquire_lock(output_dir: Path, dist: DistInfo) -> RunLock | None:
    """Rank 0 takes the folder's lock for every rank; all ranks fail together when it is held."""
    lock, problem = None, None
    if dist.is_main:
        lock = RunLock(output_dir)
        try:
            lock.acquire()
        except RunLockError as exc:
            problem = str(exc)
    problem = broadcast_object(dist, problem)
    if problem:
        raise RunLockError(problem)
    return lock


def has_progress(output_dir: Path) -> bool:
    """A checkpoint to continue from (one with its manifest), or a finished run."""
    if (output_dir / "run_summary.json").exists():
        return True
    folder = output_dir / "checkpoints"
    return folder.is_dir() and any(p.name.startswith("step-") and p.suffix == ".pt" and p.with_suffix(".json").exists()
                                   for p in folder.iterdir())


def check_output_dir(*, output_dir: Path, resume: bool, overwrite: bool) -> None:
    existing = [name for name in RUN_RESULT_FILES if (output_dir / name).exists()]
    if existing and not (resume or overwrite):
        started = "" if has_progress(output_dir) else " (stopped before its first checkpoint: --resume starts it afresh)"
        raise ConfigError(
            f"--output_dir {output_dir}: holds another run's results ({', '.join(existing)}){started}; "
            "pass --resume to continue it or --overwrite to replace it"
        )
    if resume and not (output_dir / "run_config.json").exists():
        raise ConfigError(f"--resume: {output_dir} holds no run to resume (no run_config.json)")


def clear_previous_run(output_dir: Path) -> None:
    for name in RUN_RESULT_FILES:
        path = output_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def copy_names(paths: list[str]) -> dict[str, str]:
    """Absolute task-definition path -> its copy's path inside the run folder (unique names)."""
    names: dict[str, str] = {}
    for path in paths:
        source = Path(path)
        name, index = source.name, 1
        while f"{TASK_DEF_COPIES}/{name}" in names.values():
            index += 1
            name = f"{source.stem}.{index}{source.suffix}"
        names[str(source)] = f"{TASK_DEF_COPIES}/{name}"
    return names


def _write_folder(target: Path, fill) -> None:
    """Build a folder beside ``target`` with ``fill(staging)`` and rename it into place whole."""
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        fill(staging)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _copy_task_defs(staging: Path, copies: dict[str, str]) -> None:
    for source, copy in copies.items():
        shutil.copyfile(source, staging / Path(copy).name)


def start_run_folder(setup) -> None:
    """Write run_config.json, model/ and task_defs/ (rank 0), unless an earlier run is being continued.

    Called once every check has passed on every rank, so a bad input leaves the folder as it was.
    """
    barrier(setup.dist)  # no rank may still be checking the folder while rank 0 changes it
    output_dir = setup.output_dir
    if setup.dist.is_main and not setup.continuing:
        if setup.config.resume and (output_dir / "run_config.json").exists():
            logger.warning("--resume: %s has no checkpoint yet; starting afresh with the current settings", output_dir)
        clear_previous_run(output_dir)  # --overwrite, or an earlier start that never reached a checkpoint
        output_dir.mkdir(parents=True, exist_ok=True)

        def fill_model(staging: Path) -> None:
            setup.model.encoder.config.save_pretrained(staging)
            setup.tokenizer.save_pretrained(staging)

        _write_folder(output_dir / "model", fill_model)
        _write_folder(output_dir / TASK_DEF_COPIES,
                      lambda staging: _copy_task_defs(staging, setup.record["task_def_copies"]))
        atomic_write_json(output_dir / "run_config.json", setup.record)
    barrier(setup.dist)


def finished_summary(output_dir: Path) -> dict | None:
    """run_summary.json of a finished run, else None."""
    try:
        summary = json.loads((output_dir / "run_summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return summary if isinstance(summary, dict) and summary.get("finished") is True else None
