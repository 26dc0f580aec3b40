"""The optimiser, as BERT fine-tuning sets it up, and the DDP setting the trainer passes.

Kept out of the training loop so that benchmarks and tests can build exactly the
optimiser a run uses (``mt_dnn.trainer`` re-exports :func:`build_optimizer`).
"""

from __future__ import annotations

import torch


def build_optimizer(model: torch.nn.Module, *, learning_rate: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases and normalisation weights (BERT's recipe)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 else decay).append(param)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=learning_rate,
    )


def no_forward_buffer_sync() -> dict:
    """DDP's keyword for "do not broadcast buffers every forward": renamed in recent torch."""
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters:
        return {"forward_sync_buffers": False}
    return {"broadcast_buffers": False}
