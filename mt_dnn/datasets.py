"""Which splits a run trains and evaluates on, where their files are, and loading them.

``--train_datasets anli`` means every training split the task definition lists;
``anli:r1_train,anli:r2_train`` names splits; ``anli,mnli`` trains several tasks.
Every file is checked to exist before anything is loaded, so a missing split is reported
by name at start-up instead of after an hour of training.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mt_dnn.batching import concat_splits
from mt_dnn.errors import ConfigError, DataError
from mt_dnn.features import TokenizedSplit, load_tokenized_split
from mt_dnn.task_def import TaskDef

DEFAULT_ANLI_DIR = "data/anli_v1.0"


@dataclass(frozen=True)
class SplitRef:
    task: str
    split: str

    def __str__(self) -> str:
        return f"{self.task}:{self.split}"


def parse_dataset_list(*, value: str, tasks: dict[str, TaskDef], roles: tuple[str, ...], flag: str) -> list[SplitRef]:
    """``task`` (all splits with one of ``roles``) or ``task:split`` items, comma-separated."""
    refs: list[SplitRef] = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        task_name, _, split = item.partition(":")
        if task_name not in tasks:
            raise ConfigError(f"{flag} {item}: unknown task {task_name!r} (defined: {', '.join(tasks)})")
        task = tasks[task_name]
        if split:
            if split not in task.splits:
                raise ConfigError(f"{flag} {item}: task {task_name} has no split {split!r} "
                                  f"(splits: {', '.join(task.splits)})")
            chosen = [split]
        else:
            chosen = [name for name, s in task.splits.items() if s.role in roles]
            if not chosen:
                raise ConfigError(f"{flag} {item}: task {task_name} defines no {'/'.join(roles)} split")
        for name in chosen:
            ref = SplitRef(task=task_name, split=name)
            if ref not in refs:
                refs.append(ref)
    if not refs:
        raise ConfigError(f"{flag}: expected at least one task or task:split")
    return refs


def default_data_dir(task: str) -> Path:
    """A task's data folder when no --data_dir names it: $<TASK>_DIR (ANLI_DIR, SNLI_DIR, ...),
    else data/anli_v1.0 for ANLI and data/<task> for any other task."""
    value = os.environ.get(f"{task.upper()}_DIR")
    if value:
        return Path(value)
    return Path(DEFAULT_ANLI_DIR if task == "anli" else f"data/{task}")


def resolve_data_dirs(*, values: list[str] | None, tasks: dict[str, TaskDef]) -> dict[str, Path]:
    """``--data_dir PATH`` for every task, and/or ``TASK=PATH`` per task; default: default_data_dir(task)."""
    default = None
    per_task: dict[str, Path] = {}
    for value in values or []:  # a second folder for the same task is refused: which one was meant?
        name, sep, path = value.partition("=")
        if sep and name in tasks:
            if name in per_task:
                raise ConfigError(f"--data_dir: task {name} is given two folders ({per_task[name]} and {path}); "
                                  "give one")
            per_task[name] = Path(path)
        elif sep and not Path(value).exists():
            raise ConfigError(f"--data_dir {value}: unknown task {name!r} (defined: {', '.join(tasks)})")
        else:
            if default is not None:
                raise ConfigError(f"--data_dir: two folders for every task ({default} and {value}); give one, "
                                  "or TASK=PATH per task")
            default = Path(value)
    return {name: per_task.get(name, default or default_data_dir(name)) for name in tasks}


def split_path(*, ref: SplitRef, tasks: dict[str, TaskDef], data_dirs: dict[str, Path]) -> Path:
    return data_dirs[ref.task] / tasks[ref.task].splits[ref.split].path


def check_files_exist(*, refs: list[SplitRef], tasks: dict[str, TaskDef], data_dirs: dict[str, Path]) -> None:
    for ref in refs:
        path = split_path(ref=ref, tasks=tasks, data_dirs=data_dirs)
        if os.path.exists(path) and not path.is_file():
            kind = "a folder" if path.is_dir() else "a FIFO" if path.is_fifo() else "a special file"
            raise DataError(f"split {ref}: {path} is not a regular file ({kind}); expected the split's data file")
    missing = [f"{ref} ({split_path(ref=ref, tasks=tasks, data_dirs=data_dirs)})" for ref in refs
               if not split_path(ref=ref, tasks=tasks, data_dirs=data_dirs).is_file()]
    if missing:
        hint = ""
        if any(ref.task == "anli" for ref in refs):
            hint = "; get ANLI with: python -m mt_dnn.data download-anli --data_dir DIR"
        raise DataError(f"missing split file(s): {', '.join(missing)}{hint}")


def load_splits(
    *, refs: list[SplitRef], tasks: dict[str, TaskDef], data_dirs: dict[str, Path], tokenizer,
    max_seq_len: int, cache_dir: Path | None, max_examples: int | None = None,
) -> dict[SplitRef, TokenizedSplit]:
    loaded = {}
    for ref in refs:
        split = load_tokenized_split(
            path=split_path(ref=ref, tasks=tasks, data_dirs=data_dirs), task=tasks[ref.task], split=ref.split,
            tokenizer=tokenizer, max_seq_len=max_seq_len, cache_dir=cache_dir,
        )
        loaded[ref] = split.take(max_examples) if max_examples else split
    return loaded


def training_tables(loaded: dict[SplitRef, TokenizedSplit]) -> dict[str, TokenizedSplit]:
    """Each task's training splits joined into one table."""
    by_task: dict[str, list[TokenizedSplit]] = {}
    for ref, split in loaded.items():
        by_task.setdefault(ref.task, []).append(split)
    return {task: concat_splits(splits, task=task) for task, splits in by_task.items()}
