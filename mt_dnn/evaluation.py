"""Evaluation: each task's metrics per split, pooled per task and role, predictions.

"All" in the paper's tables is accuracy over every example of the listed rounds (a
size-weighted mean), not the mean of the rounds' accuracies; :func:`pooled_accuracy` is
that, and :func:`pooled_metrics` computes every metric of the task over the pooled examples
(for accuracy the same figure). A regression head's single output is the predicted score;
a classification head's outputs go through a softmax. Under ``torchrun`` every rank scores
a disjoint share and the results are gathered.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from mt_dnn.batching import collate
from mt_dnn.distributed import DistInfo, gather_objects
from mt_dnn.features import TokenizedSplit, labelled_mask
from mt_dnn.metrics import compute_metrics


def pooled_metrics(*, task, results: list[dict]) -> dict:
    """Every metric of ``task`` over the examples of several labelled splits, pooled."""
    gold = np.concatenate([r["gold"] for r in results])
    predictions = np.concatenate([r["predictions"] for r in results])
    probabilities = None if task.is_regression else np.concatenate([r["probabilities"] for r in results])
    return {"metrics": compute_metrics(names=task.metrics, gold=gold, predictions=predictions,
                                       probabilities=probabilities), "examples": len(gold)}


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
    """Probabilities (classification) or scores (regression) for every example of ``data`` (in file
    order) and, when every example is labelled, the loss, the task's metrics and ``accuracy``
    (classification)."""
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
        if task.is_regression:
            probs.append(logits.float().cpu().numpy())  # [B, 1]: the score itself
        else:
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

    result = {"examples": len(data), "wall_time_s": time.perf_counter() - started}
    if task.is_regression:
        result["scores"] = result["predictions"] = probabilities[:, 0]
    else:
        result["probabilities"], result["predictions"] = probabilities, probabilities.argmax(axis=1)
    if len(data) and labelled_mask(data.labels).all():
        result["gold"] = data.labels
        if task.is_regression:
            result["loss"] = float(np.mean((result["scores"].astype(np.float64) - data.labels) ** 2))
        else:
            labels = torch.from_numpy(data.labels)
            logp = torch.from_numpy(np.log(np.clip(probabilities, 1e-12, 1.0)))
            result["loss"] = float(torch.nn.functional.nll_loss(logp, labels))
            result["accuracy"] = float((result["predictions"] == data.labels).mean())
        result["metrics"] = compute_metrics(names=task.metrics, gold=data.labels, predictions=result["predictions"],
                                            probabilities=result.get("probabilities"))
    return result


def prediction_records(*, data: TokenizedSplit, task, result: dict) -> list[dict]:
    """One record per example: the predicted label and probabilities, or for regression the score."""
    records = []
    labelled = labelled_mask(data.labels)
    for i in range(len(data)):
        if task.is_regression:
            record = {"uid": str(data.uids[i]), "score": round(float(result["scores"][i]), 6)}
            if labelled[i]:
                record["gold"] = round(float(data.labels[i]), 6)  # stored as float32: 2.4 -> 2.4000000953
        else:
            record = {
                "uid": str(data.uids[i]),
                "prediction": task.labels[int(result["predictions"][i])],
                "probabilities": {label: round(float(p), 6)
                                  for label, p in zip(task.labels, result["probabilities"][i])},
            }
            if labelled[i]:
                record["gold"] = task.labels[int(data.labels[i])]
        records.append(record)
    return records

