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
import contextlib
import datetime as _dt
import json
import math
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
from typing import Callable, Iterable

from experiments.summarize import model_tag, parse_method

REPO_ROOT = Path(__file__).resolve().parents[1]
TRAIN_SCRIPT = REPO_ROOT / "train.py"
DEFAULT_ANLI_DIR = "data/anli_v1.0"
ROUNDS = ("R1", "R2", "R3")
# Every dev and test split, named, so a run's evaluation does not depend on train.py's default.
EVAL_SPLITS = ",".join(f"anli:r{i}_{role}" for role in ("dev", "test") for i in (1, 2, 3))

# Run statuses, as names.
FINISHED = "finished"  # run_summary.json says finished: nothing to do
RESUME = "resume"  # unfinished, has a step checkpoint: continue it
RESTART = "restart"  # unfinished, no checkpoint to continue from: start afresh in the same folder
NEW = "new"  # no run yet

COMMAND_LOG = "grid_commands.jsonl"
TRAIN_LOG = "train.log"
LOCK_FILE = ".grid.lock"
_STEP_CHECKPOINT = re.compile(r"^step-\d+\.(pt|json)$")

# Settings that decide a run's numbers; a finished run made with other values is not reused.
# (RESUME_INVARIANTS of mt_dnn.run_setup, plus what is evaluated; the model is compared by tag.)
COMPARED_SETTINGS = (
    "model", "perturbation", "perturbation_options", "seed", "epochs", "batch_size", "learning_rate",
    "weight_decay", "warmup", "grad_clip", "grad_accumulation", "train_datasets", "max_seq_len",
    "max_train_examples", "batching", "amp", "test_datasets", "max_eval_examples",
)


class GridError(Exception):
    """A grid that cannot run as asked; the message is one line naming the flag or file."""


# ---------------------------------------------------------------- what a grid is made of


@dataclass(frozen=True)
class ModelSetting:
    """A --model value and the batch size the paper used with it."""

    name: str
    batch_size: int

    @property
    def tag(self) -> str:
        return model_tag(model=self.name)


@dataclass(frozen=True)
class Method:
    """A method folder: the --perturbation name and the options that differ from its defaults."""

    perturbation: str
    options: tuple[tuple[str, str], ...] = ()  # (option, value as written in the folder name)

    @property
    def folder(self) -> str:
        if not self.options:
            return self.perturbation
        return self.perturbation + "@" + ",".join(f"{key}={value}" for key, value in self.options)

    def flags(self) -> list[str]:
        out = ["--perturbation", self.perturbation]
        for key, value in self.options:
            out += [f"--{key}", value]
        return out


@dataclass(frozen=True)
class Cell:
    model: ModelSetting
    method: Method
    seed: int

    def run_dir(self, runs_dir: Path) -> Path:
        return Path(runs_dir) / self.model.tag / self.method.folder / f"seed{self.seed}"

    def label(self) -> str:
        return f"{self.model.tag} / {self.method.folder} / seed {self.seed}"


@dataclass(frozen=True)
class Preset:
    name: str
    models: tuple[ModelSetting, ...]
    seeds: tuple[int, ...]
    epochs: int
    learning_rate: float
    warmup: float
    max_seq_len: int
    max_train_examples: int | None
    max_eval_examples: int | None
    save_every: int  # checkpoint every N updates, so an interrupted run loses at most N
    runs_dir: str
    # Train on r1_dev when the training files are absent (the offline release has dev/test only).
    dev_fallback: bool
    summary: str


PRESETS: dict[str, Preset] = {
    "paper": Preset(
        name="paper",
        models=(ModelSetting("bert-base-uncased", 32), ModelSetting("roberta-large", 16)),
        seeds=(1, 2, 3, 4, 5, 6), epochs=6, learning_rate=2e-5, warmup=0.1, max_seq_len=512,
        max_train_examples=None, max_eval_examples=None, save_every=1000, runs_dir="runs/paper",
        dev_fallback=False,
        summary="the paper's setting: A1+A2+A3 train, lr 2e-5, 6 epochs, 10% warm-up, 6 seeds",
    ),
    "cpu": Preset(
        name="cpu",
        models=(ModelSetting("packaged-minilm", 16),),
        # A higher lr than the paper's: one short epoch at 2e-5 with warm-up barely moves the weights.
        seeds=(1,), epochs=1, learning_rate=5e-5, warmup=0.1, max_seq_len=128,
        max_train_examples=256, max_eval_examples=100, save_every=0, runs_dir="runs/cpu",
        dev_fallback=True,
        summary="pipeline check: packaged MiniLM, 256 training examples, 1 epoch, 1 seed, 100 eval examples per split",
    ),
}


