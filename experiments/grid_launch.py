"""Launching a grid's runs: one train.py process at a time, under a lock, stoppable by a signal.

One job: execute a plan from experiments.grid_plan. Each run folder gets a lock file, so
several copies of the same grid (one per GPU) share the work; each run's command and end go
to RUN/grid_commands.jsonl and its output to RUN/train.log; Ctrl-C or SIGTERM asks the run
to checkpoint and stops the grid; a finished run's step checkpoints are pruned (best.pt stays).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from experiments.grid_plan import is_finished, plan_grid, plan_run
from experiments.grid_types import COMMAND_LOG, FINISHED, LOCK_FILE, RESUME, TRAIN_LOG, Cell, GridSettings

_STEP_CHECKPOINT = re.compile(r"^step-\d+\.(pt|json)$")


@dataclass
class GridReport:
    planned: int = 0
    skipped_finished: list[Cell] = field(default_factory=list)
    started: list[Cell] = field(default_factory=list)  # every run launched (new, restarted or resumed)
    resumed: list[Cell] = field(default_factory=list)
    finished_now: list[Cell] = field(default_factory=list)
    stopped: list[Cell] = field(default_factory=list)  # exited normally before the end (train.py --stop_at_step)
    failed: list[tuple[Cell, str]] = field(default_factory=list)
    held_elsewhere: list[Cell] = field(default_factory=list)  # locked by another live grid process
    interrupted: bool = False

    def line(self) -> str:
        return (f"grid: {self.planned} runs: {len(self.skipped_finished)} already finished (skipped), "
                f"{len(self.started)} started ({len(self.resumed)} resumed), {len(self.finished_now)} finished now, "
                f"{len(self.stopped)} stopped early, {len(self.failed)} failed, "
                f"{len(self.held_elsewhere)} held by another grid process"
                + (", interrupted" if self.interrupted else ""))


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """RUN/.grid.lock, created exclusively; a lock left by a dead process on this host is taken over."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.held = False

    def _owner(self, **extra) -> dict:
        return {"host": socket.gethostname(), "pid": os.getpid(), "since": _now(), **extra}

    def _try_create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(self._owner(), handle)
            handle.flush()
            os.fsync(handle.fileno())
        return True

    def record_child(self, pid: int) -> None:
        """Name the training process too: if this grid dies, the lock stays live while its child trains."""
        tmp = self.path.with_name(f"{self.path.name}.tmp{os.getpid()}")
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(self._owner(child_pid=pid), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)

    def _stale(self) -> bool:
        try:
            owner = json.loads(self.path.read_text(encoding="utf-8"))
            host = owner["host"]
            pids = [int(owner["pid"])] + ([int(owner["child_pid"])] if "child_pid" in owner else [])
        except (OSError, ValueError, KeyError, TypeError):
            return True  # unreadable: a writer died before finishing it
        return host == socket.gethostname() and not any(_pid_alive(pid) for pid in pids)

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._try_create():
            self.held = True
        elif self._stale():
            self.path.unlink(missing_ok=True)
            self.held = self._try_create()
        return self.held

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def _append_json_line(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _launch(command: tuple[str, ...], *, log_path: Path, echo: bool, lock: RunLock | None = None) -> int:
    """Run one training process; its output goes to log_path (and to stdout when echo)."""
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    with open(log_path, "a", encoding="utf-8", buffering=1) as log:
        log.write(f"\n===== {_now()} {shlex.join(command)}\n")
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   errors="replace", env=env)
        if lock is not None:
            lock.record_child(process.pid)
        try:
            for line in process.stdout:
                log.write(line)
                if echo:
                    sys.stdout.write(line)
                    sys.stdout.flush()
        except KeyboardInterrupt:
            # SIGTERM, not a second SIGINT: a trainer that already got Ctrl-C from the terminal takes a
            # second SIGINT as "do not wait", while SIGTERM asks it, again, to checkpoint and stop.
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            for line in process.stdout:
                log.write(line)
            process.wait()
            raise
        return process.wait()


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """A SIGTERM to the grid (a scheduler's preemption) stops it as Ctrl-C does: the run checkpoints."""
    def handle(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handle)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def prune_step_checkpoints(*, run_dir: Path) -> int:
    """Delete a finished run's step checkpoints (only --resume needs them; best.pt stays). Returns bytes freed."""
    folder = Path(run_dir) / "checkpoints"
    freed = 0
    if not folder.is_dir():
        return 0
    for path in folder.iterdir():
        if _STEP_CHECKPOINT.match(path.name):
            freed += path.stat().st_size
            path.unlink(missing_ok=True)
    return freed


