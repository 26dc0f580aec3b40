"""The tasks of the GLUE head-to-head: where each is read, how long it trains, and its figure.

One job: the vocabulary shared by the suite (experiments.glue_suite), the pilot
(experiments.glue_pilot) and the analysis (experiments.glue_report). A :class:`TaskSpec` names the
task definition, the training and scored splits, and how the task's figure is made from the
metrics of its final evaluation (docs/results/glue_cpu_plan.md: accuracy for RTE, SST-2 and SNLI;
(F1 + accuracy)/2 for MRPC; MCC for CoLA; (Pearson + Spearman)/2 for STS-B; all x100).

Training length is a fixed number of updates per run, the same for every task and method:
:func:`schedule` turns ``--updates`` (and an optional cap on the training subset) into each
task's epochs and subset, so that a small training set (RTE: 2,490 pairs) is seen several times
rather than giving fewer updates. SNLI keeps its own CPU protocol (experiments.head_to_head).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from statistics import mean

from experiments.grid_types import REPO_ROOT

GLUE_TASK_DEF = REPO_ROOT / "task_defs" / "glue.yml"
GLUE_TASKS = ("rte", "mrpc", "cola", "stsb", "sst2")
ALL_TASKS = GLUE_TASKS + ("snli",)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    label: str
    figure_name: str  # what the figure is, in words
    components: tuple[str, ...]  # the metrics (as metrics.jsonl names them) averaged into the figure
    shown: tuple[str, ...]  # every metric shown beside it
    train_file: str  # relative to the task's data folder (GLUE_DIR): to count the training set

    def figure(self, metrics: dict) -> float:
        """The task's figure in points from an eval record's metrics (fractions)."""
        return 100.0 * mean(float(metrics[name]) for name in self.components)


TASKS: dict[str, TaskSpec] = {
    "rte": TaskSpec("rte", "RTE", "accuracy", ("accuracy",), ("accuracy",), "RTE/train.tsv"),
    "mrpc": TaskSpec("mrpc", "MRPC", "(F1 + accuracy)/2", ("f1", "accuracy"), ("f1", "accuracy"), "MRPC/train.tsv"),
    "cola": TaskSpec("cola", "CoLA", "MCC x100", ("mcc",), ("mcc", "accuracy"), "CoLA/train.tsv"),
    "stsb": TaskSpec("stsb", "STS-B", "(Pearson + Spearman)/2 x100", ("pearson", "spearman"),
                     ("pearson", "spearman"), "STS-B/train.tsv"),
    "sst2": TaskSpec("sst2", "SST-2", "accuracy", ("accuracy",), ("accuracy",), "SST-2/train.tsv"),
    "snli": TaskSpec("snli", "SNLI", "accuracy", ("accuracy",), ("accuracy",), "snli_dev.jsonl"),
}


def parse_tasks(text: str, *, allowed: tuple[str, ...] = ALL_TASKS) -> tuple[str, ...]:
    from experiments.grid_types import GridError

    names = []
    for part in (p.strip().lower().replace("-", "") for p in text.split(",")):
        if not part:
            continue
        if part not in allowed:
            raise GridError(f"--tasks {text}: unknown task {part!r} (one of {', '.join(allowed)})")
        if part not in names:
            names.append(part)
    if not names:
        raise GridError(f"--tasks {text!r}: expected at least one task")
    return tuple(names)


@dataclass(frozen=True)
class TaskSchedule:
    """One task's training length: epochs over a fixed subset of the training set."""

    epochs: int
    max_train_examples: int
    updates: int
    train_size: int


def schedule(*, updates: int, batch_size: int, train_size: int, max_train_examples: int | None = None) -> TaskSchedule:
    """Epochs and subset giving (at least, and with a divisor of ``updates`` exactly) ``updates`` updates.

    The subset is the first ``min(cap, train_size)`` examples (cap: ``max_train_examples``, default
    updates x batch, i.e. each example once where the set is large enough); epochs = ceil(updates x
    batch / pool); the subset is trimmed to ceil(updates / epochs) batches, so every epoch has the
    same number of full batches.
    """
    pool = min(max_train_examples or updates * batch_size, train_size)
    epochs = max(1, math.ceil(updates * batch_size / pool))
    subset = min(pool, math.ceil(updates / epochs) * batch_size)
    return TaskSchedule(epochs=epochs, max_train_examples=subset, updates=epochs * math.ceil(subset / batch_size),
                        train_size=train_size)


def train_size(*, task: str, data_dir: Path) -> int:
    """Examples in the task's training split, read as training reads them."""
    from mt_dnn.data import read_examples
    from mt_dnn.task_def import load_task_defs

    definition = load_task_defs(paths=[GLUE_TASK_DEF])[task]
    return len(read_examples(path=Path(data_dir) / definition.splits["train"].path, task=definition))


def final_evaluation(run_dir: Path, *, role: str) -> dict | None:
    """The last eval_pooled record of ``role`` (the final weights' score), its metrics filled for old runs."""
    path = Path(run_dir) / "metrics.jsonl"
    last = None
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break  # a line cut by a crash ends what can be trusted
        if record.get("kind") == "eval_pooled" and record.get("role") == role:
            last = record
    if last is not None and not last.get("metrics"):
        last = {**last, "metrics": {"accuracy": last["accuracy"]}}  # runs from before the task kinds
    return last
