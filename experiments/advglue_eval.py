"""AdvGLUE accuracy of a trained run, as a reusable evaluation (not a one-off script).

A GLUE- or SNLI-trained run is scored on the AdvGLUE dev set (Wang et al., NeurIPS 2021) by
``predict.py``'s own code with the AdvGLUE task definitions (``--task_def task_defs/advglue.yml``;
SNLI-trained runs read AdvGLUE's MNLI lists through ``task_defs/advglue_snli.yml``, a transfer,
labelled so). Labels are mapped by name by those definitions (AdvGLUE's integers are not GLUE's
label order). The run's **final** weights are scored (``--checkpoint latest``): the head-to-head
selects nothing on dev. Results go to RUN/advglue_eval.json, one entry per AdvGLUE set, and a
set already there is not scored again, so the evaluation resumes.

    python -m experiments.advglue_eval --run_dir RUN [--advglue_dir DIR]   # default $ADVGLUE_DIR
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from experiments.grid_types import REPO_ROOT
from noise_training.atomic_files import atomic_write_bytes

ADVGLUE_FILE = "advglue_eval.json"
DEFAULT_ADVGLUE_DIR = "data/advglue"


@dataclass(frozen=True)
class AdvSet:
    """One AdvGLUE set a run trained on ``trained_task`` is scored on."""

    name: str  # the entry's key in advglue_eval.json and the report's column
    task_def: Path
    split: str
    label: str
    transfer: bool = False


# Which AdvGLUE sets each trained task is scored on (MRPC, CoLA and STS-B have none in AdvGLUE).
ADV_SETS: dict[str, tuple[AdvSet, ...]] = {
    "rte": (AdvSet("advglue_rte", REPO_ROOT / "task_defs" / "advglue.yml", "dev", "AdvGLUE-RTE"),),
    "sst2": (AdvSet("advglue_sst2", REPO_ROOT / "task_defs" / "advglue.yml", "dev", "AdvGLUE-SST-2"),),
    "snli": (AdvSet("advglue_mnli", REPO_ROOT / "task_defs" / "advglue_snli.yml", "matched_dev",
                    "AdvGLUE-MNLI (transfer from SNLI)", transfer=True),
             AdvSet("advglue_mnli_mm", REPO_ROOT / "task_defs" / "advglue_snli.yml", "mismatched_dev",
                    "AdvGLUE-MNLI-mm (transfer from SNLI)", transfer=True)),
}


def trained_task(run_dir: Path) -> str:
    config = json.loads((Path(run_dir) / "run_config.json").read_text(encoding="utf-8"))
    tasks = sorted({item.split(":")[0] for item in str(config.get("train_datasets", "")).split(",") if item})
    if len(tasks) != 1:
        raise ValueError(f"{run_dir}/run_config.json: trained {tasks or 'no task'}; expected one task")
    return tasks[0]


def read_advglue(run_dir: Path) -> dict:
    path = Path(run_dir) / ADVGLUE_FILE
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}  # written atomically: only a foreign file is unreadable; score again
    return value if isinstance(value, dict) else {}


def score_set(*, run_dir: Path, adv: AdvSet, advglue_dir: Path, checkpoint: str = "latest") -> dict:
    """predict.py on one AdvGLUE set; its summary (examples, accuracy, metrics)."""
    from mt_dnn.cli_predict import predict

    args = argparse.Namespace(run_dir=str(run_dir), checkpoint=checkpoint, task=None, split=adv.split, input=None,
                              data_dir=[str(advglue_dir)], task_def=[str(adv.task_def)],
                              output=str(Path(run_dir) / "predictions" / f"{adv.name}.jsonl"), batch_size=64,
                              device="cpu", max_examples=None, substitute=None, substitution_rate=None,
                              substitution_seed=0, debug=False)
    return predict(args)


def evaluate_run(*, run_dir: Path, advglue_dir: Path, checkpoint: str = "latest", log=print) -> dict:
    """Score the run on every AdvGLUE set of its task not yet in RUN/advglue_eval.json; the file's content."""
    run_dir = Path(run_dir)
    task = trained_task(run_dir)
    results = read_advglue(run_dir)
    for adv in ADV_SETS.get(task, ()):
        if adv.name in results:
            continue
        summary = score_set(run_dir=run_dir, adv=adv, advglue_dir=advglue_dir, checkpoint=checkpoint)
        results[adv.name] = {"accuracy": summary["accuracy"], "examples": summary["examples"], "label": adv.label,
                             "transfer": adv.transfer, "checkpoint": checkpoint, "split": adv.split,
                             "task_def": adv.task_def.name}
        atomic_write_bytes(run_dir / ADVGLUE_FILE, (json.dumps(results, indent=1, sort_keys=True) + "\n").encode())
        log(f"advglue: {run_dir} {adv.label}: accuracy {summary['accuracy']:.4f} ({summary['examples']} examples)")
    return results


def main(argv: list[str] | None = None) -> int:
    from mt_dnn.errors import UserError

    parser = argparse.ArgumentParser(prog="python -m experiments.advglue_eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run_dir", required=True, help="a finished run folder trained on rte, sst2 or snli")
    parser.add_argument("--advglue_dir", default=os.environ.get("ADVGLUE_DIR") or DEFAULT_ADVGLUE_DIR,
                        help="folder holding AdvGLUE's dev.json (default $ADVGLUE_DIR, else data/advglue)")
    parser.add_argument("--checkpoint", default="latest", help="'latest' (the final weights), 'best' or a path")
    args = parser.parse_args(argv)
    run_dir, advglue_dir = Path(args.run_dir), Path(args.advglue_dir)
    try:
        if not (run_dir / "run_config.json").is_file():
            raise UserError(f"--run_dir {run_dir}: no run_config.json; expected a training run's folder")
        if not (advglue_dir / "dev.json").is_file():
            raise UserError(f"--advglue_dir {advglue_dir}: no dev.json; expected AdvGLUE's dev set "
                            "(set $ADVGLUE_DIR)")
        task = trained_task(run_dir)
        if task not in ADV_SETS:
            raise UserError(f"--run_dir {run_dir}: trained on {task}; AdvGLUE has sets for runs trained on "
                            f"{', '.join(sorted(ADV_SETS))}")
        results = evaluate_run(run_dir=run_dir, advglue_dir=advglue_dir, checkpoint=args.checkpoint)
    except (UserError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(results, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