def run_grid(*, cells: list[Cell], settings: GridSettings, dry_run: bool = False, echo: bool = True,
             log: Callable[[str], None] = print) -> GridReport:
    """Plan every cell, then run the unfinished ones one after another; see the module docstring."""
    plans = plan_grid(cells=cells, settings=settings)
    report = GridReport(planned=len(plans))
    for note in settings.notes:
        log(f"NOTE: {note}")
    todo = [plan for plan in plans if plan.status != FINISHED]
    report.skipped_finished = [plan.cell for plan in plans if plan.status == FINISHED]
    log(f"grid: {len(plans)} runs in {settings.runs_dir}: {len(report.skipped_finished)} finished, "
        f"{len(todo)} to run" + (" (dry run: nothing is started)" if dry_run else ""))
    for index, plan in enumerate(todo, start=1):
        prefix = f"[{index}/{len(todo)}] {plan.cell.label()}"
        if dry_run:
            log(f"{prefix} ({plan.status}):\n  {shlex.join(plan.command)}")
            continue
        lock = RunLock(plan.run_dir)
        if not lock.acquire():
            log(f"{prefix}: held by another grid process ({lock.path}); skipped")
            report.held_elsewhere.append(plan.cell)
            continue
        try:
            # Planned again under the lock: another grid process may have finished or advanced it meanwhile.
            plan = plan_run(cell=plan.cell, settings=settings)
            if plan.status == FINISHED:
                report.skipped_finished.append(plan.cell)
                continue
            log(f"{prefix}: {plan.status}; output in {plan.run_dir / TRAIN_LOG}")
            started = time.perf_counter()
            _append_json_line(plan.run_dir / COMMAND_LOG, {"event": "start", "time": _now(), "status": plan.status,
                                                           "command": list(plan.command), "host": socket.gethostname()})
            report.started.append(plan.cell)
            if plan.status == RESUME:
                report.resumed.append(plan.cell)
            try:
                with _sigterm_as_interrupt():
                    returncode = _launch(plan.command, log_path=plan.run_dir / TRAIN_LOG, echo=echo, lock=lock)
            except KeyboardInterrupt:
                report.interrupted = True
                _append_json_line(plan.run_dir / COMMAND_LOG, {"event": "interrupted", "time": _now()})
                log(f"{prefix}: interrupted; run the same command again to resume")
                break
            seconds = time.perf_counter() - started
            done = is_finished(run_dir=plan.run_dir)
            _append_json_line(plan.run_dir / COMMAND_LOG, {"event": "end", "time": _now(), "returncode": returncode,
                                                           "finished": done, "seconds": round(seconds, 1)})
            if done:
                report.finished_now.append(plan.cell)
                if not settings.keep_step_checkpoints:
                    prune_step_checkpoints(run_dir=plan.run_dir)
                log(f"{prefix}: finished in {seconds:.0f} s")
            elif returncode == 0:
                report.stopped.append(plan.cell)
                log(f"{prefix}: stopped before the end (a checkpoint was kept); the next grid run resumes it")
            else:
                reason = f"exit status {returncode}, no finished run_summary.json; see {plan.run_dir / TRAIN_LOG}"
                report.failed.append((plan.cell, reason))
                log(f"{prefix}: FAILED ({reason})")
                if returncode in (130, -signal.SIGINT, -signal.SIGTERM):  # killed by a signal: stop the grid
                    report.interrupted = True
                    break
        finally:
            lock.release()
    log(report.line())
    return report
