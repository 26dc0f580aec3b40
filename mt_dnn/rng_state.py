"""Seeding and capturing every random number generator a run uses.

``--resume`` must continue with the same dropout masks and the same provider draws as an
uninterrupted run; that needs Python's, NumPy's and torch's (CPU and CUDA) generator
states in the checkpoint, stored as tensors and plain values so ``weights_only`` loading works.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng_state() -> dict:
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state((
        "MT19937", np_state["keys"].cpu().numpy().astype(np.uint32), np_state["pos"],
        np_state["has_gauss"], np_state["cached_gaussian"],
    ))
    # The states must be CPU byte tensors; a checkpoint read with map_location="cuda" (as
    # --resume on a GPU reads it) holds them on the GPU, which set_rng_state refuses.
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
