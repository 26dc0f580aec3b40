"""``--emit_slurm FILE``: a grid as one SLURM job array, one array task per run, each resumable.

The paper's grid is about 900 GPU-hours: on a cluster it is one ``sbatch`` job array rather
than one long process. Every grid script (table2/3/4, figure3, grid) takes::

    python -m experiments.table2 --emit_slurm table2.sbatch --slurm_time 12:00:00 --slurm_partition gpu
    sbatch table2.sbatch

and writes the script without training anything. Array task i runs cell i's ``train.py``
command, exactly the grid's own (:func:`experiments.grid_plan.train_arguments` and
``launcher``), with ``--resume`` once the run folder holds a run, so that:

- a task requeued after a preemption or a node failure (``#SBATCH --requeue``) continues
  from its last checkpoint; a finished run's task exits at once, so submitting the same
  script again finishes whatever is left;
- before the time limit SLURM signals the batch shell (``--signal=B:USR1@S``); the script
  passes SIGTERM on to train.py (or torchrun), which checkpoints at the next update and
  exits, and the script requeues its own task (``scontrol requeue``) to go on. A SIGTERM
  from ``scancel`` or a preemption is passed on the same way, without the requeue.

A finished run's step checkpoints are deleted as the grid deletes them (unless
``--keep_step_checkpoints``). ``bash FILE --print`` with ``SLURM_ARRAY_TASK_ID`` set prints
that task's command, one argument per line, and runs nothing. Before writing, the grid's
own planning runs, so a run folder made with other settings stops here as it would stop the grid.

No value becomes a command: every value written into the script (paths, model names,
train.py arguments, --slurm_* values) is refused, in one line naming its flag, when it
holds a control character (a newline would end a comment or an assignment and start a
command); in commands each value is quoted with ``shlex.quote``. Values of ``#SBATCH``
lines are not shell: SLURM's own parser splits them at spaces and expands ``%`` in file
names, so a value with a space, a quote, a backslash or (in the log path) a ``%`` is refused.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import re
import shlex
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from experiments.grid_plan import launcher, plan_grid, train_arguments
from experiments.grid_types import REPO_ROOT, Cell, GridError, GridSettings

# SLURM's --time formats: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S
_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d{1,2}))?(?::(\d{1,2}))?$")
LOG_FOLDER = "slurm"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SBATCH_SPLIT = re.compile(r"[\s'\"\\\\]")  # what SLURM's #SBATCH parser splits at or unquotes
# train.py's flag in a task command -> the grid's flag that gave its value
_SOURCE_FLAG = {"--output_dir": "--output", "--model": "--models", "--data_dir": "--data_dir",
                "--cache_dir": "--cache_dir", "--train_datasets": "--train_datasets"}


def check_script_value(value: str, *, flag: str) -> None:
    """A value for a script line: no control characters (a newline would start a command)."""
    found = _CONTROL.search(value)
    if found:
        raise GridError(f"{flag} {value!r}: holds the control character {found.group()!r}; a value written into the "
                        "sbatch script may not (it could end a line and run what follows)")


def check_sbatch_value(value: str, *, flag: str, log_path: bool = False) -> None:
    """A value of an #SBATCH line: also nothing SLURM's parser would split or expand."""
    check_script_value(value, flag=flag)
    found = _SBATCH_SPLIT.search(value) or (re.search("%", value) if log_path else None)
    if found:
        raise GridError(f"{flag} {value!r}: holds {found.group()!r}, which SLURM's #SBATCH parser would split or "
                        f"expand; choose a value without spaces, quotes, backslashes{' or %' if log_path else ''}")


