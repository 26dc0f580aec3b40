"""The GLUE suite of the head-to-head: every method x task x seed, trained, scored on AdvGLUE, pruned.

The SNLI head-to-head (experiments.head_to_head) could not tell the methods apart; this suite
asks the same question where SMART is known to help (GLUE's RTE, MRPC, CoLA, STS-B, SST-2) and
adds SNLI with its own protocol, so the analysis (experiments.glue_report) pools six tasks.

Each task is one grid (experiments.grid's planner and launcher, so runs resume and a finished run
made with other settings stops everything before it starts) in RUNS/<task>/<model_tag>/<method>/
seed<k>/ (SNLI: the SNLI suite's own runs folder and layout, so its committed runs count). Cells
run seed-major (seed 1 of every task and method, then seed 2, ...), and right after a run
finishes, still in the same pass:

1. its AdvGLUE sets are scored on its final weights (experiments.advglue_eval; SNLI runs also get
   the SNLI suite's substitution scores), so the weights are not needed later;
2. its small files (config, metrics, summary, the grid's commands, the evaluations; never
   checkpoints) are copied to ``--results_runs`` (to commit: an interruption costs at most the
   run in progress);
3. its checkpoints are deleted (the grid wrote them; 300 runs x ~370 MB would not fit).

No epoch is chosen on dev: every run trains a fixed number of updates (experiments.glue_tasks.
schedule) and the final evaluation is the one reported.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from experiments.grid_types import FINISHED, Cell, GridError, GridSettings, ModelSetting, build_cells

DEFAULT_METHODS = "none,smart_mtdnn,smart,1-1,1-2,2-1,wordnet_0.5,r3f,1-1_random,neftune"
SMALL_FILES = ("run_config.json", "metrics.jsonl", "run_summary.json", "grid_commands.jsonl", "advglue_eval.json",
               "robust_eval.json")


@dataclass(frozen=True)
class GlueSettings:
    """The GLUE suite's settings; ``updates`` and ``seeds`` are the pilot's to choose (glue_cpu_plan.md)."""

    model: str = "packaged-minilm"
    batch_size: int = 16
    learning_rate: float = 1e-4  # as the SNLI suite: one short schedule at 2e-5 barely moves MiniLM
    warmup: float = 0.1
    max_seq_len: int = 128
    updates: int = 100
    max_train_examples: int | None = None  # cap on the training subset (default: updates x batch)
    seeds: tuple[int, ...] = (1, 2, 3, 4, 5)
    amp: str = "none"
    batching: str = "random"


@dataclass(frozen=True)
class TaskGrid:
    """One task's grid: its settings and cells."""

    task: str
    settings: GridSettings
    cells: tuple[Cell, ...]
    updates: int
    epochs: int
    subset: int


def glue_grid(*, task: str, runs_dir: Path, glue_dir: Path, chosen: GlueSettings, methods, train_size: int) -> TaskGrid:
    from experiments.glue_tasks import GLUE_TASK_DEF, schedule

    plan = schedule(updates=chosen.updates, batch_size=chosen.batch_size, train_size=train_size,
                    max_train_examples=chosen.max_train_examples)
    settings = GridSettings(
        runs_dir=Path(runs_dir) / task, data_dir=Path(glue_dir), train_datasets=f"{task}:train",
        test_datasets=f"{task}:dev", epochs=plan.epochs, learning_rate=chosen.learning_rate, warmup=chosen.warmup,
        max_seq_len=chosen.max_seq_len, max_train_examples=plan.max_train_examples, max_eval_examples=None,
        extra_train_args=("--task_def", str(GLUE_TASK_DEF), "--no_export", "--amp", chosen.amp,
                          "--batching", chosen.batching),
        keep_step_checkpoints=True,  # the suite prunes them itself once AdvGLUE has scored the final weights
        notes=(f"{task}: {plan.updates} updates = {plan.epochs} epoch(s) over the first {plan.max_train_examples} of "
               f"{plan.train_size} training examples; scored on the whole dev set with the final weights",),
    )
    cells = build_cells(models=(ModelSetting(chosen.model, chosen.batch_size),), methods=methods, seeds=chosen.seeds)
    return TaskGrid(task, settings, tuple(cells), plan.updates, plan.epochs, plan.max_train_examples)