# Options swept over powers of ten read best as 1e-3; shares (noise_size) as 0.3.
SCIENTIFIC_OPTIONS = frozenset({"adv_step_size", "adv_noise_var", "adv_epsilon"})


def format_setting(value: float, *, scientific: bool = False) -> str:
    """Folder-name text of a swept value, one spelling per number: '1e-3', '0.3', '1'."""
    if scientific and value != 0:
        mantissa, exponent = f"{value:e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exponent)}"
    return f"{value:g}"


def method(*, perturbation: str, **options: float | int | str) -> Method:
    """A Method; options equal to the provider's defaults are dropped, so the folder is shared."""
    from mt_dnn.errors import UserError
    from noise_training import registry

    try:
        spec = registry.get_spec(perturbation)
    except UserError as exc:
        raise GridError(str(exc)) from None
    defaults = {option.name: option.default for option in spec.options}
    kept = []
    for key, value in sorted(options.items()):
        if key not in defaults:
            raise GridError(f"method {perturbation}: it has no option {key!r} "
                            f"(it takes {', '.join(defaults) or 'none'})")
        if _same_value(value, defaults[key]):
            continue
        text = format_setting(value, scientific=key in SCIENTIFIC_OPTIONS) if isinstance(value, float) else str(value)
        kept.append((key, text))
    return Method(perturbation=spec.name, options=tuple(kept))


def method_from_folder(*, folder: str) -> Method:
    """'smart@adv_step_size=1e-3' -> Method('smart', (('adv_step_size', '1e-3'),))."""
    try:
        base, settings = parse_method(method=folder)
    except ValueError as exc:
        raise GridError(f"--methods: {exc}") from None
    values = {key: _number_or_text(value) for key, value in settings.items()}
    return method(perturbation=base, **values)


