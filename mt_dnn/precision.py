"""Mixed precision and matmul settings: bf16/fp16 autocast, fp16's gradient scaler, TF32.

Losses and the symmetric KL stay in float32 (see :mod:`mt_dnn.losses`); only the encoder's
matrix work runs in half precision.
"""

from __future__ import annotations

import contextlib
import functools

import torch

AMP_MODES = ("none", "bf16", "fp16")


def autocast_factory(*, amp: str, device: torch.device):
    """A zero-argument callable returning the autocast context for each forward pass."""
    if amp == "none":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return functools.partial(torch.autocast, device_type=device.type, dtype=dtype)


def grad_scaler(*, amp: str, device: torch.device):
    """fp16 needs loss scaling to keep small gradients representable; bf16 and fp32 do not."""
    if amp != "fp16":
        return None
    return torch.amp.GradScaler(device.type)


def enable_fast_matmul(device: torch.device) -> None:
    """TF32 tensor cores for float32 matmuls and convolutions on Ampere and newer GPUs (a ~10-bit mantissa).

    A no-op on the CPU. PyTorch 2.9 replaced the ``allow_tf32`` switches by ``fp32_precision``
    (and warns about the old ones), so the new setting is used where it exists.
    """
    if device.type != "cuda":
        return
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):
        matmul.fp32_precision = "tf32"
        torch.backends.cudnn.conv.fp32_precision = "tf32"
    else:
        matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