def snli_grid(*, runs_dir: Path, snli_dir: Path, seeds: tuple[int, ...], methods, model: str) -> TaskGrid:
    from experiments.head_to_head import HeadToHeadSettings, grid_settings

    chosen = HeadToHeadSettings(seeds=seeds, model=model)
    settings = grid_settings(runs_dir=Path(runs_dir), data_dir=Path(snli_dir), chosen=chosen)
    cells = build_cells(models=(ModelSetting(chosen.model, chosen.batch_size),), methods=methods, seeds=seeds)
    updates = -(-chosen.max_train_examples // chosen.batch_size) * chosen.epochs
    return TaskGrid("snli", settings, tuple(cells), updates, chosen.epochs, chosen.max_train_examples)


def seed_major(grids: list[TaskGrid]) -> list[tuple[TaskGrid, Cell]]:
    """Every (task grid, cell), seed 1 of every task first: a stop leaves whole seeds behind."""
    seeds = []
    for grid in grids:
        seeds += [c.seed for c in grid.cells if c.seed not in seeds]
    return [(grid, cell) for seed in seeds for grid in grids for cell in grid.cells if cell.seed == seed]


def prune_checkpoints(*, run_dir: Path) -> None:
    """Delete a finished, evaluated run's checkpoints (step-*.pt/json and best.pt/json: the grid's train.py wrote them)."""
    from experiments.grid_launch import prune_step_checkpoints

    prune_step_checkpoints(run_dir=run_dir)
    folder = Path(run_dir) / "checkpoints"
    for name in ("best.pt", "best.json"):
        (folder / name).unlink(missing_ok=True)


def copy_small_files(*, run_dir: Path, runs_dir: Path, results_runs: Path) -> Path:
    """RUN's small files into RESULTS/<same relative path>, each written atomically."""
    from experiments.table_csv import write_text_atomic

    target = Path(results_runs) / Path(run_dir).relative_to(runs_dir)
    for name in SMALL_FILES:
        source = Path(run_dir) / name
        if source.is_file():
            write_text_atomic(target / name, source.read_text(encoding="utf-8"))
    return target


def after_run(*, grid: TaskGrid, cell: Cell, advglue_dir: Path | None, results_runs: Path | None,
              snli_chosen=None) -> None:
    """What follows a finished run: AdvGLUE (and SNLI's substitutions), the copy, the pruning.

    Weights are deleted only once every evaluation that needs them is done: without an AdvGLUE
    folder, an RTE/SST-2/SNLI run keeps them for a later ``--phases advglue``.
    """
    from experiments.advglue_eval import ADV_SETS, evaluate_run
    from experiments.grid_plan import is_finished

    run_dir = cell.run_dir(grid.settings.runs_dir)
    if not is_finished(run_dir=run_dir):
        return
    has_weights = (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").glob("step-*.pt"))
    if has_weights:
        if grid.task == "snli" and snli_chosen is not None:
            from experiments.head_to_head_robust import robust_phase

            robust_phase(cells=[cell], settings=grid.settings, chosen=snli_chosen)
        if grid.task in ADV_SETS and advglue_dir is not None:
            evaluate_run(run_dir=run_dir, advglue_dir=advglue_dir)
    if results_runs is not None:
        copy_small_files(run_dir=run_dir, runs_dir=grid.settings.runs_dir, results_runs=Path(results_runs) / grid.task)
    if has_weights and (advglue_dir is not None or grid.task not in ADV_SETS):
        prune_checkpoints(run_dir=run_dir)


def train_phase(*, grids: list[TaskGrid], advglue_dir: Path | None, results_runs: Path | None, echo: bool,
                snli_chosen=None) -> int:
    """Run every cell seed-major, each followed by after_run; 130 when interrupted, 1 when a run failed."""
    from experiments.grid_launch import run_grid
    from experiments.grid_plan import plan_grid

    for grid in grids:  # every conflict with existing runs, before anything runs
        plan_grid(cells=list(grid.cells), settings=grid.settings)
    for grid in grids:
        for note in grid.settings.notes:
            print(f"NOTE: {note}")
    failed = 0
    quiet_settings = {grid.task: replace(grid.settings, notes=()) for grid in grids}
    for grid, cell in seed_major(grids):
        settings = quiet_settings[grid.task]
        if plan_grid(cells=[cell], settings=settings)[0].status != FINISHED:
            report = run_grid(cells=[cell], settings=settings, echo=echo)
            if report.interrupted:
                return 130
            failed += len(report.failed)
        try:
            after_run(grid=grid, cell=cell, advglue_dir=advglue_dir, results_runs=results_runs,
                      snli_chosen=snli_chosen)
        except KeyboardInterrupt:  # each evaluation is written atomically: the next start scores the rest
            print(f"{grid.task} / {cell.label()}: interrupted while scoring; run the same command again to resume")
            return 130
    return 1 if failed else 0


def advglue_phase(*, grids: list[TaskGrid], advglue_dir: Path, results_runs: Path | None) -> int:
    """Score (and then prune) every finished run that still has its weights: after a train phase without AdvGLUE."""
    for grid, cell in seed_major(grids):
        after_run(grid=grid, cell=cell, advglue_dir=advglue_dir, results_runs=results_runs)
    return 0


def check_glue_dir(glue_dir: Path, tasks) -> None:
    from experiments.glue_tasks import TASKS

    missing = [TASKS[t].train_file for t in tasks if t != "snli" and not (Path(glue_dir) / TASKS[t].train_file).is_file()]
    if missing:
        raise GridError(f"--glue_dir {glue_dir}: no {', '.join(missing)}; expected GLUE as download_glue_data.py lays "
                        "it out (set $GLUE_DIR; python -m mt_dnn.glue_download)")
