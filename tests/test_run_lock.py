"""One writer per run folder: a real ``train.py`` holds RUN/.train.lock while a second one, started
against the same folder with or without --resume/--overwrite, must stop at once with one line naming
the holder, leaving the holder's files untouched; a lock left by a killed process is taken over.

The holder is kept alive in the middle of its run by the crash tests' pause inside a checkpoint write
(mt_dnn.checkpoint.PAUSE_ENV), so there is no timing guesswork: the second writer starts while the
first is provably between two of its own writes.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from mt_dnn.checkpoint import PAUSE_ENV
from mt_dnn.cli_train import main as train_main
from mt_dnn.run_lock import LOCK_NAME
from tiny_models import tiny_anli_setup, write_anli_like
from train_runs import folder_snapshot, start_training, train_args, training_env, wait_for


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_anli_setup(tmp_path_factory.mktemp("lock"), train=32)


def _start(tiny, out, *extra, pause=None, log_name="holder"):
    return start_training(train_args(tiny, out, *extra), log_path=tiny["root"] / f"{out.name}-{log_name}.log",
                          env_extra={PAUSE_ENV: str(pause)} if pause else None)


def _train_py(tiny, out, *extra):
    return subprocess.run([sys.executable, str(REPO_ROOT / "train.py"), *train_args(tiny, out, *extra)],
                          cwd=REPO_ROOT, env=training_env(), capture_output=True, text=True, timeout=300)


def _writing_checkpoint(out: Path) -> bool:
    folder = out / "checkpoints"
    return folder.is_dir() and any(p.name.startswith(".step-") and p.name.endswith(".tmp") for p in folder.iterdir())


def _error_line(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return errors[0]


def test_second_writer_stops_at_once_whatever_its_flags(tiny):
    """A run paused mid-checkpoint; train.py, --resume and --overwrite against its folder all exit 2."""
    out = tiny["root"] / "held"
    holder = _start(tiny, out, "--save_every", "2", pause=600)
    try:
        wait_for(holder, lambda: _writing_checkpoint(out), what="its first checkpoint write")
        before = folder_snapshot(out, files_only=True)
        for extra in (["--overwrite"], ["--resume"], []):
            started = time.monotonic()
            done = _train_py(tiny, out, *extra)
            line = _error_line(done.stderr)
            assert done.returncode == 2, (extra, done.stderr[-2000:])
            assert line.startswith(f"error: --output_dir {out}: another train.py is writing this run "
                                   f"(pid {holder.pid} on host {socket.gethostname()}"), line
            assert folder_snapshot(out, files_only=True) == before, f"{extra}: the holder's folder changed"
            assert time.monotonic() - started < 120  # at once: no data or model was loaded
            assert "tokenised" not in done.stderr and "token cache" not in done.stderr
        lock = json.loads((out / LOCK_NAME).read_text())
        assert (lock["pid"], lock["host"]) == (holder.pid, socket.gethostname())
    finally:
        holder.kill()
        holder.wait(timeout=60)

    # the holder was killed: its lock is stale, and the next writer takes it over, saying so
    done = _train_py(tiny, out, "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (f"{out / LOCK_NAME}: took over a lock left by pid {holder.pid} on host {socket.gethostname()}"
            in done.stderr) and "which is no longer running" in done.stderr
    assert not (out / LOCK_NAME).exists()  # released at the end
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records].count("train_epoch") == 1  # one run's records, once
    assert json.loads((out / "run_summary.json").read_text())["finished"] is True


def test_two_fresh_runs_into_one_new_folder(tiny):
    """Started together: one trains, the other stops with the lock line (not a clash of renames)."""
    out = tiny["root"] / "fresh" / "run"
    first = _start(tiny, out, pause=3, log_name="first")
    second = _start(tiny, out, pause=3, log_name="second")
    codes = sorted([first.wait(timeout=300), second.wait(timeout=300)])
    logs = [(tiny["root"] / f"run-{name}.log").read_text() for name in ("first", "second")]
    assert codes == [0, 2], logs
    loser = next(log for log in logs if "error:" in log)
    assert f"error: --output_dir {out}: another train.py is writing this run (pid " in _error_line(loser)
    config = json.loads((out / "run_config.json").read_text())
    assert config["output_dir"] == str(out.resolve())
    assert json.loads((out / "run_summary.json").read_text())["finished"] is True
    assert not (out / LOCK_NAME).exists()


def test_lock_held_on_another_host_is_not_taken_over(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_NAME).write_text(json.dumps({"pid": 4242, "host": "node-17.cluster", "since": "yesterday"}))
    assert train_main(train_args(tiny, out)) == 2
    line = _error_line(capsys.readouterr().err)
    assert line == (f"error: --output_dir {out}: another train.py is writing this run (pid 4242 on host "
                    f"node-17.cluster, since yesterday); if that process is gone, delete {out / LOCK_NAME}")
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]


def test_live_holder_on_this_host_and_stale_or_unreadable_locks(tiny, tmp_path, capsys, caplog):
    out = tmp_path / "run"
    out.mkdir()
    lock = out / LOCK_NAME
    # this very process is alive: a lock naming it is held
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    assert train_main(train_args(tiny, out)) == 2
    assert f"(pid {os.getpid()} on host {socket.gethostname()})" in _error_line(capsys.readouterr().err)
    assert not (out / "run_config.json").exists()

    # a process that has exited, same host: taken over with a warning
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    lock.write_text(json.dumps({"pid": gone.pid, "host": socket.gethostname()}))
    with caplog.at_level(logging.WARNING, logger="mt_dnn.run_lock"):
        assert train_main(train_args(tiny, out, "--stop_at_step", "1")) == 0
    assert f"took over a lock left by pid {gone.pid}" in caplog.text
    assert not lock.exists()

    # a lock file its writer never finished (empty, older than the write grace): taken over too
    lock.write_text("")
    old = time.time() - 60
    os.utime(lock, (old, old))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mt_dnn.run_lock"):
        assert train_main(train_args(tiny, out, "--resume")) == 0
    assert "took over an unreadable lock file" in caplog.text


def test_a_failed_check_removes_the_folder_it_created_for_the_lock(tiny, tmp_path, capsys):
    """The lock needs the folder; a run stopped by a bad input leaves no trace of it."""
    bad = tmp_path / "anli"
    write_anli_like(bad, rounds=("R1",), sizes={"train": 8, "dev": 4, "test": 4})
    train = bad / "R1" / "train.jsonl"
    train.write_text(train.read_text() + "{broken\n")
    out = tmp_path / "new" / "deeper" / "run"
    argv = train_args(tiny, out)
    argv[argv.index("--data_dir") + 1] = str(bad)
    assert train_main(argv) == 2
    assert f"{train}:9: malformed JSON" in _error_line(capsys.readouterr().err)
    assert not (tmp_path / "new").exists()


def test_torchrun_rank0_holds_the_lock_for_all_ranks(tiny, tmp_path):
    """Under torchrun, a held folder stops every rank with the same line (none hangs)."""
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_NAME).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(REPO_ROOT / "train.py"), *train_args(tiny, out)]
    done = subprocess.run(command, cwd=REPO_ROOT, env=training_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    held = f"--output_dir {out}: another train.py is writing this run (pid {os.getpid()}"
    assert f"error: {held}" in done.stderr and f"error: rank 1: {held}" in done.stderr, done.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]
