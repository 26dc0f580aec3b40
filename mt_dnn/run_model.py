"""A trained run's network rebuilt from its folder alone, as predict.py rebuilds it.

The exporter (and anything else that needs a run's weights outside training) must score
exactly what ``predict.py`` scores: the encoder config and tokenizer of ``RUN/model``, the
run's own copy of its task definitions, and the weights of the chosen checkpoint, checked
against its manifest. ``--checkpoint`` takes ``best``, ``latest`` or a checkpoint file, as
predict.py does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mt_dnn.checkpoint import CheckpointManager, read_checkpoint
from mt_dnn.errors import UserError
from mt_dnn.model import MultiTaskModel, build_model
from mt_dnn.model_files import load_model_config
from mt_dnn.run_reader import read_run_config, run_task_defs
from mt_dnn.run_setup import first_line, load_tokenizer
from mt_dnn.task_def import TaskDef

CHECKPOINT_CHOICES = ("best", "latest")


@dataclass
class RunModel:
    model: MultiTaskModel  # in eval mode, on the CPU
    tokenizer: object
    tasks: dict[str, TaskDef]  # the trained tasks, in name order
    model_dir: Path  # RUN/model: the encoder's config and the tokenizer
    checkpoint: Path  # the file the weights came from
    config: dict  # run_config.json


def trained_task_names(config: dict) -> list[str]:
    return sorted({item.split(":")[0] for item in config["train_datasets"].split(",") if item})


def checkpoint_path(*, run_dir: Path, which: str) -> Path:
    """The checkpoint file ``which`` names: best.pt, the newest valid step checkpoint, or a path."""
    folder = run_dir / "checkpoints"
    if which == "best":
        path = folder / "best.pt"
        if not path.is_file():
            raise UserError(f"--checkpoint best: {path} does not exist (no dev split was evaluated?); try latest")
        return path
    if which == "latest":
        found = CheckpointManager(folder).load_latest()
        if found is None:
            raise UserError(f"--checkpoint latest: no checkpoint in {folder}")
        return found[0]
    path = Path(which)
    if not path.is_file():
        raise UserError(f"--checkpoint {which}: no such file (expected best, latest or a checkpoint file)")
    return path


def load_run_model(*, run_dir: Path, checkpoint: str = "best") -> RunModel:
    """The run's MultiTaskModel with the weights of ``checkpoint``; one-line UserErrors otherwise."""
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    all_tasks = run_task_defs(run_dir, config)
    trained = trained_task_names(config)
    unknown = [name for name in trained if name not in all_tasks]
    if unknown:
        raise UserError(f"--run_dir {run_dir}: the run trained task {unknown[0]}, which its task definitions lack")
    tasks = {name: all_tasks[name] for name in trained}
    model_dir = run_dir / "model"
    tokenizer = load_tokenizer(str(model_dir))
    load_model_config(str(model_dir), flag="--run_dir")
    try:
        model = build_model(model_name=str(model_dir), tasks=tasks, from_config_only=True)
    except (OSError, ValueError) as exc:
        raise UserError(f"--run_dir {run_dir}: cannot rebuild the model from {model_dir} ({first_line(exc)})") from None
    path = checkpoint_path(run_dir=run_dir, which=checkpoint)
    state = read_checkpoint(path)
    if not isinstance(state, dict) or "model" not in state:
        raise UserError(f"--checkpoint {checkpoint}: {path} is not a checkpoint of this program (no model weights)")
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, TypeError) as exc:
        raise UserError(f"--checkpoint {checkpoint}: {path} does not fit the model in {model_dir} "
                        f"({first_line(exc)})") from None
    model.eval()
    return RunModel(model=model, tokenizer=tokenizer, tasks=tasks, model_dir=model_dir, checkpoint=path,
                    config=config)
