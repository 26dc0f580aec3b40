"""Everything a training run needs before its first step, checked in the cheapest order.

Flags, task definitions, split files and the output folder are checked before the model
or data are loaded, and nothing is written to the output folder until every check has
passed (:func:`prepare_run` only reads; :func:`start_run_folder` writes, after the trainer
is built), so a bad input costs seconds and leaves nothing half-written.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from mt_dnn.datasets import (
    SplitRef, check_files_exist, load_splits, parse_dataset_list, resolve_data_dirs, training_tables,
)
from mt_dnn.distributed import DistInfo, barrier, init_distributed
from mt_dnn.errors import ConfigError
from mt_dnn.features import TokenizedSplit
from mt_dnn.model import MultiTaskModel, build_model
from mt_dnn.packaged_model import resolve_model_name
from mt_dnn.rng_state import seed_everything
from mt_dnn.run_files import atomic_write_json
from mt_dnn.task_def import TaskDef, load_task_defs
from noise_training.registry import build_provider

RUN_RESULT_FILES = ("run_config.json", "metrics.jsonl", "run_summary.json", "checkpoints", "predictions", "model")
# Flags that must not change between a run and its --resume: they decide the weights.
RESUME_INVARIANTS = (
    "model", "perturbation", "perturbation_options", "seed", "epochs", "batch_size", "learning_rate",
    "weight_decay", "warmup", "grad_clip", "grad_accumulation", "train_datasets", "max_seq_len",
    "max_train_examples", "batching", "amp", "world_size",
)


@dataclass
class RunSetup:
    config: object
    dist: DistInfo
    device: torch.device
    output_dir: Path
    cache_dir: Path
    tasks: dict[str, TaskDef]
    tokenizer: object
    model: MultiTaskModel
    provider: object
    train_data: dict[str, TokenizedSplit]
    eval_data: dict[SplitRef, TokenizedSplit]
    model_path: str
    record: dict  # what run_config.json holds


def default_cache_dir() -> Path:
    return Path(os.environ.get("MT_DNN_CACHE") or Path.home() / ".cache" / "mt-dnn-noise")


def pick_device(name: str, *, local_rank: int = 0) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name


def load_tokenizer(model_path: str):
    from transformers import AutoTokenizer

    if _looks_like_path(model_path) and not Path(model_path).expanduser().exists():
        raise ConfigError(f"--model {model_path}: no such folder")
    try:
        return AutoTokenizer.from_pretrained(model_path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--model {model_path}: cannot load its tokenizer ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_output_dir(*, output_dir: Path, resume: bool, overwrite: bool) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise ConfigError(f"--output_dir {output_dir}: exists and is not a folder")
    existing = [name for name in RUN_RESULT_FILES if (output_dir / name).exists()]
    if existing and not (resume or overwrite):
        raise ConfigError(
            f"--output_dir {output_dir}: holds another run's results ({', '.join(existing)}); "
            "pass --resume to continue it or --overwrite to replace it"
        )
    if resume and not (output_dir / "run_config.json").exists():
        raise ConfigError(f"--resume: {output_dir} holds no run to resume (no run_config.json)")


def clear_previous_run(output_dir: Path) -> None:
    for name in RUN_RESULT_FILES:
        path = output_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def library_versions() -> dict[str, str]:
    import numpy
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "numpy": numpy.__version__}


def resolved_config(config, *, setup_dist: DistInfo, device: torch.device, data_dirs, cache_dir, model_path) -> dict:
    record = {key: value for key, value in vars(config).items()}
    record.update({
        "model_path": model_path, "data_dirs": {k: str(v) for k, v in data_dirs.items()},
        "cache_dir": str(cache_dir), "world_size": setup_dist.world_size, "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "versions": library_versions(),
    })
    return record


def prepare_run(config) -> RunSetup:
    """Check every input and load tokenizer, data, model and provider; writes nothing."""
    dist = init_distributed(device_kind="cuda" if pick_device(config.device).type == "cuda" else "cpu")
    device = pick_device(config.device, local_rank=dist.local_rank)
    # Every rank draws its own dropout masks; the data order depends on --seed alone.
    seed_everything(config.seed + dist.rank)
    output_dir = Path(config.output_dir)
    cache_dir = Path(config.cache_dir) if config.cache_dir else default_cache_dir()

    tasks = load_task_defs(paths=config.task_def)
    train_refs = parse_dataset_list(value=config.train_datasets, tasks=tasks, roles=("train",), flag="--train_datasets")
    trained = sorted({ref.task for ref in train_refs})
    test_value = config.test_datasets or ",".join(trained)
    eval_refs = parse_dataset_list(value=test_value, tasks=tasks, roles=("dev", "test"), flag="--test_datasets")
    data_dirs = resolve_data_dirs(values=config.data_dir, tasks=tasks)
    check_files_exist(refs=train_refs + eval_refs, tasks=tasks, data_dirs=data_dirs)
    check_output_dir(output_dir=output_dir, resume=config.resume, overwrite=config.overwrite)

    model_path = resolve_model_name(config.model)
    tokenizer = load_tokenizer(model_path)
    record = resolved_config(config, setup_dist=dist, device=device, data_dirs=data_dirs,
                             cache_dir=cache_dir, model_path=model_path)
    if config.resume:
        _check_resume_compatible(output_dir=output_dir, record=record)
    common = dict(tasks=tasks, data_dirs=data_dirs, tokenizer=tokenizer, max_seq_len=config.max_seq_len,
                  cache_dir=cache_dir / "tokens")
    train_data = training_tables(load_splits(refs=train_refs, max_examples=config.max_train_examples, **common))
    eval_data = load_splits(refs=eval_refs, max_examples=config.max_eval_examples, **common)

    try:
        model = build_model(model_name=model_path, tasks={name: tasks[name] for name in trained}, tokenizer=tokenizer)
    except (OSError, ValueError) as exc:  # e.g. a folder with a tokenizer but no weights
        raise ConfigError(f"--model {model_path}: cannot load the model ({_first_line(exc)})") from None
    model.to(device)
    provider = build_provider(name=config.perturbation, options=config.perturbation_options, model=model,
                              tokenizer=tokenizer, cache_dir=cache_dir)
    return RunSetup(config=config, dist=dist, device=device, output_dir=output_dir, cache_dir=cache_dir,
                    tasks=tasks, tokenizer=tokenizer, model=model, provider=provider, train_data=train_data,
                    eval_data=eval_data, model_path=model_path, record=record)


def start_run_folder(setup: RunSetup) -> None:
    """Create or clear the output folder and write run_config.json and model/ (rank 0 only).

    Called once every check has passed on every rank, so a bad input leaves the folder as it was.
    """
    barrier(setup.dist)  # no rank may still be checking the folder while rank 0 changes it
    config, output_dir = setup.config, setup.output_dir
    if setup.dist.is_main:
        if config.overwrite:
            clear_previous_run(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        if not config.resume:
            # model/ is several files: build it beside its final name and rename it whole.
            staging = Path(tempfile.mkdtemp(dir=output_dir, prefix=".model.", suffix=".tmp"))
            try:
                setup.model.encoder.config.save_pretrained(staging)
                setup.tokenizer.save_pretrained(staging)
                os.replace(staging, output_dir / "model")
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            atomic_write_json(output_dir / "run_config.json", setup.record)
    barrier(setup.dist)


def _check_resume_compatible(*, output_dir: Path, record: dict) -> None:
    import json

    path = output_dir / "run_config.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--resume: {path}: unreadable ({exc}); resume needs the run's own run_config.json") from None
    if not isinstance(saved, dict):
        raise ConfigError(f"--resume: {path}: expected a JSON object; resume needs the run's own run_config.json")
    for key in RESUME_INVARIANTS:
        if key in saved and saved[key] != record.get(key):
            raise ConfigError(
                f"--resume: --{key} was {saved[key]!r} in {output_dir / 'run_config.json'} but is now "
                f"{record.get(key)!r}; resume with the same settings"
            )
