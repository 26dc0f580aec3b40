"""Test-only hooks for ``train.py`` runs, installed from outside the library.

Run as a script, it is ``train.py`` with the hooks named by environment variables installed
first (``python tests/train_hooks.py ARGS``, also under ``torch.distributed.run``):

- ``TEST_PAUSE_AT_STEP=N`` and ``TEST_PAUSE_MARKER=PATH``: the N-th training step of this
  process (call of the step function) writes PATH and then sleeps, so that a test kills the
  process inside a step it knows, with no timing window.
- ``TEST_PAUSE_AT_CHECKPOINT_WRITE=N`` (and the marker): the N-th checkpoint write pauses,
  its temporary file complete and not yet renamed (where ``mt_dnn.checkpoint``'s own crash-test
  pause sits), instead of every write for a fixed time.
- ``TEST_NOISE_PER_EXAMPLE=1``: SMART's initial noise is drawn from each example's own token
  ids (:func:`per_example_noise`), so a batch split over ranks draws what the whole batch
  draws on one process, and a DDP comparison can include the adversarial term.

Tests that train in their own process call :func:`install_per_example_noise` directly.
"""

from __future__ import annotations

import os
import runpy
import sys
import time
import zlib
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
PAUSE_SECONDS = 600.0  # the test kills the process long before


def per_example_noise(*, input_ids: torch.Tensor, attention_mask: torch.Tensor, like: torch.Tensor,
                      sigma: float) -> torch.Tensor:
    """N(0, σ²) noise whose rows depend only on their example's real token ids (right padding)."""
    noise = torch.zeros_like(like)
    for row, (ids, mask) in enumerate(zip(input_ids.tolist(), attention_mask.tolist())):
        length = int(sum(mask))
        generator = torch.Generator().manual_seed(zlib.crc32(str(ids[:length]).encode()))
        noise[row, :length] = (torch.randn(length, like.shape[-1], generator=generator, dtype=torch.float64)
                               * sigma).to(like.dtype)
    return noise


def install_per_example_noise(patch=None):
    """Make SMART (both variants) draw :func:`per_example_noise`; with ``patch`` (pytest's monkeypatch) undone after."""
    from noise_training.providers.smart import SmartPerturbation
    from noise_training.providers.smart_mtdnn import MtdnnSmartPerturbation

    for cls in (SmartPerturbation, MtdnnSmartPerturbation):
        original = cls.perturb

        def perturb(self, ctx, _original=original):
            self._noise_rows = (ctx.input_ids, ctx.attention_mask)
            return _original(self, ctx)

        def initial_noise(self, like):
            input_ids, attention_mask = self._noise_rows
            return per_example_noise(input_ids=input_ids, attention_mask=attention_mask, like=like,
                                     sigma=self.noise_var)

        for name, value in (("perturb", perturb), ("initial_noise", initial_noise)):
            if patch is not None:
                patch.setattr(cls, name, value)
            else:
                setattr(cls, name, value)


def _pause(marker: str) -> None:
    Path(marker).write_text(str(os.getpid()))
    time.sleep(PAUSE_SECONDS)


def _install_pauses() -> None:
    marker = os.environ.get("TEST_PAUSE_MARKER", "")
    at_step = int(os.environ.get("TEST_PAUSE_AT_STEP", "0"))
    at_write = int(os.environ.get("TEST_PAUSE_AT_CHECKPOINT_WRITE", "0"))
    if at_step:
        import mt_dnn.trainer as trainer

        step, calls = trainer.run_training_step, [0]

        def paused_step(**kwargs):
            calls[0] += 1
            if calls[0] == at_step:
                _pause(marker)
            return step(**kwargs)

        trainer.run_training_step = paused_step
    if at_write:
        import mt_dnn.checkpoint as checkpoint

        writes = [0]

        def pause_on_one_write():
            writes[0] += 1
            if writes[0] == at_write:
                _pause(marker)

        checkpoint._pause_for_crash_tests = pause_on_one_write


if __name__ == "__main__":
    if os.environ.get("TEST_NOISE_PER_EXAMPLE"):
        install_per_example_noise()
    _install_pauses()
    sys.argv = [str(REPO_ROOT / "train.py"), *sys.argv[1:]]
    runpy.run_path(str(REPO_ROOT / "train.py"), run_name="__main__")
