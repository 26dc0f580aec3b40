"""The command line every paper script shares: the grid's flags, resolved against a preset.

One job: turn --preset/--models/--seeds/--data_dir/... (each falling back to its environment
variable, then the preset) into a :class:`GridRequest`, checking the data folder before
anything runs; then run the request's cells (:func:`execute`) and collect their runs for
the tables (:func:`grid_runs`).
"""

from __future__ import annotations

import argparse
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from experiments.grid_launch import run_grid
from experiments.grid_types import (
    DEFAULT_ANLI_DIR, PRESETS, ROUNDS, Cell, GridError, GridSettings, ModelSetting, Preset,
)
from experiments.run_loading import Run, load_runs, model_tag
from experiments.slurm import SlurmRequest, add_slurm_arguments, slurm_request, write_slurm_script

class GivenOnce(argparse.Action):
    """A flag that may be given once: with the last of two silently winning, a grid reads data or writes runs
    where the user did not mean it to."""

    def __call__(self, parser, namespace, values, option_string=None):
        given = f"_{self.dest}_given"
        if getattr(namespace, given, False):
            raise argparse.ArgumentError(self, f"given twice ({getattr(namespace, self.dest)} and {values}); give one")
        setattr(namespace, given, True)
        setattr(namespace, self.dest, values)


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
    group.add_argument("--data_dir", action=GivenOnce, default=_env("ANLI_DIR"),
                       help=f"ANLI v1.0 folder with R1-R3 ($ANLI_DIR; default {DEFAULT_ANLI_DIR})")
    group.add_argument("--seeds", default=_env("REPRO_SEEDS"), help="e.g. 1-6 or 1,2,3 ($REPRO_SEEDS; paper 1-6)")
    group.add_argument("--output", action=GivenOnce, default=_env("REPRO_RUNS"),
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
    add_slurm_arguments(parser)


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
    slurm: SlurmRequest | None = None  # --emit_slurm: write the job array instead of training


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
    slurm = slurm_request(args, gpus=gpus)
    return GridRequest(preset=preset, models=models, seeds=seeds, settings=settings,
                       dry_run=args.dry_run or slurm is not None,  # the scripts then stop after execute()
                       no_train=args.no_train, echo=not args.quiet, slurm=slurm)


def grid_runs(*, runs_dir: Path, cells: list[Cell]) -> list[Run]:
    """experiments.run_loading's Run records of the cells' run folders (finished or not), nothing else."""
    if not Path(runs_dir).is_dir():
        return []
    wanted = {(cell.model.tag, cell.method.folder, cell.seed) for cell in cells}
    try:
        runs = load_runs(runs_dir=runs_dir)
    except ValueError as exc:
        raise GridError(str(exc)) from None
    return [run for run in runs if (run.model, run.method, run.seed) in wanted]


def execute(*, request: GridRequest, cells: list[Cell]) -> int:
    """Run (or dry-run) the cells; 0 when nothing failed. Training is skipped with --no_train."""
    if request.no_train:
        return 0
    if request.slurm is not None:
        return write_slurm_script(request=request.slurm, settings=request.settings, cells=cells)
    report = run_grid(cells=cells, settings=request.settings, dry_run=request.dry_run, echo=request.echo)
    if report.interrupted:
        return 130
    return 1 if report.failed else 0
