"""Everything a training run needs before its first step, checked in the cheapest order.

Flags, task definitions, split files, the model's config (``--max_seq_len`` against its
positions) and the output folder are checked before the model or data are loaded. Then
rank 0 takes the folder's lock (:mod:`mt_dnn.run_lock`), and only under it are the
folder's contents and, for ``--resume``, the run's identity (:mod:`mt_dnn.run_identity`)
checked. Nothing is written to the output folder until every check has passed
(:func:`prepare_run` only reads; :func:`mt_dnn.run_folder.start_run_folder` writes, after
the trainer is built), so a bad input costs seconds and leaves nothing half-written.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

from mt_dnn.datasets import (
    SplitRef, check_files_exist, load_splits, parse_dataset_list, resolve_data_dirs, training_tables,
)
from mt_dnn.distributed import DistInfo, init_distributed
from mt_dnn.errors import ConfigError
from mt_dnn.features import TokenizedSplit, tokenizer_fingerprint
from mt_dnn.json_input import read_json_object
from mt_dnn.model import MultiTaskModel, build_model
from mt_dnn.model_files import check_max_seq_len, load_model_config, model_identity
from mt_dnn.packaged_model import resolve_model_name
from mt_dnn.rng_state import seed_everything
from mt_dnn.run_folder import (
    acquire_lock, check_nothing_of_value_is_cleared, check_output_dir, check_output_path, copy_names, has_progress,
)
from mt_dnn.run_identity import build_identity, check_resume_compatible, version_change
from mt_dnn.run_lock import RunLock
from mt_dnn.task_def import TaskDef, load_task_defs
from noise_training.registry import build_provider
from safetensors import SafetensorError


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
    lock: RunLock | None  # held by rank 0 until the run ends
    continuing: bool  # --resume of a run with a checkpoint (else the folder is started afresh)
    version_change: dict | None = None  # --resume under other library versions: recorded in run_config.json


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


def check_model_path(model_path: str) -> None:
    if _looks_like_path(model_path) and not Path(model_path).expanduser().exists():
        raise ConfigError(f"--model {model_path}: no such folder")


def load_tokenizer(model_path: str):
    from transformers import AutoTokenizer

    check_model_path(model_path)
    try:
        return AutoTokenizer.from_pretrained(model_path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--model {model_path}: cannot load its tokenizer ({first_line(exc)})") from None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def library_versions() -> dict[str, str]:
    import numpy
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "numpy": numpy.__version__}


def resolved_config(config, *, setup_dist: DistInfo, device: torch.device, data_dirs, cache_dir, model_path) -> dict:
    """Every flag, with paths made absolute (predict.py reads them from any working directory)."""
    record = {key: value for key, value in vars(config).items()}
    task_defs = [str(Path(path).resolve()) for path in config.task_def]
    local_model = Path(model_path).expanduser()
    record.update({
        "task_def": task_defs, "task_def_copies": copy_names(task_defs),
        "output_dir": str(Path(config.output_dir).resolve()),
        "model_path": str(local_model.resolve()) if local_model.is_dir() else model_path,
        "data_dirs": {k: str(Path(v).resolve()) for k, v in data_dirs.items()},
        "cache_dir": str(Path(cache_dir).resolve()), "world_size": setup_dist.world_size, "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "versions": library_versions(),
    })
    return record


def prepare_run(config) -> RunSetup:
    """Check every input and load tokenizer, data, model and provider; writes nothing.

    On success rank 0 holds the output folder's lock (``setup.lock``); on failure it is released.
    """
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
    check_output_path(output_dir)
    model_path = resolve_model_name(config.model)
    check_model_path(model_path)
    model_config = load_model_config(model_path)  # first: the tokenizer reads config.json too
    tokenizer = load_tokenizer(model_path)
    check_max_seq_len(max_seq_len=config.max_seq_len, tokenizer=tokenizer, model_config=model_config,
                      model_path=model_path)

    lock = acquire_lock(output_dir, dist)  # before the folder's contents are looked at
    try:
        check_output_dir(output_dir=output_dir, resume=config.resume, overwrite=config.overwrite)
        continuing = config.resume and has_progress(output_dir)
        if not continuing:  # the folder's earlier results are cleared: none of them may be an input
            used = sorted({ref.task for ref in train_refs + eval_refs})
            inputs = [("--task_def", Path(path)) for path in config.task_def]
            inputs += [(f"--data_dir ({name})", data_dirs[name]) for name in used]
            inputs += [("--cache_dir", cache_dir)]
            if Path(model_path).expanduser().is_dir():
                inputs.append(("--model", Path(model_path).expanduser()))
            check_nothing_of_value_is_cleared(output_dir=output_dir, inputs=inputs)
        record = resolved_config(config, setup_dist=dist, device=device, data_dirs=data_dirs,
                                 cache_dir=cache_dir, model_path=model_path)
        identity = model_identity(model_path=model_path, tokenizer_fingerprint=tokenizer_fingerprint(tokenizer))
        record["identity"] = json.loads(json.dumps(build_identity(
            tasks=tasks, train_refs=train_refs, eval_refs=eval_refs, data_dirs=data_dirs, model=identity)))
        changed_versions = None
        if continuing:
            config_path = output_dir / "run_config.json"
            saved = read_json_object(config_path, what="the run's configuration")
            check_resume_compatible(saved=saved, record=record, config_path=config_path)
            changed_versions = version_change(saved=saved, record=record, config_path=config_path)
        try:
            model = build_model(model_name=model_path, tasks={name: tasks[name] for name in trained},
                                tokenizer=tokenizer)
        except (OSError, ValueError, SafetensorError) as exc:  # e.g. a folder with a tokenizer but no weights
            raise ConfigError(f"--model {model_path}: cannot load the model ({first_line(exc)})") from None
        model.to(device)
        common = dict(tasks=tasks, data_dirs=data_dirs, tokenizer=tokenizer, max_seq_len=config.max_seq_len,
                      cache_dir=cache_dir / "tokens")
        train_data = training_tables(load_splits(refs=train_refs, max_examples=config.max_train_examples, **common))
        eval_data = load_splits(refs=eval_refs, max_examples=config.max_eval_examples, **common)
        provider = build_provider(name=config.perturbation, options=config.perturbation_options, model=model,
                                  tokenizer=tokenizer, cache_dir=cache_dir)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return RunSetup(config=config, dist=dist, device=device, output_dir=output_dir, cache_dir=cache_dir,
                    tasks=tasks, tokenizer=tokenizer, model=model, provider=provider, train_data=train_data,
                    eval_data=eval_data, model_path=model_path, record=record, lock=lock, continuing=continuing,
                    version_change=changed_versions)