def _comment(text: str) -> str:
    """Text for a comment line: control characters written as escapes, so the line cannot end early."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def check_task_command(command: tuple[str, ...]) -> None:
    for index, value in enumerate(command):
        previous = command[index - 1] if index else ""
        flag = _SOURCE_FLAG.get(previous, "--train_args" if index else "the launcher")
        check_script_value(value, flag=flag)


@dataclass(frozen=True)
class SlurmRequest:
    path: Path
    gpus_per_task: int
    time: str
    partition: str | None
    cpus_per_task: int
    mem: str | None
    signal_seconds: int
    max_parallel: int | None
    sbatch: tuple[str, ...]


def add_slurm_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("SLURM (--emit_slurm FILE writes an sbatch job-array script and exits)")
    group.add_argument("--emit_slurm", metavar="FILE", default=None,
                       help="write the grid as an sbatch job array (one task per run, resumable) and train nothing")
    group.add_argument("--slurm_gpus_per_task", type=int, default=None,
                       help="GPUs per array task (default: --gpus); more than 1 runs each run through torchrun; "
                            "0 for CPU-only nodes")
    group.add_argument("--slurm_time", default="24:00:00", help="time limit per task, SLURM's format (D-HH:MM:SS)")
    group.add_argument("--slurm_partition", default=None, help="the partition (default: the cluster's)")
    group.add_argument("--slurm_cpus_per_task", type=int, default=8, help="CPU cores per task")
    group.add_argument("--slurm_mem", default=None, help="memory per node, e.g. 64G (default: the cluster's)")
    group.add_argument("--slurm_signal_seconds", type=int, default=300,
                       help="signal the run this many seconds before the time limit, to checkpoint and requeue")
    group.add_argument("--slurm_max_parallel", type=int, default=None, help="at most this many tasks at once")
    group.add_argument("--slurm_sbatch", action="append", default=[], metavar="OPTION",
                       help="another #SBATCH line, e.g. --slurm_sbatch=--account=nlp (repeatable)")


def time_limit_seconds(text: str) -> int:
    match = _TIME.match(text.strip())
    if not match:
        raise GridError(f"--slurm_time {text}: expected SLURM's format, e.g. 90, 12:00:00 or 2-00:00:00")
    days, first, second, third = match.groups()
    if days is not None:  # D-H[:M[:S]]
        hours, minutes, seconds = int(first), int(second or 0), int(third or 0)
    elif third is not None:  # H:M:S
        hours, minutes, seconds = int(first), int(second), int(third)
    else:  # M or M:S
        hours, minutes, seconds = 0, int(first), int(second or 0)
    return ((int(days or 0) * 24 + hours) * 60 + minutes) * 60 + seconds


def slurm_request(args: argparse.Namespace, *, gpus: int) -> SlurmRequest | None:
    """The --slurm_* flags checked; None without --emit_slurm."""
    if not args.emit_slurm:
        return None
    gpus_per_task = gpus if args.slurm_gpus_per_task is None else args.slurm_gpus_per_task
    if gpus_per_task < 0:
        raise GridError(f"--slurm_gpus_per_task {gpus_per_task}: expected a whole number >= 0")
    if gpus > 1 and gpus_per_task != gpus:
        raise GridError(f"--slurm_gpus_per_task {gpus_per_task} with --gpus {gpus}: each run uses --gpus processes; "
                        "give one of the two")
    limit = time_limit_seconds(args.slurm_time)
    if not 0 < args.slurm_signal_seconds < limit:
        raise GridError(f"--slurm_signal_seconds {args.slurm_signal_seconds}: expected more than 0 and less than "
                        f"--slurm_time ({limit} s)")
    for flag in ("slurm_cpus_per_task", "slurm_max_parallel"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise GridError(f"--{flag} {value}: expected a whole number >= 1")
    for option in args.slurm_sbatch:
        if not option.startswith("-"):
            raise GridError(f"--slurm_sbatch {option!r}: expected one sbatch option, e.g. --account=nlp")
        check_script_value(option, flag="--slurm_sbatch")
    for flag in ("slurm_partition", "slurm_mem"):
        if getattr(args, flag) is not None:
            check_sbatch_value(getattr(args, flag), flag=f"--{flag}")
    path = Path(args.emit_slurm)
    if path.is_dir():
        raise GridError(f"--emit_slurm {path}: is a folder; expected the script's file name")
    return SlurmRequest(path=path, gpus_per_task=gpus_per_task, time=args.slurm_time.strip(),
                        partition=args.slurm_partition, cpus_per_task=args.slurm_cpus_per_task, mem=args.slurm_mem,
                        signal_seconds=args.slurm_signal_seconds, max_parallel=args.slurm_max_parallel,
                        sbatch=tuple(args.slurm_sbatch))


def task_commands(*, cells: list[Cell], settings: GridSettings) -> list[tuple[str, ...]]:
    """Each cell's train.py command as the grid builds it (without --resume/--overwrite)."""
    plan_grid(cells=cells, settings=settings)  # the grid's own checks of existing run folders
    return [tuple(launcher(gpus=settings.gpus) + train_arguments(cell=cell, settings=settings)) for cell in cells]


_BODY = r'''
set -uo pipefail
task="${SLURM_ARRAY_TASK_ID:?this is an sbatch job-array script: submit it with sbatch (or set SLURM_ARRAY_TASK_ID)}"
case "$task" in
%(cases)s
  *) echo "task $task: this array has tasks 0-%(last)d" >&2; exit 2 ;;
esac
# A folder that holds a run continues it (a finished run exits at once; one without a
# checkpoint starts afresh); an empty one starts it.
if [ -f "$run_dir/run_config.json" ]; then command+=(--resume); fi
if [ "${1:-}" = "--print" ]; then printf '%%s\n' "${command[@]}"; exit 0; fi

cd %(repo)s
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
echo "$(date -Is) task $task on $(hostname): ${command[*]}"
near_limit=0
# Near the time limit SLURM sends USR1 (--signal=B:USR1@...); scancel and preemption send TERM.
# Either way train.py gets SIGTERM, checkpoints at the next update and exits.
trap 'near_limit=1; kill -TERM "$child" 2>/dev/null' USR1
trap 'kill -TERM "$child" 2>/dev/null' TERM
"${command[@]}" &
child=$!
status=0
while true; do
  wait "$child"; status=$?
  kill -0 "$child" 2>/dev/null || break  # a trap interrupted wait: the run is still stopping
done
if grep -q '"finished": true' "$run_dir/run_summary.json" 2>/dev/null; then
%(prune)s  echo "$(date -Is) task $task: run finished"
  exit 0
fi
if [ "$near_limit" = 1 ] && [ -n "${SLURM_JOB_ID:-}" ]; then
  echo "$(date -Is) task $task: stopped before the time limit (exit $status); requeueing it to continue"
  scontrol requeue "$SLURM_JOB_ID"
fi
exit "$status"
'''


