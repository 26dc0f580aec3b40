"""What ``run_summary.json`` says about a finished run, computed from ``metrics.jsonl``.

Kept apart from the training loop because it is pure bookkeeping over the metrics records:
training time and passes per update (summed over all epoch records, so a resumed run counts
every epoch once), and the epoch with the best pooled dev accuracy.
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
            pooled.setdefault(r["epoch"], []).append(r["accuracy"])
    if not pooled:
        return None
    return max(sorted(pooled), key=lambda e: sum(pooled[e]) / len(pooled[e]))
