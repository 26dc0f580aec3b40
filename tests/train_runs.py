"""Running train.py from tests: the tiny run's arguments, the bad-input check, training subprocesses.

Shared by the bad-input tests (test_bad_inputs.py, test_input_errors.py: a bad input gives exactly
one ``error:`` line, no traceback, the expected exit code, and leaves the output folder as it was)
and the tests that start a real ``train.py`` process and act on it mid-run (test_run_lock.py,
test_crash_resume.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mt_dnn.cli_train import main as train_main

REPO_ROOT = Path(__file__).resolve().parents[1]


def train_args(tiny: dict, out: Path, *extra: str, data: Path | None = None, model: Path | None = None) -> list[str]:
    """train.py's arguments for one epoch of the tiny run into ``out``, then ``extra``."""
    return ["--model", str(model or tiny["model"]), "--data_dir", str(data or tiny["data"]),
            "--cache_dir", str(tiny["cache"]), "--train_datasets", "anli:r1_train", "--test_datasets", "anli:r1_dev",
            "--epochs", "1", "--batch_size", "8", "--max_seq_len", "48", "--no_progress", "--output_dir", str(out),
            *extra]


def folder_snapshot(folder: Path, *, files_only: bool = False):
    """Every path under ``folder`` (only its files with ``files_only``: a folder's time changes when a
    temporary file comes and goes) with its size and modification time (None: no folder)."""
    if not folder.exists():
        return None
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))
            if p.is_file() or not files_only}


def fails_cleanly(argv, capsys, *, starts: str, code: int = 2, out: Path | None = None, main=train_main) -> str:
    """Run ``main(argv)``; check the exit code, the one error line's start, and the output folder."""
    out = out or Path(argv[argv.index("--output_dir") + 1])
    before = folder_snapshot(out)
    assert main(argv) == code
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert errors[0].startswith("error: " + starts), errors[0]
    assert folder_snapshot(out) == before, "the output folder changed"
    return errors[0]


def training_env(**extra: str) -> dict:
    """The environment of a training subprocess: offline, and torch's thread count as this process's
    (so that both do the same float operations)."""
    import torch

    return {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false", **extra}


def start_training(argv: list[str], *, log_path: Path, hooks: bool = False, env_extra: dict | None = None):
    """``train.py argv`` (``tests/train_hooks.py`` with ``hooks``) in a subprocess, output to ``log_path``."""
    script = REPO_ROOT / ("tests/train_hooks.py" if hooks else "train.py")
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, str(script), *argv], cwd=REPO_ROOT, env=training_env(**(env_extra or {})),
                                stdout=log, stderr=subprocess.STDOUT)


def wait_for(process, condition, *, what: str, timeout: float = 900.0) -> None:
    """Poll ``condition`` until it holds; fail if ``process`` exits first or ``timeout`` passes (then kill it).

    The limit is generous for a loaded machine: the processes waited on pause until they are killed."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the training process exited (code {process.returncode}) before {what}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)
