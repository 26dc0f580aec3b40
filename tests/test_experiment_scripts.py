"""The shell script per paper table/figure: each calls its Python entry point and passes every flag through.

The README's reproduction section is written in terms of these scripts, so a script that drops
a flag (``--preset cpu``) or calls the wrong module would silently run the paper's GPU grid.
They are run for real with ``$PYTHON`` pointing at a recorder that writes down the arguments,
working folder and environment it was started with; one test calls the real entry points.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

SCRIPTS = REPO_ROOT / "experiments"
GRID_SCRIPTS = ("table2", "table3", "table4", "figure3", "head_to_head")


@pytest.fixture()
def recorder(tmp_path):
    log = tmp_path / "calls.jsonl"
    fake = tmp_path / "fake_python"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        f'exec {sys.executable} -c \'import json, os, sys; open(os.environ["FAKE_LOG"], "a").write(json.dumps('
        '{"argv": sys.argv[1:], "cwd": os.getcwd(), "model": os.environ.get("REPRO_FIGURE2_MODEL"), '
        '"runs": os.environ.get("REPRO_RUNS")}) + "\\n")\' "$@"\n', encoding="utf-8")
    fake.chmod(0o755)

    def run(script: str, *args: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REPRO_")}
        env.update(PYTHON=str(fake), FAKE_LOG=str(log))
        done = subprocess.run(["bash", str(SCRIPTS / f"{script}.sh"), *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
        calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        log.unlink(missing_ok=True)
        return done, calls

    return run


@pytest.mark.parametrize("script", GRID_SCRIPTS)
def test_each_script_calls_its_entry_point_with_every_flag(recorder, script):
    done, calls = recorder(script, "--preset", "cpu", "--seeds", "1,2", "--train_args", "--amp bf16")
    assert done.returncode == 0, done.stderr
    assert [c["argv"] for c in calls] == [["-m", f"experiments.{script}", "--preset", "cpu", "--seeds", "1,2",
                                           "--train_args", "--amp bf16"]]
    assert calls[0]["cwd"] == str(REPO_ROOT)  # runs/ lands in the project folder, wherever it is started


def test_figure2_script_maps_the_grid_flags_onto_its_own(recorder):
    done, calls = recorder("figure2", "--preset", "cpu", "--words", "she")
    assert done.returncode == 0, done.stderr
    assert calls == [{"argv": ["-m", "experiments.figure2", "--words", "she"], "cwd": str(REPO_ROOT),
                      "model": "packaged-minilm", "runs": "runs/cpu"}]
    _, calls = recorder("figure2", "--output=elsewhere")
    assert calls[0]["argv"] == ["-m", "experiments.figure2"] and calls[0]["runs"] == "elsewhere"
    assert calls[0]["model"] is None  # the paper's preset: figure2.py's own default, bert-base-uncased
    done, calls = recorder("figure2", "--preset", "gpu")
    assert done.returncode == 2 and calls == []
    assert "--preset gpu: expected paper or cpu" in done.stderr
    done, _ = recorder("figure2", "--preset")
    assert done.returncode == 2 and "--preset expects a value" in done.stderr


def test_reproduce_all_runs_every_script_in_order(recorder):
    done, calls = recorder("reproduce_all", "--preset", "cpu", "--seeds", "1", "--data_dir", "anli")
    assert done.returncode == 0, done.stderr
    grid = ["--preset", "cpu", "--seeds", "1", "--data_dir", "anli"]
    assert [c["argv"] for c in calls] == [
        ["-m", "experiments.table2", *grid], ["-m", "experiments.table3", *grid],
        ["-m", "experiments.table4", "--no_train", *grid], ["-m", "experiments.figure3", *grid],
        ["-m", "experiments.figure2", "--data_dir", "anli"],
    ]
    assert calls[-1]["model"] == "packaged-minilm"
    assert "tables: runs/cpu/tables/" in done.stdout


def test_the_entry_points_exist_and_take_help():
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHON=sys.executable)
    for script in (*GRID_SCRIPTS, "figure2"):
        done = subprocess.run(["bash", str(SCRIPTS / f"{script}.sh"), "--help"], env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, (script, done.stderr[-500:])
        assert f"python -m experiments.{script}" in done.stdout, script
