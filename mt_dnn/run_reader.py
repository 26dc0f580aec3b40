"""Reading a training run folder back (for predict.py): its configuration and its task definitions.

A run folder must be usable from any working directory and must keep meaning what it
meant when it was trained. So the task definitions come from the run's own copy
(``RUN/task_defs/``), never from the YAML the run was started with, which may have been
edited since (a changed label order would silently relabel every prediction): when that
file differs from the copy, a warning says so. Folders written before the copies existed
fall back to the recorded paths. Every problem with the folder is one line naming the file.
"""

from __future__ import annotations

import logging
from pathlib import Path

from mt_dnn.errors import UserError
from mt_dnn.json_input import read_json_object
from mt_dnn.task_def import TaskDef, load_task_defs

logger = logging.getLogger(__name__)

# what predict.py needs from run_config.json, and of which type
_REQUIRED = {"task_def": list, "train_datasets": str, "max_seq_len": int}


def read_run_config(run_dir: Path) -> dict:
    path = run_dir / "run_config.json"
    if not path.is_file():
        raise UserError(f"--run_dir {run_dir}: no run_config.json (not a training run folder)")
    config = read_json_object(path, what="the run's configuration")
    for key, kind in _REQUIRED.items():
        if not isinstance(config.get(key), kind) or isinstance(config.get(key), bool):
            raise UserError(f"{path}: expected {key!r} ({kind.__name__}); the file is damaged or not train.py's")
    model_config = run_dir / "model" / "config.json"
    if not model_config.is_file():
        raise UserError(f"--run_dir {run_dir}: {model_config} is missing (the run folder is incomplete)")
    return config


def run_task_defs(run_dir: Path, config: dict) -> dict[str, TaskDef]:
    """The task definitions the run trained with: its own copies, else (older runs) the recorded paths."""
    copies = config.get("task_def_copies")
    if not isinstance(copies, dict) or not copies:
        missing = [p for p in config["task_def"] if not Path(p).is_file()]
        if missing:
            raise UserError(f"--run_dir {run_dir}: the run's task definition {missing[0]} is not found (this run "
                            "predates task-definition copies; run predict.py from the folder train.py ran in)")
        return load_task_defs(paths=config["task_def"])
    paths = []
    for source, copy in copies.items():
        path = run_dir / copy
        if not path.is_file():
            raise UserError(f"--run_dir {run_dir}: {path} is missing (the run's copy of {source})")
        original = Path(source)
        try:
            changed = original.is_file() and original.read_bytes() != path.read_bytes()
        except OSError:
            changed = False
        if changed:
            logger.warning("%s has changed since this run was trained; using the run's copy %s", original, path)
        paths.append(path)
    return load_task_defs(paths=paths)
