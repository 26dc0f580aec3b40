"""The output folder's life: its lock, the checks before a run uses it, and the files a run starts with.

Order matters for "nothing half-written": the folder is only locked while the inputs are
checked (a folder this run had to create for its lock is removed again if a check fails),
and :func:`start_run_folder` writes ``model/`` and ``task_defs/`` (each built beside its
final name and renamed whole) before ``run_config.json``, the file that says a run exists.

A folder whose run never reached a checkpoint holds nothing to continue: ``--resume``
starts it afresh with the current settings (saying so) instead of refusing them.

Only what train.py wrote is ever deleted. ``--overwrite`` (and a ``--resume`` that starts
afresh) removes the result entries of a folder only when it is recognisably a run folder
(:func:`is_run_folder`: its ``run_config.json``, or the marker :data:`RUN_MARKER` that a
run writes before anything else), and never when an entry to be removed is, or holds, an
input of this run (a ``--task_def`` file, a data folder, the model, the cache) or another
run folder: a user's own ``model/`` or ``task_defs/`` folder looks like a run's but is not.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
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
# Written first into every folder a run starts, so that even a start cut short before
# run_config.json leaves a folder --overwrite recognises as ours.
RUN_MARKER = ".mtdnn_run"
_RUN_KEYS = ("train_datasets", "output_dir", "perturbation")  # in every run_config.json train.py writes


def is_run_folder(folder: Path) -> bool:
    """A folder train.py wrote: its marker, or a run_config.json with the keys train.py writes."""
    folder = Path(folder)
    if (folder / RUN_MARKER).is_file():
        return True
    try:
        saved = json.loads((folder / "run_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(saved, dict) and all(key in saved for key in _RUN_KEYS)


def _not_a_folder_reason(path: Path) -> str | None:
    """Why ``path`` (which exists as a name) cannot be used as a folder, or None when it can."""
    if path.is_symlink():
        try:
            os.stat(path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return "is a symbolic link that loops"
            return f"is a symbolic link to {os.readlink(path)}, which does not exist"
    if not path.is_dir():
        return "exists and is not a folder"
    return None


def check_output_path(output_dir: Path) -> None:
    """``--output_dir`` names a folder, or a place where one can be made: the first existing
    name on its way up must be a folder (not a file, a dangling or looping link)."""
    for path in (output_dir, *output_dir.parents):
        if not os.path.lexists(path):
            continue
        reason = _not_a_folder_reason(path)
        if reason is None:
            return
        if path == output_dir:
            raise ConfigError(f"--output_dir {output_dir}: {reason}; expected a folder")
        raise ConfigError(f"--output_dir {output_dir}: lies under {path}, which {reason}; expected a folder")


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
    existing = [name for name in RUN_RESULT_FILES if os.path.lexists(output_dir / name)]
    if existing and not is_run_folder(output_dir):
        why = "its run_config.json is not one train.py wrote" if "run_config.json" in existing else "no run_config.json"
        raise ConfigError(
            f"--output_dir {output_dir}: holds {', '.join(existing)} but is not a run folder of train.py ({why}); "
            "train.py deletes only what it wrote, even with --overwrite: give another --output_dir"
        )
    if existing and not (resume or overwrite):
        started = "" if has_progress(output_dir) else " (stopped before its first checkpoint: --resume starts it afresh)"
        raise ConfigError(
            f"--output_dir {output_dir}: holds another run's results ({', '.join(existing)}){started}; "
            "pass --resume to continue it or --overwrite to replace it"
        )
    if resume and not (output_dir / "run_config.json").exists():
        raise ConfigError(f"--resume: {output_dir} holds no run to resume (no run_config.json)")


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_nothing_of_value_is_cleared(*, output_dir: Path, inputs: list[tuple[str, Path]]) -> None:
    """Before :func:`clear_previous_run`: no input of this run, and no other run folder, in what it removes.

    ``inputs`` are (flag, path) pairs. The output folder itself must not be an input either
    (a data folder or the model's folder given as --output_dir).
    """
    out = output_dir.resolve()
    for flag, path in inputs:
        path = Path(path).resolve()
        if path == out:
            raise ConfigError(f"--output_dir {output_dir}: is the {flag} folder; give a folder of its own to the run")
        for name in RUN_RESULT_FILES:
            entry = out / name
            if os.path.lexists(entry) and _inside(path, entry.resolve()):
                raise ConfigError(f"--output_dir {output_dir}: {name} there holds {flag} {path}, which a fresh "
                                  "start would delete; give another --output_dir")
    for name in RUN_RESULT_FILES:
        entry = out / name
        if entry.is_dir() and not entry.is_symlink():
            nested = next((p.parent for p in entry.rglob("run_config.json") if is_run_folder(p.parent)), None)
            if nested is not None:
                raise ConfigError(f"--output_dir {output_dir}: {nested} is another run folder, which a fresh start "
                                  "would delete; give another --output_dir")


def clear_previous_run(output_dir: Path) -> None:
    for name in RUN_RESULT_FILES:
        path = output_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif os.path.lexists(path):
            path.unlink()  # a link is removed, never what it points to


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


def _write_error(target: Path, code: int | None, reason: str) -> OSError:
    error = OSError(f"{target}: cannot write it ({reason})")  # one argument: str() is the message alone
    error.errno = code
    return error


def _write_folder(target: Path, fill) -> None:
    """Build a folder beside ``target`` with ``fill(staging)`` and rename it into place whole.

    A write that fails (a full disk, no permission) is one OSError naming ``target``; the
    tokenizers library reports such errors as a plain ``Exception`` ("... (os error 28)"),
    which is turned into an OSError here too.
    """
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        try:
            fill(staging)
            os.replace(staging, target)
        except OSError as exc:
            raise _write_error(target, exc.errno, exc.strerror or " ".join(str(exc).split())) from exc
        except Exception as exc:
            found = re.search(r"\(os error (\d+)\)", str(exc))
            if found is None:
                raise
            code = int(found.group(1))
            raise _write_error(target, code, os.strerror(code)) from exc
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
        atomic_write_json(output_dir / RUN_MARKER, {"written_by": "train.py", "note": "a run folder: --overwrite "
                                                    "may replace what train.py wrote here"})

        def fill_model(staging: Path) -> None:
            setup.model.encoder.config.save_pretrained(staging)
            setup.tokenizer.save_pretrained(staging)

        try:
            _write_folder(output_dir / "model", fill_model)
            _write_folder(output_dir / TASK_DEF_COPIES,
                          lambda staging: _copy_task_defs(staging, setup.record["task_def_copies"]))
            atomic_write_json(output_dir / "run_config.json", setup.record)
        except BaseException:  # no run_config.json: what this start wrote is removed, nothing is half-written
            if not (output_dir / "run_config.json").exists():
                clear_previous_run(output_dir)
                (output_dir / RUN_MARKER).unlink(missing_ok=True)
            raise
    elif setup.dist.is_main and setup.version_change is not None:
        record_version_change(output_dir / "run_config.json", setup.version_change)
    barrier(setup.dist)


def record_version_change(config_path: Path, change: dict) -> None:
    """Append a resume's other library versions to run_config.json (``versions`` stays the start's)."""
    saved = json.loads(config_path.read_text(encoding="utf-8"))
    saved.setdefault("resumed_with_versions", []).append(change)
    atomic_write_json(config_path, saved)


def finished_summary(output_dir: Path) -> dict | None:
    """run_summary.json of a finished run, else None."""
    try:
        summary = json.loads((output_dir / "run_summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return summary if isinstance(summary, dict) and summary.get("finished") is True else None
