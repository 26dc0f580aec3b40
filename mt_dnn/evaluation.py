"""Evaluation: accuracy per split, pooled accuracy per task and role, predictions.

"All" in the paper's tables is accuracy over every example of the listed rounds (a
size-weighted mean), not the mean of the rounds' accuracies; :func:`pooled_accuracy` is
that. Under ``torchrun`` every rank scores a disjoint share and the results are gathered.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from mt_dnn.batching import collate
from mt_dnn.distributed import DistInfo, gather_objects
from mt_dnn.features import TokenizedSplit


def pooled_accuracy(results: list[dict]) -> dict:
    """Accuracy over all examples of several splits: Σ correct / Σ examples."""
    examples = sum(r["examples"] for r in results)
    correct = sum(r["accuracy"] * r["examples"] for r in results)
    return {"accuracy": correct / examples if examples else float("nan"), "examples": examples}


@torch.no_grad()
def predict_split(
    *, model, data: TokenizedSplit, task, batch_size: int, device: torch.device, pad_token_id: int,
    dist_info: DistInfo = DistInfo(), autocast=contextlib.nullcontext, show_progress: bool = True,
) -> dict:
    """Probabilities for every example of ``data`` (in file order) and, when labelled, loss and accuracy."""
    was_training = model.training
    model.eval()
    started = time.perf_counter()
    # Sorting by length makes dynamic padding nearly free; results are put back in file order.
    order = np.argsort(data.lengths(), kind="stable")
    mine = order[dist_info.rank :: dist_info.world_size]
    chunks = [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]
    rows, probs = [], []
    bar = tqdm(chunks, desc=f"eval {task.name}:{data.split}", leave=False,
               disable=not (show_progress and dist_info.is_main))
    for indices in bar:
        batch = {k: v.to(device) for k, v in collate(data, indices, pad_token_id=pad_token_id).items()}
        with autocast():
            logits = model(task=task.name, input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           token_type_ids=batch["token_type_ids"])
        probs.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
        rows.append(indices)
    local = (np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64),
             np.concatenate(probs) if probs else np.zeros((0, task.n_class), dtype=np.float32))
    gathered = gather_objects(dist_info, local)
    all_rows = np.concatenate([g[0] for g in gathered])
    all_probs = np.concatenate([g[1] for g in gathered])
    probabilities = np.zeros((len(data), task.n_class), dtype=np.float32)
    probabilities[all_rows] = all_probs
    model.train(was_training)

    result = {"probabilities": probabilities, "predictions": probabilities.argmax(axis=1),
              "examples": len(data), "wall_time_s": time.perf_counter() - started}
    labelled = data.labels >= 0
    if labelled.all():
        labels = torch.from_numpy(data.labels)
        logp = torch.from_numpy(np.log(np.clip(probabilities, 1e-12, 1.0)))
        result["loss"] = float(torch.nn.functional.nll_loss(logp, labels))
        result["accuracy"] = float((result["predictions"] == data.labels).mean())
    return result


def prediction_records(*, data: TokenizedSplit, task, result: dict) -> list[dict]:
    records = []
    for i in range(len(data)):
        record = {
            "uid": str(data.uids[i]),
            "prediction": task.labels[int(result["predictions"][i])],
            "probabilities": {label: round(float(p), 6) for label, p in zip(task.labels, result["probabilities"][i])},
        }
        if data.labels[i] >= 0:
            record["gold"] = task.labels[int(data.labels[i])]
        records.append(record)
    return records

