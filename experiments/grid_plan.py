"""Planning and resuming a grid: each cell's train.py command and what to do with its folder.

One job: decide, before anything runs, for every cell whether its run is finished (skip),
resumable (``--resume``), to restart (``--overwrite``) or new, and build its command. A
finished or resumable run made with other settings than the grid asks for now stops the
grid with one error naming the run's run_config.json, so numbers are never mixed.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from experiments.grid_types import FINISHED, NEW, RESTART, RESUME, TRAIN_SCRIPT, Cell, GridError, GridSettings
from experiments.run_loading import model_tag


# Settings that decide a run's numbers; a finished run made with other values is not reused.
# (RESUME_INVARIANTS of mt_dnn.run_setup, plus what is evaluated; the model is compared by tag.)
COMPARED_SETTINGS = (
    "model", "perturbation", "perturbation_options", "seed", "epochs", "batch_size", "learning_rate",
    "weight_decay", "warmup", "grad_clip", "grad_accumulation", "train_datasets", "max_seq_len",
    "max_train_examples", "batching", "amp", "test_datasets", "max_eval_examples",
)


def train_arguments(*, cell: Cell, settings: GridSettings) -> list[str]:
    """train.py's arguments for one cell (without --resume/--overwrite)."""
    args = [
        "--model", cell.model.name, "--data_dir", str(settings.data_dir),
        "--train_datasets", settings.train_datasets, "--test_datasets", settings.test_datasets,
        "--epochs", str(settings.epochs), "--batch_size", str(cell.model.batch_size),
        "--learning_rate", repr(settings.learning_rate), "--warmup", repr(settings.warmup),
        "--max_seq_len", str(settings.max_seq_len), "--seed", str(cell.seed),
        *cell.method.flags(),
        "--output_dir", str(cell.run_dir(settings.runs_dir)), "--no_progress",
    ]
    if settings.max_train_examples:
        args += ["--max_train_examples", str(settings.max_train_examples)]
    if settings.max_eval_examples:
        args += ["--max_eval_examples", str(settings.max_eval_examples)]
    if settings.save_every:
        args += ["--save_every", str(settings.save_every)]
    if settings.cache_dir is not None:
        args += ["--cache_dir", str(settings.cache_dir)]
    return args + list(settings.extra_train_args)


def launcher(*, gpus: int) -> list[str]:
    if gpus > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(gpus),
                str(TRAIN_SCRIPT)]
    return [sys.executable, str(TRAIN_SCRIPT)]


def intended_config(*, arguments: list[str]) -> dict:
    """train.py's resolved configuration for these arguments, as run_config.json would hold it."""
    from mt_dnn.cli_train import parse_config
    from mt_dnn.errors import UserError

    try:
        config = parse_config(arguments)
    except UserError as exc:
        raise GridError(f"train.py would reject the grid's arguments: {exc}") from None
    return json.loads(json.dumps(vars(config), default=str))


def _setting_differences(*, saved: dict, wanted: dict) -> list[str]:
    problems = []
    for key in COMPARED_SETTINGS:
        if key not in saved:
            continue
        have, want = saved[key], wanted.get(key)
        if key == "model":
            same = model_tag(model=str(have)) == model_tag(model=str(want))
        else:
            same = have == want
        if not same:
            problems.append(f"--{key} {have!r} (the grid asks {want!r})")
    return problems


@dataclass(frozen=True)
class PlannedRun:
    cell: Cell
    run_dir: Path
    status: str  # FINISHED, RESUME, RESTART or NEW
    command: tuple[str, ...]  # empty when finished


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise GridError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); delete the run folder to redo it") from None
    if not isinstance(value, dict):
        raise GridError(f"{path}: expected a JSON object; delete the run folder to redo it")
    return value


def is_finished(*, run_dir: Path) -> bool:
    path = Path(run_dir) / "run_summary.json"
    return path.is_file() and _read_json(path).get("finished") is True


def _has_step_checkpoint(run_dir: Path) -> bool:
    folder = run_dir / "checkpoints"
    return folder.is_dir() and any(p.name.startswith("step-") and p.suffix == ".pt" for p in folder.iterdir())


def plan_run(*, cell: Cell, settings: GridSettings) -> PlannedRun:
    run_dir = cell.run_dir(settings.runs_dir)
    arguments = train_arguments(cell=cell, settings=settings)
    wanted = intended_config(arguments=arguments)
    config_path = run_dir / "run_config.json"
    if is_finished(run_dir=run_dir):
        saved = _read_json(config_path) if config_path.is_file() else {}
        differences = _setting_differences(saved=saved, wanted=wanted)
        if differences:
            raise GridError(
                f"{config_path}: this finished run was made with {'; '.join(differences)}; "
                "give the grid another --output folder, or delete the run folder to redo it"
            )
        return PlannedRun(cell, run_dir, FINISHED, ())
    if config_path.is_file() and _has_step_checkpoint(run_dir):
        saved = _read_json(config_path)
        differences = _setting_differences(saved=saved, wanted=wanted)
        if saved.get("world_size", 1) != settings.gpus:
            differences.append(f"{saved.get('world_size', 1)} processes (the grid asks --gpus {settings.gpus})")
        if differences:
            raise GridError(
                f"{config_path}: this unfinished run was started with {'; '.join(differences)}; it can only be "
                "resumed with the same settings: give the grid another --output folder, or delete the run folder"
            )
        status, mode = RESUME, ["--resume"]
    elif any((run_dir / name).exists() for name in ("run_config.json", "metrics.jsonl", "checkpoints",
                                                     "predictions", "model", "run_summary.json")):
        status, mode = RESTART, ["--overwrite"]
    else:
        status, mode = NEW, []
    return PlannedRun(cell, run_dir, status, tuple(launcher(gpus=settings.gpus) + arguments + mode))


def plan_grid(*, cells: list[Cell], settings: GridSettings) -> list[PlannedRun]:
    """Every cell's plan; conflicts with existing runs are all reported in one error."""
    plans, problems = [], []
    for cell in cells:
        try:
            plans.append(plan_run(cell=cell, settings=settings))
        except GridError as exc:
            problems.append(str(exc))
    if problems:
        more = f" (and {len(problems) - 1} more like it)" if len(problems) > 1 else ""
        raise GridError(problems[0] + more)
    return plans
