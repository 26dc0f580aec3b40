"""The generator states a checkpoint carries restore wherever the checkpoint was read to.

``--resume`` on a GPU reads the checkpoint with ``map_location="cuda"``, which puts the CPU and
CUDA generator states (byte tensors) on the GPU; ``torch.set_rng_state`` takes CPU tensors only.
Found on the first GPU run (every resumed run exited 1); the CUDA test runs where a GPU is.
"""

from __future__ import annotations

import io

import pytest
import torch

from mt_dnn.rng_state import capture_rng_state, restore_rng_state


def _round_trip(state: dict, *, map_location: str) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, map_location=map_location, weights_only=True)


def _draws() -> tuple:
    return torch.rand(3).tolist(), (torch.rand(3, device="cuda").tolist() if torch.cuda.is_available() else None)


@pytest.mark.parametrize("map_location", [
    "cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                        reason="no CUDA device on this machine"))])
def test_restored_generators_draw_what_they_drew_when_captured(map_location):
    torch.manual_seed(3)
    state = _round_trip(capture_rng_state(), map_location=map_location)
    expected = _draws()
    torch.manual_seed(99)
    restore_rng_state(state)
    assert _draws() == expected
