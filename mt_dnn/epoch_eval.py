"""The evaluation after every epoch: each --test_datasets split, then each task's pooled metrics.

Split out of the training loop because it only reads the model: it scores every evaluated
split (over all ranks), appends ``eval`` and ``eval_pooled`` records to ``metrics.jsonl``
(rank 0), writes per-example predictions, and returns the score that picks ``best.pt``:
each task's first metric on its pooled dev splits (MCC for CoLA, Pearson for STS-B, ...),
averaged over tasks for a multi-task run (MT-DNN's GLUE-style average).
"""

from __future__ import annotations

import logging

from mt_dnn.evaluation import pooled_accuracy, pooled_metrics, predict_split, prediction_records
from mt_dnn.run_files import MetricsLog, atomic_write_jsonl

logger = logging.getLogger(__name__)


def evaluate_epoch(*, setup, module, autocast, pad_id: int, metrics: MetricsLog, epoch: int,
                   global_step: int) -> float | None:
    """Evaluate and log; the model-selection score, None when no dev split was evaluated.

    The score is the mean over tasks of each task's first metric on its pooled dev splits.

    ``epoch`` counts from 1, as the records do.
    """
    config, is_main = setup.config, setup.dist.is_main
    results: dict = {}
    for ref, data in setup.eval_data.items():
        task = setup.tasks[ref.task]
        result = predict_split(model=module, data=data, task=task, batch_size=config.eval_batch_size,
                               device=setup.device, pad_token_id=pad_id, dist_info=setup.dist,
                               autocast=autocast, show_progress=not config.no_progress)
        results[ref] = result
        if not is_main:
            continue
        role = task.splits[ref.split].role
        metrics.append({"kind": "eval", "epoch": epoch, "global_step": global_step, "task": ref.task,
                        "split": ref.split, "role": role, "examples": result["examples"],
                        "accuracy": result.get("accuracy"), "loss": result.get("loss"),
                        "metrics": result.get("metrics"), "wall_time_s": round(result["wall_time_s"], 3)})
        shown = ", ".join(f"{name} {value:.4f}" for name, value in (result.get("metrics") or {}).items())
        logger.info("epoch %d %s: %s (%d examples)", epoch, ref, shown or "no labels", result["examples"])
        if config.save_predictions == "all":
            atomic_write_jsonl(setup.output_dir / "predictions" / f"epoch{epoch}_{ref.task}_{ref.split}.jsonl",
                               prediction_records(data=data, task=task, result=result))
    dev_scores = []
    for task_name in sorted({ref.task for ref in results}):
        task = setup.tasks[task_name]
        for role in ("dev", "test"):
            refs = [ref for ref in results if ref.task == task_name and task.splits[ref.split].role == role
                    and "metrics" in results[ref]]
            if not refs:
                continue
            pooled = pooled_metrics(task=task, results=[results[ref] for ref in refs])
            score = pooled["metrics"][task.metric]
            if role == "dev":
                dev_scores.append(score)
            record = {"kind": "eval_pooled", "epoch": epoch, "global_step": global_step, "task": task_name,
                      "role": role, "splits": [ref.split for ref in refs], "metric": task.metric, "score": score,
                      "metrics": pooled["metrics"], "examples": pooled["examples"]}
            if not task.is_regression:  # the size-weighted accuracy the ANLI tables read
                record["accuracy"] = pooled_accuracy([results[ref] for ref in refs])["accuracy"]
            if is_main:
                metrics.append(record)
    return sum(dev_scores) / len(dev_scores) if dev_scores else None