def render_script(*, request: SlurmRequest, settings: GridSettings, cells: list[Cell],
                  commands: list[tuple[str, ...]], job_name: str, invoked: str) -> str:
    """The sbatch script's text: header lines, then the task table, then the launcher."""
    logs = settings.runs_dir / LOG_FOLDER
    check_sbatch_value(str(settings.runs_dir), flag="--output", log_path=True)  # the log path is under it
    check_sbatch_value(job_name, flag="the script's name")
    for flag, value in (("--slurm_partition", request.partition), ("--slurm_mem", request.mem)):
        if value is not None:
            check_sbatch_value(value, flag=flag)
    check_sbatch_value(request.time, flag="--slurm_time")
    for option in request.sbatch:
        check_script_value(option, flag="--slurm_sbatch")
    check_script_value(str(REPO_ROOT), flag="the repository's folder")
    for command in commands:
        check_task_command(command)
    array = f"0-{len(cells) - 1}" + (f"%{request.max_parallel}" if request.max_parallel else "")
    lines = ["#!/bin/bash",
             f"# {len(cells)} training runs of {settings.runs_dir}, one per array task; written "
             f"{_dt.datetime.now().astimezone().isoformat(timespec='seconds')} by:",
             f"#   {_comment(invoked)}",
             "# Submit: sbatch THIS_FILE (again, to finish what is left). One task's command: "
             "SLURM_ARRAY_TASK_ID=i bash THIS_FILE --print",
             f"#SBATCH --job-name={job_name}", f"#SBATCH --array={array}", "#SBATCH --ntasks=1",
             f"#SBATCH --cpus-per-task={request.cpus_per_task}", f"#SBATCH --time={request.time}",
             "#SBATCH --requeue", f"#SBATCH --signal=B:USR1@{request.signal_seconds}",
             f"#SBATCH --output={logs}/%x_%A_%a.out", "#SBATCH --open-mode=append"]
    if request.gpus_per_task:
        lines.append(f"#SBATCH --gpus-per-task={request.gpus_per_task}")
    if request.partition:
        lines.append(f"#SBATCH --partition={request.partition}")
    if request.mem:
        lines.append(f"#SBATCH --mem={request.mem}")
    lines += [f"#SBATCH {option}" for option in request.sbatch]
    cases = []
    for index, (cell, command) in enumerate(zip(cells, commands)):
        cases.append(f"  {index}) # {_comment(cell.label())}\n"
                     f"    run_dir={shlex.quote(str(cell.run_dir(settings.runs_dir)))}\n"
                     f"    command=({shlex.join(command)}) ;;")
    prune = "" if settings.keep_step_checkpoints else \
        '  rm -f "$run_dir"/checkpoints/step-*.pt "$run_dir"/checkpoints/step-*.json  # best.pt stays\n'
    body = _BODY % {"cases": "\n".join(cases), "last": len(cells) - 1, "repo": shlex.quote(str(REPO_ROOT)),
                    "prune": prune}
    return "\n".join(lines) + "\n" + body


def write_slurm_script(*, request: SlurmRequest, settings: GridSettings, cells: list[Cell],
                       log=print) -> int:
    """Write the job-array script (atomically) and its log folder; 0. Trains nothing."""
    from experiments.table_csv import write_text_atomic

    if not cells:
        raise GridError("--emit_slurm: the grid has no runs")
    if request.gpus_per_task > 1:
        settings = replace(settings, gpus=request.gpus_per_task)
    commands = task_commands(cells=cells, settings=settings)
    script = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else "grid"
    text = render_script(request=request, settings=settings, cells=cells, commands=commands,
                         job_name=f"mtdnn-{script}", invoked=shlex.join([sys.executable, *sys.argv]))
    (settings.runs_dir / LOG_FOLDER).mkdir(parents=True, exist_ok=True)  # sbatch does not create it
    path = write_text_atomic(request.path, text)
    log(f"wrote {path}: {len(cells)} array tasks (0-{len(cells) - 1}); submit with: sbatch {path}")
    for note in settings.notes:
        log(f"NOTE: {note}")
    return 0
