"""The optimiser, as BERT fine-tuning sets it up, and the DDP setting the trainer passes.

Kept out of the training loop so that benchmarks and tests can build exactly the
optimiser a run uses (``mt_dnn.trainer`` re-exports :func:`build_optimizer`).
"""

from __future__ import annotations

import torch


def build_optimizer(model: torch.nn.Module, *, learning_rate: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases and normalisation weights (BERT's recipe).

    The fused AdamW kernel where torch has one for the parameters' device (CPU and CUDA): the
    same update as the per-tensor loop, in one pass over the parameters. With the loop, Hugging
    Face's Trainer (fused by default) took 1/1.39 of our fine-tuning step's time on the packaged
    MiniLM (benchmarks.bench_vs_tools, 2 CPU cores, batch 16). Elsewhere (or with an old
    torch) the per-tensor loop.
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    try:
        return torch.optim.AdamW(groups, lr=learning_rate, fused=True)
    except (RuntimeError, ValueError, TypeError):  # no fused kernel for these parameters' device or dtype
        return torch.optim.AdamW(groups, lr=learning_rate)


def no_forward_buffer_sync() -> dict:
    """DDP's keyword for "do not broadcast buffers every forward": renamed in recent torch."""
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters:
        return {"forward_sync_buffers": False}
    return {"broadcast_buffers": False}
