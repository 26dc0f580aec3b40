"""--emit_slurm: the job-array script's range and each task's command are the grid's own, and it resumes.

The script is run locally with SLURM_ARRAY_TASK_ID set: ``--print`` gives a task's command,
which must equal experiments.grid_plan's command for that cell (new, and resumable); one task
is run for real and the grid then sees its run as its own finished cell; the signal handling
(SIGTERM passed on, requeue near the time limit) is checked with a stand-in training command.

No value becomes a command (issue 25): a value with a newline (--output, --slurm_partition, ...) is
refused before anything is written, a value SLURM's #SBATCH parser would split is refused, and
values with spaces, quotes and ``$(...)`` in command positions reach train.py as they were given
when the script runs, with no file created by an injected command.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments import grid
from experiments.grid_plan import plan_run
from conftest import REPO_ROOT
from experiments.slurm import SlurmRequest, render_script, time_limit_seconds
from experiments.table2 import main as table2_main
from mt_dnn.cli_train import main as train_main
from tiny_models import tiny_bert, write_anli_like

BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(BASH is None, reason="bash is needed to run the sbatch script locally")


@pytest.fixture(scope="module")
def emitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm")
    model = tiny_bert(root / "tinybert")
    data = write_anli_like(root / "anli", rounds=("R1", "R2", "R3"), sizes={"train": 8, "dev": 4, "test": 4})
    argv = ["--preset", "cpu", "--models", f"{model}:4", "--methods", "none,1-1", "--seeds", "1,2",
            "--data_dir", str(data), "--output", str(root / "runs"), "--max_train_examples", "8",
            "--max_eval_examples", "4", "--max_seq_len", "64", "--cache_dir", str(root / "cache")]
    script = root / "table2.sbatch"
    assert table2_main(argv + ["--emit_slurm", str(script), "--slurm_time", "2:00:00", "--slurm_partition", "gpu",
                               "--slurm_gpus_per_task", "1", "--slurm_sbatch=--account=nlp"]) == 0
    parser = argparse.ArgumentParser()
    parser.add_argument("--methods")
    grid.add_grid_arguments(parser)
    request = grid.resolve_request(parser.parse_args(argv))
    cells = grid.build_cells(models=request.models, methods=grid.parse_methods("none,1-1"), seeds=request.seeds)
    return {"script": script, "cells": cells, "settings": request.settings, "root": root}


def _task(script: Path, index: int, *args: str, env=None, **kwargs) -> subprocess.CompletedProcess:
    environment = {**os.environ, "SLURM_ARRAY_TASK_ID": str(index), "OMP_NUM_THREADS": "1", **(env or {})}
    environment.pop("SLURM_JOB_ID", None) if "SLURM_JOB_ID" not in (env or {}) else None
    return subprocess.run([BASH, str(script), *args], capture_output=True, text=True, env=environment, **kwargs)


def _printed(script: Path, index: int) -> list[str]:
    result = _task(script, index, "--print")
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_header_and_every_task_command_equal_the_grid(emitted):
    text = emitted["script"].read_text()
    cells, settings = emitted["cells"], emitted["settings"]
    assert re.search(r"^#SBATCH --array=0-3$", text, re.M) and len(cells) == 4
    for line in ("--requeue", "--signal=B:USR1@300", "--time=2:00:00", "--partition=gpu", "--gpus-per-task=1",
                 "--account=nlp"):
        assert f"#SBATCH {line}\n" in text
    assert (settings.runs_dir / "slurm").is_dir()  # sbatch does not create its --output folder
    assert not any(cell.run_dir(settings.runs_dir).exists() for cell in cells)  # nothing trained
    for index, cell in enumerate(cells):
        planned = plan_run(cell=cell, settings=settings)
        assert planned.status == grid.NEW
        assert _printed(emitted["script"], index) == list(planned.command)
    assert _task(emitted["script"], 4, "--print").returncode == 2


@pytest.mark.slow
def test_a_task_run_locally_is_the_grids_run_and_resumes(emitted):
    script, cells, settings = emitted["script"], emitted["cells"], emitted["settings"]
    finished = _task(script, 0, timeout=900)
    assert finished.returncode == 0, finished.stdout[-2000:] + finished.stderr[-2000:]
    run_dir = cells[0].run_dir(settings.runs_dir)
    assert plan_run(cell=cells[0], settings=settings).status == grid.FINISHED  # no setting differs from the grid's
    assert not list((run_dir / "checkpoints").glob("step-*")) and (run_dir / "checkpoints" / "best.pt").is_file()
    assert _task(script, 0, timeout=300).returncode == 0  # submitted again: exits at once

    # a task whose run stopped at a checkpoint continues it, with the grid's own --resume command
    planned = plan_run(cell=cells[1], settings=settings)
    assert train_main(list(planned.command[2:]) + ["--stop_at_step", "1"]) == 0
    resumed = plan_run(cell=cells[1], settings=settings)
    assert resumed.status == grid.RESUME and resumed.command[-1] == "--resume"
    assert _printed(script, 1) == list(resumed.command)


def test_signals_reach_the_run_and_a_time_limit_requeues(emitted, tmp_path):
    marker = tmp_path / "started"
    stand_in = ("bash", "-c", f"trap 'echo stopping; exit 143' TERM; touch {marker}; "
                "while true; do sleep 0.05; done")
    request = SlurmRequest(path=tmp_path / "x.sbatch", gpus_per_task=0, time="10", partition=None, cpus_per_task=1,
                           mem=None, signal_seconds=60, max_parallel=None, sbatch=())
    # A run folder of its own: the module's runs may hold a finished cell 0 (the test above), and
    # the script exits 0 at once for a finished run, before any signal could matter.
    cells = emitted["cells"][:1]
    settings = dataclasses.replace(emitted["settings"], runs_dir=tmp_path / "runs")
    script = tmp_path / "stand_in.sbatch"
    script.write_text(render_script(request=request, settings=settings, cells=cells, commands=[stand_in],
                                    job_name="t", invoked="test"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol_calls"
    (bin_dir / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n")
    (bin_dir / "scontrol").chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SLURM_JOB_ID": "4242",
           "SLURM_ARRAY_TASK_ID": "0"}
    for sent, requeued in ((signal.SIGUSR1, True), (signal.SIGTERM, False)):
        marker.unlink(missing_ok=True)
        calls.unlink(missing_ok=True)
        process = subprocess.Popen([BASH, str(script)], env={**os.environ, **env}, stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists()
        process.send_signal(sent)
        output, _ = process.communicate(timeout=60)
        assert process.returncode == 143 and "stopping" in output
        assert (calls.read_text().split() == ["requeue", "4242"]) if requeued else not calls.exists()


@pytest.mark.parametrize("text, seconds", [("90", 5400), ("1:30", 90), ("12:00:00", 43200), ("2-00:00:00", 172800),
                                           ("1-6", 108000)])
def test_slurm_time_formats(text, seconds):
    assert time_limit_seconds(text) == seconds


def test_bad_slurm_flags_are_one_line_errors(emitted, tmp_path, capsys):
    data = emitted["root"] / "anli"
    base = ["--preset", "cpu", "--models", f"{emitted['root'] / 'tinybert'}:4", "--methods", "none",
            "--data_dir", str(data), "--output", str(tmp_path / "runs"), "--emit_slurm", str(tmp_path / "s.sbatch")]
    for extra, flag in ((["--slurm_time", "soon"], "--slurm_time"),
                        (["--slurm_time", "5", "--slurm_signal_seconds", "600"], "--slurm_signal_seconds"),
                        (["--gpus", "2", "--slurm_gpus_per_task", "4"], "--slurm_gpus_per_task")):
        assert table2_main(base + extra) == 2
        assert flag in capsys.readouterr().err
    assert not (tmp_path / "s.sbatch").exists()


def _base(emitted, tmp_path) -> list[str]:
    return ["--preset", "cpu", "--models", f"{emitted['root'] / 'tinybert'}:4", "--methods", "none", "--seeds", "1",
            "--data_dir", str(emitted["root"] / "anli"), "--emit_slurm", str(tmp_path / "s.sbatch")]


def _no_pwned(*folders: Path) -> None:
    for folder in folders:
        assert not (folder / "PWNED").exists(), folder
    assert not list(folders[0].rglob("PWNED"))


def _set(argv: list[str], flag: str, value: str) -> list[str]:
    argv = list(argv)
    if flag in argv:
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]
    return argv


@pytest.mark.parametrize("flag, value", [
    ("--output", "runs/nl\ntouch PWNED #"),
    ("--slurm_partition", "gpu\ntouch PWNED"),
    ("--slurm_mem", "64G\ntouch PWNED"),
    ("--slurm_sbatch", "--account=nlp\ntouch PWNED"),
    ("--cache_dir", "cache\ntouch PWNED #"),
    ("--models", "tiny\ntouch PWNED #:4"),
])
def test_a_control_character_in_any_value_is_refused(emitted, tmp_path, capsys, monkeypatch, flag, value):
    monkeypatch.chdir(tmp_path)
    argv = _set(_base(emitted, tmp_path) + ["--output", str(tmp_path / "runs")], flag, value)
    assert table2_main(argv) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert errors[0].startswith(f"python -m experiments.table2: error: {flag} "), errors[0]
    assert "control character" in errors[0]
    assert list(tmp_path.iterdir()) == []  # no script, no runs folder
    _no_pwned(tmp_path, REPO_ROOT)


@pytest.mark.parametrize("flag, value", [
    ("--output", "runs with space"), ("--output", "runs%j"), ("--slurm_partition", "gpu --wrap=x"),
    ("--slurm_mem", "64G'"),
])
def test_values_slurms_parser_would_split_are_refused(emitted, tmp_path, capsys, flag, value):
    argv = _set(_base(emitted, tmp_path) + ["--output", str(tmp_path / "runs")], flag,
                str(tmp_path / value) if flag == "--output" else value)
    assert table2_main(argv) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith(f"python -m experiments.table2: error: {flag} "), err
    assert "SLURM's #SBATCH parser" in errors[0]
    assert list(tmp_path.iterdir()) == []


HOSTILE = "a b'c\"d $(touch PWNED) `touch PWNED`;touch PWNED #"


def test_quotes_and_spaces_in_commands_reach_train_py_as_given(emitted, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    data = Path(shutil.copytree(emitted["root"] / "anli", tmp_path / f"data {HOSTILE}"))
    runs = tmp_path / "runs$(touch${IFS}PWNED)"
    argv = ["--preset", "cpu", "--models", f"{emitted['root'] / 'tinybert'}:4", "--methods", "none", "--seeds", "1",
            "--data_dir", str(data), "--output", str(runs), "--cache_dir", str(tmp_path / f"cache {HOSTILE}"),
            "--train_args=--no_export", "--emit_slurm", str(tmp_path / "s.sbatch")]
    assert table2_main(argv) == 0
    script = tmp_path / "s.sbatch"
    parser = argparse.ArgumentParser()
    parser.add_argument("--methods")
    grid.add_grid_arguments(parser)
    request = grid.resolve_request(parser.parse_args(argv[:-2]))
    cell = grid.build_cells(models=request.models, methods=grid.parse_methods("none"), seeds=request.seeds)[0]
    planned = plan_run(cell=cell, settings=request.settings)
    printed = subprocess.run([BASH, str(script), "--print"], capture_output=True, text=True, cwd=work,
                             env={**os.environ, "SLURM_ARRAY_TASK_ID": "0"})
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.splitlines() == list(planned.command)
    assert str(data) in printed.stdout.splitlines()

    # the whole script run, with a stand-in for train.py that prints its arguments
    values = (str(data), HOSTILE, "it's", 'say "hi"', "tab\\t $HOME ${PATH} *")
    request_ = SlurmRequest(path=tmp_path / "x.sbatch", gpus_per_task=0, time="10", partition=None, cpus_per_task=1,
                            mem=None, signal_seconds=5, max_parallel=None, sbatch=())
    stand_in = tmp_path / "stand_in.sbatch"
    stand_in.write_text(render_script(request=request_, settings=request.settings, cells=[cell],
                                      commands=[("printf", "[%s]\\n", *values)], job_name="t", invoked="test"))
    ran = subprocess.run([BASH, str(stand_in)], capture_output=True, text=True, cwd=work, timeout=60,
                         env={**os.environ, "SLURM_ARRAY_TASK_ID": "0"})
    assert ran.returncode == 0, ran.stderr
    assert [f"[{value}]" for value in values] == [line for line in ran.stdout.splitlines() if line.startswith("[")]
    _no_pwned(tmp_path, work, REPO_ROOT)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
