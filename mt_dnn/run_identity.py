"""What decides a run's weights, recorded in ``run_config.json`` and compared by ``--resume``.

A resume that silently reads another round's training file, an edited task definition or
another model produces weights that belong to no run. So a run records, under
``identity``: the SHA-256 of every training split file (with its absolute path), every
used task's definition as parsed (labels, fields, splits, ...: formatting and comments do
not count), and the model's identity (:func:`mt_dnn.model_files.model_identity`: resolved
folder, hashes of config and weights, tokenizer fingerprint). ``--resume`` refuses, in one
line naming the first difference, any change to those or to the flags in
:data:`RESUME_FLAGS`; a changed *evaluation* file only warns (it changes later metrics, not
the weights).

Comparing only what the saved file still holds would let an edited ``run_config.json`` (or
one written by another version of train.py) wave any change through: so a saved
configuration that lacks a flag of :data:`RESUME_FLAGS`, the identity, or the identity's
entry for the model, a trained task or a training split is refused, saying the folder was
written by another version or edited. The library versions (torch, transformers, ...) are
recorded too; a resume under other versions is one warning line, and the new versions are
appended to ``run_config.json`` (``resumed_with_versions``), since the rest of the weights
then come from other code.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from mt_dnn.datasets import SplitRef, split_path
from mt_dnn.errors import ConfigError
from mt_dnn.model_files import file_sha256
from mt_dnn.task_def import TaskDef

logger = logging.getLogger(__name__)

# Flags that must not change between a run and its --resume: they decide the weights. The
# model is compared by identity instead (its spelling on the command line does not matter).
RESUME_FLAGS = (
    "perturbation", "perturbation_options", "seed", "epochs", "batch_size", "learning_rate",
    "weight_decay", "warmup", "grad_clip", "grad_accumulation", "train_datasets", "max_seq_len",
    "max_train_examples", "batching", "amp", "world_size",
)


def task_identity(task: TaskDef) -> dict:
    body = dataclasses.asdict(task)
    body.pop("source", None)
    body["labels"], body["label_names"] = list(task.labels), list(task.label_names)
    # The task kinds' keys are recorded only when they differ from what a task was before they
    # existed, so that a run written before them keeps its identity (and its --resume).
    body.pop("metrics")
    body["metric"] = task.metric
    if len(task.metrics) > 1:
        body["metrics"] = list(task.metrics)
    for key, default in (("task_type", "classification"), ("quoting", "none"), ("label_map", None),
                         ("empty_text", "warn")):
        if body[key] == default:
            body.pop(key)
    for split in body["splits"].values():
        if split.get("key") is None:
            split.pop("key", None)
    return body


def split_files(*, refs: list[SplitRef], tasks: dict[str, TaskDef], data_dirs: dict[str, Path]) -> dict:
    files = {}
    for ref in refs:
        path = split_path(ref=ref, tasks=tasks, data_dirs=data_dirs).resolve()
        files[str(ref)] = {"path": str(path), "sha256": file_sha256(path)}
    return files


def build_identity(*, tasks: dict[str, TaskDef], train_refs: list[SplitRef], eval_refs: list[SplitRef],
                   data_dirs: dict[str, Path], model: dict) -> dict:
    used = sorted({ref.task for ref in train_refs + eval_refs})
    return {
        "model": model,
        "tasks": {name: task_identity(tasks[name]) for name in used},
        "train_files": split_files(refs=train_refs, tasks=tasks, data_dirs=data_dirs),
        "eval_files": split_files(refs=eval_refs, tasks=tasks, data_dirs=data_dirs),
    }


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _dict_difference(was: dict, now: dict) -> str | None:
    for key in sorted(set(was) | set(now)):
        if was.get(key) != now.get(key):
            return f"{key} was {_short(was.get(key))}, now {_short(now.get(key))}"
    return None


def _model_difference(was: dict, now: dict) -> str | None:
    if was.get("path") != now.get("path"):
        return f"the model folder was {was.get('path') or was.get('name')}, now {now.get('path') or now.get('name')}"
    for name in sorted(set(was.get("files", {})) | set(now.get("files", {}))):
        a, b = was.get("files", {}).get(name), now.get("files", {}).get(name)
        if a != b:
            if a is None or b is None:
                return f"the model's {name} {'appeared' if a is None else 'is gone'}"
            return f"the model's {name} changed (sha256 {a[:12]}... then, {b[:12]}... now)"
    if was.get("tokenizer") != now.get("tokenizer"):
        return "the model's tokenizer changed"
    return None


def missing_entry(*, saved: dict, record: dict) -> str | None:
    """The first entry that decides the weights and that the saved configuration lacks, as a name."""
    for key in RESUME_FLAGS:
        if key not in saved:
            return key
    was = saved.get("identity")
    if not isinstance(was, dict):
        return "identity"
    for key in ("model", "tasks", "train_files"):
        if not isinstance(was.get(key), dict):
            return f"identity.{key}"
    for key in ("files", "tokenizer"):
        if key not in was["model"]:
            return f"identity.model.{key}"
    trained = sorted({ref.split(":")[0] for ref in record["identity"]["train_files"]})
    for name in trained:
        if name not in was["tasks"]:
            return f"identity.tasks.{name}"
    for ref in record["identity"]["train_files"]:
        if ref not in was["train_files"]:
            return f"identity.train_files.{ref}"
    return None


def first_difference(*, saved: dict, record: dict) -> str | None:
    """The first setting that decides the weights and differs, as a phrase; None when all agree."""
    for key in RESUME_FLAGS:
        if saved[key] != record.get(key):
            return f"--{key} was {saved[key]!r} but is now {record.get(key)!r}"
    was, now = saved["identity"], record["identity"]
    problem = _model_difference(was.get("model", {}), now["model"])
    if problem:
        return f"{problem} (--model {record.get('model')})"
    for name, task in now["tasks"].items():
        if name in was.get("tasks", {}):
            problem = _dict_difference(was["tasks"][name], task)
            if problem:
                return f"the definition of task {name} changed: {problem}"
    for ref, entry in now["train_files"].items():
        old = was.get("train_files", {}).get(ref)
        if old is not None and old.get("sha256") != entry["sha256"]:
            moved = "" if old.get("path") == entry["path"] else f" (was {old.get('path')})"
            return f"training split {ref}: {entry['path']} differs from the file the run started with{moved}"
    for ref, entry in now["eval_files"].items():
        old = was.get("eval_files", {}).get(ref)
        if old is not None and old.get("sha256") != entry["sha256"]:
            logger.warning("--resume: evaluated split %s (%s) differs from the file the run started with; metrics "
                           "before and after this resume are not comparable", ref, entry["path"])
    return None


def check_resume_compatible(*, saved: dict, record: dict, config_path: Path) -> None:
    missing = missing_entry(saved=saved, record=record)
    if missing is not None:
        raise ConfigError(f"--resume: {config_path} has no {missing!r}, which decides the weights: the folder was "
                          "written by another version of train.py or edited, so this run cannot be checked; "
                          "start a new run")
    problem = first_difference(saved=saved, record=record)
    if problem:
        raise ConfigError(f"--resume: {problem} (recorded in {config_path}); resume with what the run started with, "
                          "or start a new run")


COMPARED_VERSIONS = ("torch", "transformers")


def version_change(*, saved: dict, record: dict, config_path: Path) -> dict | None:
    """The libraries whose versions differ from the run's (one warning line), to record; None when none do."""
    was = saved.get("versions") if isinstance(saved.get("versions"), dict) else {}
    for entry in saved.get("resumed_with_versions") or []:  # the latest resume's versions are the ones to compare
        if isinstance(entry, dict) and isinstance(entry.get("versions"), dict):
            was = entry["versions"]
    now = record.get("versions") or {}
    changed = [name for name in COMPARED_VERSIONS if was.get(name) != now.get(name)]
    if not changed:
        return None
    logger.warning("--resume: %s; the rest of this run is trained with other library code (recorded in %s)",
                   ", ".join(f"{name} was {was.get(name) or 'not recorded'}, now {now.get(name)}" for name in changed),
                   config_path)
    return {"versions": now, "changed": changed}
