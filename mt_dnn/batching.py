"""Multi-task batch order (MT-DNN's mixing) and collation with dynamic padding.

Each epoch every task's training examples are shuffled and cut into batches, then the
batches of all tasks are mixed in one shuffled order; every batch holds one task only and
goes through that task's head. The order is a pure function of (seed, epoch), which is
what lets ``--resume`` continue mid-epoch exactly, and what lets every distributed rank
take its own share of the same order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mt_dnn.features import TokenizedSplit

BATCHING_MODES = ("random", "length_grouped")
# Length grouping sorts examples by length inside windows of this many batches: large enough
# to cut padding, small enough that a batch still mixes examples from the whole epoch.
_LENGTH_GROUP_WINDOW = 50


@dataclass(frozen=True)
class PlannedBatch:
    task: str
    indices: np.ndarray  # rows of the task's training data, the whole (global) batch


def concat_splits(splits: list[TokenizedSplit], *, task: str) -> TokenizedSplit:
    """One task's training splits as one table (MT-DNN trains on their union)."""
    if len(splits) == 1:
        return splits[0]
    offsets = [np.zeros(1, dtype=np.int64)]
    total = 0
    for split in splits:
        offsets.append(split.offsets[1:] + total)
        total += int(split.offsets[-1])
    return TokenizedSplit(
        task=task, split="+".join(s.split for s in splits),
        input_ids=np.concatenate([s.input_ids for s in splits]),
        token_type_ids=np.concatenate([s.token_type_ids for s in splits]),
        offsets=np.concatenate(offsets), labels=np.concatenate([s.labels for s in splits]),
        uids=np.concatenate([s.uids for s in splits]),
    )


def _task_batches(data: TokenizedSplit, *, batch_size: int, rng: np.random.Generator, mode: str) -> list[np.ndarray]:
    order = rng.permutation(len(data))
    if mode == "length_grouped":
        lengths = data.lengths()
        window = batch_size * _LENGTH_GROUP_WINDOW
        order = np.concatenate([
            chunk[np.argsort(lengths[chunk], kind="stable")]
            for chunk in np.array_split(order, max(1, -(-len(order) // window)))
        ])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def plan_epoch(
    *, train_data: dict[str, TokenizedSplit], batch_size: int, seed: int, epoch: int,
    mode: str = "random", min_batch_size: int = 1,
) -> list[PlannedBatch]:
    """The epoch's batches, all tasks mixed, identical on every rank for the same seed and epoch."""
    rng = np.random.default_rng([seed, epoch])
    planned: list[PlannedBatch] = []
    for task in sorted(train_data):
        for indices in _task_batches(train_data[task], batch_size=batch_size, rng=rng, mode=mode):
            if len(indices) >= min_batch_size:
                planned.append(PlannedBatch(task=task, indices=indices))
    order = rng.permutation(len(planned))
    return [planned[i] for i in order]


def shard_indices(indices: np.ndarray, *, rank: int, world_size: int) -> np.ndarray:
    """This rank's disjoint share of a global batch."""
    return indices[rank::world_size]


def collate(data: TokenizedSplit, indices: np.ndarray, *, pad_token_id: int) -> dict[str, torch.Tensor]:
    """Pad the selected examples to the longest of them (dynamic padding)."""
    starts, ends = data.offsets[indices], data.offsets[indices + 1]
    width = int((ends - starts).max())
    input_ids = np.full((len(indices), width), pad_token_id, dtype=np.int64)
    token_type_ids = np.zeros((len(indices), width), dtype=np.int64)
    attention_mask = np.zeros((len(indices), width), dtype=np.int64)
    for row, (start, end) in enumerate(zip(starts, ends)):
        length = end - start
        input_ids[row, :length] = data.input_ids[start:end]
        token_type_ids[row, :length] = data.token_type_ids[start:end]
        attention_mask[row, :length] = 1
    return {
        "input_ids": torch.from_numpy(input_ids),
        "token_type_ids": torch.from_numpy(token_type_ids),
        "attention_mask": torch.from_numpy(attention_mask),
        # class indices for cross-entropy, float32 scores for a regression head
        "labels": torch.from_numpy(data.labels[indices].astype(np.float32 if data.labels.dtype.kind == "f"
                                                                else np.int64)),
    }
