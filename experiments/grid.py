"""Run a grid of training runs (models × methods × seeds) as train.py subprocesses, resumably.

The paper's tables and figures are means over 6 seeds of up to 10 methods and 2 models,
hundreds of GPU-hours; such a grid gets interrupted. This runner gives every cell its own
run folder, RUNS/<model_tag>/<method>/seed<k>/ (docs/run_format.md), and on every start

- skips cells whose run_summary.json says finished (after checking that the finished run was
  made with the settings asked for now; a mismatch stops the grid before anything runs),
- resumes unfinished cells that have a checkpoint (``--resume``), restarts those without one
  (``--overwrite``), starts the others,
- runs them one after another, each in a fresh process (``python train.py ...``, or
  ``python -m torch.distributed.run --nproc_per_node N train.py ...`` for N > 1 GPUs),
  appending the command to RUN/grid_commands.jsonl and its output to RUN/train.log.

A lock file per run folder lets several copies of the same grid share the work (one per GPU,
with CUDA_VISIBLE_DEVICES): a copy skips a run another live copy holds.

    python -m experiments.grid --preset cpu --methods none,smart,1-1 [--dry_run]

Presets: ``paper`` (BERT-base uncased batch 32 and RoBERTa-large batch 16, lr 2e-5, 6 epochs,
10% warm-up, seeds 1-6, trained on A1+A2+A3 train) and ``cpu`` (the packaged MiniLM, a few
hundred training examples, one seed, one epoch: the whole pipeline in minutes, not a result).
The paper scripts (table2.py, table3.py, table4.py, figure3.py) share this command line.
"""

from __future__ import annotations

import argparse
import sys

# The public names the paper scripts use as grid.<name>; each lives in the module of its job.
from experiments.grid_cli import (
    GridRequest, add_grid_arguments, execute, grid_runs, parse_models, parse_seeds, resolve_request,
)
from experiments.grid_launch import GridReport, RunLock, prune_step_checkpoints, run_grid
from experiments.grid_plan import COMPARED_SETTINGS, PlannedRun, intended_config, is_finished, plan_grid, plan_run
from experiments.grid_types import (
    COMMAND_LOG, DEFAULT_ANLI_DIR, EVAL_SPLITS, FINISHED, LOCK_FILE, NEW, PRESETS, RESTART, RESUME, ROUNDS,
    TRAIN_LOG, Cell, GridError, GridSettings, Method, ModelSetting, Preset, build_cells, format_setting, method,
    method_from_folder, parse_methods,
)
from experiments.table_csv import write_text_atomic

__all__ = [
    "COMMAND_LOG", "COMPARED_SETTINGS", "DEFAULT_ANLI_DIR", "EVAL_SPLITS", "FINISHED", "LOCK_FILE", "NEW", "PRESETS",
    "RESTART", "RESUME", "ROUNDS", "TRAIN_LOG", "Cell", "GridError", "GridReport", "GridRequest", "GridSettings",
    "Method", "ModelSetting", "PlannedRun", "Preset", "RunLock", "add_grid_arguments", "build_cells", "execute",
    "format_setting", "grid_runs", "intended_config", "is_finished", "main", "method", "method_from_folder",
    "parse_methods", "parse_models", "parse_seeds", "plan_grid", "plan_run", "prune_step_checkpoints",
    "resolve_request", "run_grid", "write_text_atomic",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.grid", description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="none,smart",
                        help="comma-separated method folders: a --perturbation name, optionally "
                             "@option=value[,...] (e.g. smart@adv_step_size=1e-3)")
    add_grid_arguments(parser)
    args = parser.parse_args(argv)
    try:
        request = resolve_request(args)
        methods = parse_methods(args.methods)
        cells = build_cells(models=request.models, methods=methods, seeds=request.seeds)
        return execute(request=request, cells=cells)
    except GridError as exc:
        print(f"grid: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