def _number_or_text(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def _same_value(a: object, b: object) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    except (TypeError, ValueError):
        return str(a) == str(b)


def build_cells(*, models: Iterable[ModelSetting], methods: Iterable[Method], seeds: Iterable[int]) -> list[Cell]:
    """Seed-major order: after each seed the whole table has one more run per cell."""
    cells, seen = [], set()
    for seed in seeds:
        for model in models:
            for item in methods:
                key = (model.tag, item.folder, seed)
                if key not in seen:
                    seen.add(key)
                    cells.append(Cell(model=model, method=item, seed=seed))
    return cells


# ---------------------------------------------------------------- settings shared by all cells


@dataclass(frozen=True)
class GridSettings:
    runs_dir: Path
    data_dir: Path
    train_datasets: str
    epochs: int
    learning_rate: float
    warmup: float
    max_seq_len: int
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    test_datasets: str = EVAL_SPLITS
    save_every: int = 0
    gpus: int = 1
    cache_dir: Path | None = None
    extra_train_args: tuple[str, ...] = ()
    keep_step_checkpoints: bool = False
    notes: tuple[str, ...] = ()  # printed before the grid and the tables (e.g. "trained on dev")


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


# ---------------------------------------------------------------- planning


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


# ---------------------------------------------------------------- running


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


# ---------------------------------------------------------------- the command line the paper scripts share


def parse_seeds(text: str) -> tuple[int, ...]:
    """'1-6' or '1,3,5' or '1-3,7' -> (1, 2, ...); order kept, duplicates dropped."""
    seeds: list[int] = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        low, sep, high = part.partition("-")
        try:
            values = range(int(low), int(high) + 1) if sep else [int(part)]
        except ValueError:
            raise GridError(f"--seeds {text}: expected whole numbers like 1-6 or 1,2,3") from None
        if sep and int(high) < int(low):
            raise GridError(f"--seeds {text}: range {part} runs backwards")
        seeds += [seed for seed in values if seed not in seeds]
    if not seeds:
        raise GridError(f"--seeds {text!r}: expected at least one seed")
    return tuple(seeds)


def parse_models(text: str, *, default_batch: dict[str, int]) -> tuple[ModelSetting, ...]:
    """'bert-base-uncased:32,roberta-large' -> settings; a model without :BATCH takes the known batch size."""
    models = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        name, sep, batch = part.rpartition(":")
        if not sep or not batch.isdigit():
            name, batch = part, ""
        if batch:
            size = int(batch)
        elif model_tag(model=name) in default_batch:
            size = default_batch[model_tag(model=name)]
        else:
            raise GridError(f"--models {part}: no batch size known for this model; write it as {part}:BATCH")
        if size < 1:
            raise GridError(f"--models {part}: the batch size must be >= 1")
        models.append(ModelSetting(name, size))
    if not models:
        raise GridError(f"--models {text!r}: expected at least one model")
    tags = [m.tag for m in models]
    if len(set(tags)) != len(tags):
        raise GridError(f"--models {text}: two models share a folder tag ({', '.join(tags)})")
    return tuple(models)


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value else None


def add_grid_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every paper script takes; each defaults to its environment variable, then the preset."""
    group = parser.add_argument_group("grid (flag, else environment variable, else the preset's value)")
    group.add_argument("--preset", choices=sorted(PRESETS), default=_env("REPRO_PRESET") or "paper",
                       help="; ".join(f"{p.name}: {p.summary}" for p in PRESETS.values()).replace("%", "%%")
                       + " ($REPRO_PRESET; default paper)")
    group.add_argument("--models", default=_env("REPRO_MODELS"),
                       help="comma-separated MODEL[:BATCH] ($REPRO_MODELS; paper: bert-base-uncased:32,roberta-large:16)")
    group.add_argument("--data_dir", default=_env("ANLI_DIR"),
                       help=f"ANLI v1.0 folder with R1-R3 ($ANLI_DIR; default {DEFAULT_ANLI_DIR})")
    group.add_argument("--seeds", default=_env("REPRO_SEEDS"), help="e.g. 1-6 or 1,2,3 ($REPRO_SEEDS; paper 1-6)")
    group.add_argument("--output", default=_env("REPRO_RUNS"),
                       help="the RUNS folder ($REPRO_RUNS; default runs/paper, cpu preset runs/cpu)")
    group.add_argument("--gpus", default=_env("REPRO_GPUS") or "1",
                       help="GPUs per run; more than 1 launches through torchrun ($REPRO_GPUS; default 1)")
    group.add_argument("--train_datasets", default=None,
                       help="train.py --train_datasets (default anli = A1+A2+A3 train; the cpu preset falls back "
                            "to anli:r1_dev when the training files are absent)")
    group.add_argument("--max_train_examples", type=int, default=None, help="override the preset's value")
    group.add_argument("--max_eval_examples", type=int, default=None, help="override the preset's value")
    group.add_argument("--max_seq_len", type=int, default=None, help="override the preset's value")
    group.add_argument("--cache_dir", default=None, help="train.py --cache_dir (default: train.py's)")
    group.add_argument("--train_args", default=_env("REPRO_TRAIN_ARGS") or "",
                       help="more train.py flags for every run, one string, e.g. '--amp bf16' ($REPRO_TRAIN_ARGS)")
    group.add_argument("--keep_step_checkpoints", action="store_true",
                       help="keep finished runs' step checkpoints (default: delete them, keep best.pt; "
                            "RoBERTa-large's are ~4 GB each)")
    group.add_argument("--dry_run", action="store_true", help="print the commands; run nothing")
    group.add_argument("--no_train", action="store_true", help="run nothing; only print tables / draw plots")
    group.add_argument("--quiet", action="store_true", help="do not echo training output (it is in RUN/train.log)")


@dataclass(frozen=True)
class GridRequest:
    """What the command line asked for, resolved against the preset."""

    preset: Preset
    models: tuple[ModelSetting, ...]
    seeds: tuple[int, ...]
    settings: GridSettings
    dry_run: bool
    no_train: bool
    echo: bool


def _has_train_files(data_dir: Path) -> bool:
    return all((data_dir / r / "train.jsonl").is_file() for r in ROUNDS)


def resolve_request(args: argparse.Namespace) -> GridRequest:
    preset = PRESETS[args.preset]
    default_batch = {m.tag: m.batch_size for p in PRESETS.values() for m in p.models}
    models = parse_models(args.models, default_batch=default_batch) if args.models else preset.models
    seeds = parse_seeds(args.seeds) if args.seeds else preset.seeds
    try:
        gpus = int(args.gpus)
    except ValueError:
        gpus = 0
    if gpus < 1:
        raise GridError(f"--gpus {args.gpus} (or $REPRO_GPUS): expected a whole number >= 1")
    for flag in ("max_train_examples", "max_eval_examples", "max_seq_len"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise GridError(f"--{flag} {value}: expected a whole number >= 1")
    data_dir = Path(args.data_dir or DEFAULT_ANLI_DIR).expanduser().resolve()
    missing = [f"{r}/{s}.jsonl" for r in ROUNDS for s in ("dev", "test") if not (data_dir / r / f"{s}.jsonl").is_file()]
    notes = []
    # A dry run or a table print trains nothing: missing data is worth a note, not a stop.
    lenient = args.dry_run or args.no_train
    if missing and lenient:
        notes.append(f"{data_dir} lacks ANLI {', '.join(missing)}: a real run would stop here")
    elif missing:
        raise GridError(f"--data_dir {data_dir}: no ANLI {', '.join(missing)}; get ANLI v1.0 with: "
                        f"python -m mt_dnn.anli_download download-anli --data_dir {data_dir}")
    train_datasets = args.train_datasets or "anli"
    if args.train_datasets is None and not _has_train_files(data_dir):
        if preset.dev_fallback:
            train_datasets = "anli:r1_dev"
            notes.append(f"no ANLI training files in {data_dir}: the {preset.name} preset trains on the R1 DEV split "
                         "instead, so dev A1 is scored on training examples; the numbers show the pipeline "
                         "working, they are not results")
        elif lenient:
            notes.append(f"{data_dir} lacks the R1-R3 train.jsonl files: a real run would stop here")
        else:
            raise GridError(f"--data_dir {data_dir}: no R1-R3 train.jsonl (the paper trains on A1+A2+A3 train); get "
                            f"them with: python -m mt_dnn.anli_download download-anli --data_dir {data_dir}")
    max_train = args.max_train_examples or preset.max_train_examples
    max_eval = args.max_eval_examples or preset.max_eval_examples
    if preset.name == "cpu" or max_train or max_eval:
        notes.append(
            f"{preset.name} preset, {', '.join(m.tag for m in models)}: "
            + (f"the first {max_train} training examples" if max_train else "all training examples")
            + f", {preset.epochs} epoch(s), seed(s) {','.join(map(str, seeds))}"
            + (f", the first {max_eval} examples of each dev/test split" if max_eval else "")
            + ": a pipeline check, not comparable to the paper's numbers")
    try:
        extra = tuple(shlex.split(args.train_args))
    except ValueError as exc:
        raise GridError(f"--train_args {args.train_args!r}: {exc}") from None
    settings = GridSettings(
        runs_dir=Path(args.output or preset.runs_dir).expanduser().resolve(),
        data_dir=data_dir, train_datasets=train_datasets, epochs=preset.epochs,
        learning_rate=preset.learning_rate, warmup=preset.warmup,
        max_seq_len=args.max_seq_len or preset.max_seq_len,
        max_train_examples=max_train, max_eval_examples=max_eval,
        save_every=preset.save_every, gpus=gpus,
        cache_dir=Path(args.cache_dir).expanduser().resolve() if args.cache_dir else None,
        extra_train_args=extra, keep_step_checkpoints=args.keep_step_checkpoints, notes=tuple(notes),
    )
    return GridRequest(preset=preset, models=models, seeds=seeds, settings=settings, dry_run=args.dry_run,
                       no_train=args.no_train, echo=not args.quiet)


def write_text_atomic(path: Path, text: str) -> Path:
    """Write via a temporary file in the same folder, fsync, rename: never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


def grid_runs(*, runs_dir: Path, cells: list[Cell]) -> list:
    """experiments.summarize's Run records of the cells' run folders (finished or not), nothing else."""
    from experiments.summarize import load_runs

    if not Path(runs_dir).is_dir():
        return []
    wanted = {(cell.model.tag, cell.method.folder, cell.seed) for cell in cells}
    try:
        runs = load_runs(runs_dir=runs_dir)
    except ValueError as exc:
        raise GridError(str(exc)) from None
    return [run for run in runs if (run.model, run.method, run.seed) in wanted]


def parse_methods(text: str) -> list[Method]:
    """'none,smart@adv_step_size=1e-3,1-1' -> Methods; a folder's own settings may hold commas
    (smart@adv_k=2,adv_step_size=1e-3), so a comma starts a new method only before a name without '='."""
    folders = re.split(r",(?=[^,=@]+(?:@|,|$))", text)
    methods = [method_from_folder(folder=f.strip()) for f in folders if f.strip()]
    if not methods:
        raise GridError(f"--methods {text!r}: expected at least one method")
    return methods


def execute(*, request: GridRequest, cells: list[Cell]) -> int:
    """Run (or dry-run) the cells; 0 when nothing failed. Training is skipped with --no_train."""
    if request.no_train:
        return 0
    report = run_grid(cells=cells, settings=request.settings, dry_run=request.dry_run, echo=request.echo)
    if report.interrupted:
        return 130
    return 1 if report.failed else 0


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
