"""What ``run_summary.json`` says about a finished run, computed from ``metrics.jsonl``.

Kept apart from the training loop because it is pure bookkeeping over the metrics records:
training time and passes per update (summed over all epoch records, so a resumed run counts
every epoch once), and the epoch with the best model-selection score: each task's first
metric on its pooled dev splits, averaged over tasks (``score``; older records: accuracy).
"""

from __future__ import annotations


def time_summary(records: list[dict]) -> dict:
    epochs = [r for r in records if r.get("kind") == "train_epoch"]
    updates = sum(r["updates"] for r in epochs)
    seconds = sum(r["seconds"] for r in epochs)
    return {
        "train_seconds": round(seconds, 3),
        "seconds_per_update": seconds / updates if updates else None,
        "forward_passes_per_update": epochs[-1]["forward_passes_per_update"] if epochs else None,
        "backward_passes_per_update": epochs[-1]["backward_passes_per_update"] if epochs else None,
    }


def best_epoch(records: list[dict]) -> int | None:
    pooled: dict[int, list[float]] = {}
    for r in records:
        if r.get("kind") == "eval_pooled" and r["role"] == "dev":
            pooled.setdefault(r["epoch"], []).append(r.get("score", r.get("accuracy")))
    if not pooled:
        return None
    return max(sorted(pooled), key=lambda e: sum(pooled[e]) / len(pooled[e]))


def selection_rule(tasks: dict) -> str:
    """How the best epoch is chosen, in words, for run_summary.json."""
    firsts = ", ".join(f"{name}: {task.metric}" for name, task in sorted(tasks.items()))
    if len(tasks) == 1:
        return f"the first metric of the task on its pooled dev splits ({firsts})"
    return (f"the mean over tasks of each task's first metric on its pooled dev splits ({firsts}), "
            "MT-DNN's GLUE-style average")
