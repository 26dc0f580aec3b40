"""The paper-reproduction scripts end to end: the cpu preset grid on the packaged MiniLM and real ANLI.

One module-scoped grid trains every registered provider once (a handful of examples, one
update each) through experiments.table4, i.e. through train.py subprocesses; the other tests
read its runs, re-run it (nothing may be trained), extend it with Figure 3's sweeps (one run
stopped and resumed), and draw Figure 2 with the real providers.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from anli_copies import dev_test_only
from experiments import figure2, figure3, grid, plots, table2, table3, table4
from experiments.summarize import method_label
from noise_training.registry import provider_names
from train_runs import folder_snapshot

# A handful of examples per split: every run is one or two updates; the pipeline, not a result.
# --no_export: each run's Hugging Face export (tested in test_export.py) took a quarter of its time here
TINY = ["--preset", "cpu", "--models", "packaged-minilm:4", "--max_train_examples", "8", "--max_eval_examples", "8",
        "--max_seq_len", "32", "--quiet", "--train_args=--no_export"]


def _call(main, argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return status, out.getvalue(), err.getvalue()


def _png(path: Path) -> np.ndarray:
    assert path.is_file() and path.stat().st_size > 0, path
    image = imread(path)
    assert image.std() > 0, f"{path} is a blank image"
    return image


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, minilm_path, anli_dir):
    root = tmp_path_factory.mktemp("repro")
    with pytest.MonkeyPatch.context() as patch:
        for name in ("REPRO_PRESET", "REPRO_MODELS", "REPRO_SEEDS", "REPRO_RUNS", "REPRO_GPUS", "REPRO_TRAIN_ARGS"):
            patch.delenv(name, raising=False)
        # These runs are a few tiny matrix products each; on a shared 2-core machine a second
        # OpenMP thread mostly waits (measured 10x slower), so the subprocesses get one.
        patch.setenv("OMP_NUM_THREADS", "1")
        # the grid trains on R1 dev when the train files are absent (what the cpu preset is for): a copy
        # without them, whatever $ANLI_DIR holds
        yield {"runs": root / "runs", "cache": root / "cache", "anli": dev_test_only(anli_dir, root / "anli")}


def _common(ws) -> list[str]:
    return TINY + ["--output", str(ws["runs"]), "--data_dir", str(ws["anli"]), "--cache_dir", str(ws["cache"])]


@pytest.fixture(scope="module")
def cpu_grid(workspace):
    """experiments.table4 on every registered provider (the union of Tables 2 and 3, and any newer one)."""
    methods = ",".join(provider_names())
    status, out, err = _call(table4.main, _common(workspace) + ["--methods", methods])
    return {"status": status, "out": out, "err": err, "methods": provider_names(), **workspace}


@pytest.mark.slow
def test_cpu_grid_trains_every_provider_and_reports_it(cpu_grid):
    assert cpu_grid["status"] == 0, cpu_grid["out"][-3000:] + cpu_grid["err"][-3000:]
    runs, out = cpu_grid["runs"], cpu_grid["out"]
    assert "trains on the R1 DEV split" in out  # the grid says what it trained on
    assert f"{len(cpu_grid['methods'])} started" in out and "0 failed" in out
    for method in cpu_grid["methods"]:
        run = runs / "packaged-minilm" / method / "seed1"
        summary = json.loads((run / "run_summary.json").read_text())
        assert summary["finished"] is True and summary["updates"] == 2, method
        config = json.loads((run / "run_config.json").read_text())
        assert config["perturbation"] == method and config["train_datasets"] == "anli:r1_dev"
        logged = [json.loads(line) for line in (run / grid.COMMAND_LOG).read_text().splitlines()]
        assert logged[0]["event"] == "start" and logged[0]["command"][1].endswith("train.py")
        assert logged[-1]["event"] == "end" and logged[-1]["finished"] is True
        assert (run / grid.TRAIN_LOG).stat().st_size > 0
        # step checkpoints pruned after the run finished, the best model kept
        assert (run / "checkpoints" / "best.pt").is_file()
        assert not list((run / "checkpoints").glob("step-*"))
        assert not (run / grid.LOCK_FILE).exists()
        # every method has a row in the per-round table (Table 4), with all 8 accuracy cells
        row = next(line for line in out.splitlines() if line.startswith(f"| {method_label(method=method)} |"))
        assert row.count("±") == 8, row
    table = (runs / "tables" / "table4.md").read_text()
    assert "## Training time" in table and "## Perturbation size" in table
    height = int(plots.FIGURE_HEIGHT_IN * plots.DPI)
    bars = _png(runs / "plots" / plots.BARS_NAME)
    assert bars.shape[:2] == (height, int(plots.BAR_PANEL_WIDTH_IN * plots.DPI))


@pytest.mark.slow
def test_rerunning_a_finished_grid_trains_nothing(cpu_grid):
    runs = cpu_grid["runs"]
    run_folders = runs / "packaged-minilm"
    before = folder_snapshot(run_folders, files_only=True)
    status, out, err = _call(table2.main, _common(cpu_grid))
    assert status == 0, err
    assert "0 started" in out and "8 already finished" in out
    assert folder_snapshot(run_folders, files_only=True) == before  # no file written, none touched
    # Table 2's layout: one row per method with dev and test All; both SMARTs, MT-DNN's first
    labels = [line.split(" | ")[0] for line in out.splitlines() if line.startswith(("| +", "| fine-tuning"))]
    assert labels[:3] == ["| fine-tuning", "| +SMART", "| +SMART (corrected)"]
    for label in ("+SMART", "+SMART (corrected)"):
        row = next(line for line in out.splitlines() if line.startswith(f"| {label} |"))
        assert row.count("±") == 2 and "(" not in row.split(" | ", 1)[1]  # MiniLM has no paper value beside it
    assert (runs / "tables" / "table2.md").read_text().startswith("> NOTE")

    # The same grid asked with other settings refuses to reuse (or silently mix) the finished runs.
    status, out, err = _call(table2.main, _common(cpu_grid) + ["--max_eval_examples", "9"])
    assert status == 2 and "run_config.json: this finished run was made with --max_eval_examples 8" in err
    assert folder_snapshot(run_folders, files_only=True) == before


@pytest.mark.slow
def test_figure3_resumes_an_interrupted_sweep_run_and_draws(cpu_grid):
    runs = cpu_grid["runs"]
    # The default step (1e-5) and noise_size (0.5) are Table 2's smart and 1-1 runs: reused, not retrained.
    common = _common(cpu_grid) + ["--smart_step_sizes", "1e-5,1e-3", "--noise_sizes", "0.5"]
    # First pass stops the new SMART run after one of its two updates, as an interruption would.
    status, out, err = _call(figure3.main, common + ["--train_args", "--no_export --stop_at_step 1"])
    assert status == 0, out[-2000:] + err[-2000:]
    stopped = runs / "packaged-minilm" / "smart_mtdnn@adv_step_size=1e-3" / "seed1"  # the paper's SMART is swept
    assert "2 already finished (skipped), 1 started" in out and "1 stopped early" in out
    assert not (stopped / "run_summary.json").exists() and list((stopped / "checkpoints").glob("step-*.pt"))

    status, out, err = _call(figure3.main, common)
    assert status == 0, out[-2000:] + err[-2000:]
    assert "1 started (1 resumed)" in out and "1 finished now" in out
    starts = [json.loads(line) for line in (stopped / grid.COMMAND_LOG).read_text().splitlines()]
    starts = [r for r in starts if r["event"] == "start"]
    assert "--resume" not in starts[0]["command"] and "--resume" in starts[1]["command"]
    metrics = [json.loads(line) for line in (stopped / "metrics.jsonl").read_text().splitlines()]
    assert [r["updates"] for r in metrics if r["kind"] == "train_epoch"] == [2]  # one epoch, both updates, once
    # The SMART table (smart_mtdnn, the paper's) gives each step size's measured sizes. x is the size
    # MT-DNN's code logs; it grows with the step (not 100-fold for a 100-fold step: at 1e-5 the
    # initial noise, sigma 1e-5 per dimension, is as large). The noise applied is renormalised to
    # ‖·‖∞ ≈ 1 per token at any step: tens of percent of the embedding output.
    assert "## +SMART (MT-DNN's code, the paper's) (`smart_mtdnn`), packaged-minilm" in out
    assert "+SMART (corrected)" not in out  # the corrected smart is swept only when asked
    shares, applied = {}, {}
    for line in out.splitlines():
        if line.startswith("| adv_step_size="):
            cells = [c.strip() for c in line.strip("|").split("|")]
            assert cells[1] == cells[3]  # x is the MT-DNN-logged column
            shares[cells[0].split(" ")[0]] = float(cells[1])
            applied[cells[0].split(" ")[0]] = float(cells[2])
    print("figure 3 sizes (%): MT-DNN-logged", shares, "applied", applied)
    assert set(shares) == {"adv_step_size=1e-05", "adv_step_size=0.001"}
    assert shares["adv_step_size=0.001"] > 5 * shares["adv_step_size=1e-05"] > 0
    assert all(value > 10 for value in applied.values())
    assert all(value < applied[key] / 100 for key, value in shares.items())
    figure = _png(runs / "plots" / plots.FIGURE3_NAME)  # one SMART panel (no 1-1 sweep point was asked)
    assert figure.shape[:2] == (int(plots.FIGURE_HEIGHT_IN * plots.DPI), int(plots.PANEL_WIDTH_IN * plots.DPI))


@pytest.mark.slow
def test_figure2_smart_is_invisible_after_layer_2(workspace, tmp_path):
    out = tmp_path / "figure2.png"
    status, text, err = _call(figure2.main, ["--model", "packaged-minilm", "--data_dir", str(workspace["anli"]),
                                             "--per_word", "6", "--cache_dir", str(workspace["cache"]),
                                             "--out", str(out)])
    assert status == 0, err
    image = _png(out)
    assert image.shape[:2] == (int(figure2.FIGURE_SIZE_IN[1] * figure2.DPI), int(figure2.FIGURE_SIZE_IN[0] * figure2.DPI))
    measured = json.loads(out.with_suffix(".json").read_text())
    assert all(count >= 6 for count in measured["occurrences"].values())
    shares, spaces = measured["perturbation_share_percent"], measured["perturbation_space"]
    # each size against what it is added to: the corrected smart and 1-1 the token embeddings,
    # MT-DNN's SMART the embedding block's output
    assert spaces == {"SMART (corrected)": "token embeddings", "1-1": "token embeddings",
                      "SMART (MT-DNN)": "embedding block output"}
    assert 0 < shares["SMART (corrected)"] < 1 < shares["1-1"]
    # MT-DNN's noise is renormalised to ‖·‖∞ ≈ 1 per token: tens of percent applied, while the
    # size its code logs is orders of magnitude smaller
    assert shares["SMART (MT-DNN)"] > 10 and 0 < measured["mtdnn_logged_share_percent"] < shares["SMART (MT-DNN)"] / 1e3
    panels = measured["panels"]
    assert set(panels["embedding block output (where MT-DNN's SMART adds its noise)"]) == {
        "clean_spread", "clean_to_SMART (MT-DNN)", "clean_to_SMART (MT-DNN)_relative"}
    assert "clean_to_SMART (MT-DNN)" not in panels["token embeddings (where smart and 1-1 add theirs)"]
    layer = panels["hidden states after encoder layer 2"]
    # The corrected SMART moves the layer-2 states by a tiny fraction of how far apart the words
    # are; 1-1 visibly; MT-DNN's SMART (its noise and the embedding block applied twice) too.
    assert layer["clean_to_SMART (corrected)_relative"] < 0.01 < layer["clean_to_1-1_relative"]
    assert layer["clean_to_SMART (MT-DNN)_relative"] > 0.01
    assert "| hidden states after encoder layer 2 |" in text and "as MT-DNN's code logs it" in text


def test_paper_preset_dry_run_prints_torchrun_commands(tmp_path, anli_dir):
    anli_dir = dev_test_only(anli_dir, tmp_path / "anli")  # the dry run says the train files are missing
    output = tmp_path / "paper"
    status, out, err = _call(table2.main, ["--preset", "paper", "--dry_run", "--gpus", "2", "--output", str(output),
                                           "--data_dir", str(anli_dir)])
    assert status == 0, err
    commands = [line.strip() for line in out.splitlines() if "train.py" in line]
    assert len(commands) == 8 * 2 * 6  # methods (both SMARTs) × models × seeds
    assert all("-m torch.distributed.run --standalone --nproc_per_node 2" in c for c in commands)
    bert = [c for c in commands if "--model bert-base-uncased" in c]
    roberta = [c for c in commands if "--model roberta-large" in c]
    assert len(bert) == len(roberta) == 48
    # +SMART is MT-DNN's code, +SMART (corrected) the algorithm: 12 runs of each
    assert sum("--perturbation smart_mtdnn " in c for c in commands) == 12
    assert sum("--perturbation smart " in c for c in commands) == 12
    assert "bert-base-uncased/smart_mtdnn/seed6" in out
    assert all("--batch_size 32" in c for c in bert) and all("--batch_size 16" in c for c in roberta)
    for flag in ("--learning_rate 2e-05", "--epochs 6", "--warmup 0.1", "--train_datasets anli "):
        assert all(flag in c for c in commands), flag
    assert {c.split("--seed ")[1].split()[0] for c in commands} == {"1", "2", "3", "4", "5", "6"}
    assert "bert-base-uncased/smart/seed6" in out and "lacks the R1-R3 train.jsonl" in out
    assert not output.exists()  # a dry run writes nothing

    status, out, err = _call(figure3.main, ["--preset", "paper", "--dry_run", "--output", str(output),
                                            "--data_dir", str(anli_dir)])
    assert status == 0, err
    commands = [line.strip() for line in out.splitlines() if "train.py" in line]
    assert len(commands) == 5 * 2 * 6 + 11 * 1 * 6  # SMART steps × models × seeds + 1-1 noise sizes × BERT × seeds
    assert sum("--model roberta-large" in c for c in commands) == 5 * 6  # no noise_size sweep on RoBERTa
    # The SMART sweep is MT-DNN's code, what the paper swept; the corrected smart is not swept by default.
    smart = [c for c in commands if "--perturbation smart" in c]
    assert len(smart) == 5 * 2 * 6 and all("--perturbation smart_mtdnn " in c for c in smart)
    assert "--perturbation smart " not in out
    assert "roberta-large/smart_mtdnn@adv_step_size=1e-1/seed1" in out and "--adv_step_size 1e-1 " in out
    assert "bert-base-uncased/smart_mtdnn/seed1" in out and "smart_mtdnn@adv_step_size=1e-5" not in out
    assert "bert-base-uncased/1-1@noise_size=0.3/seed2" in out and "--noise_size 0.3 " in out
    assert "bert-base-uncased/1-1/seed1" in out and "1-1@noise_size=0.5" not in out  # the default is Table 2's run

    # --smart_variants adds the corrected smart's sweep beside MT-DNN's.
    status, out, err = _call(figure3.main, ["--preset", "paper", "--dry_run", "--output", str(output),
                                            "--data_dir", str(anli_dir), "--smart_variants", "smart_mtdnn,smart"])
    assert status == 0, err
    commands = [line.strip() for line in out.splitlines() if "train.py" in line]
    assert len(commands) == 2 * 5 * 2 * 6 + 11 * 1 * 6
    assert sum("--perturbation smart_mtdnn " in c for c in commands) == sum(
        "--perturbation smart " in c for c in commands) == 5 * 2 * 6
    assert "bert-base-uncased/smart@adv_step_size=1e-2/seed3" in out
    status, out, err = _call(figure3.main, ["--preset", "paper", "--dry_run", "--output", str(output),
                                            "--data_dir", str(anli_dir), "--smart_variants", "smart,adversarial"])
    assert status == 2 and "--smart_variants 'smart,adversarial': expected a comma-separated list of" in err
    assert not output.exists()


def test_environment_variables_set_the_grid(tmp_path, anli_dir, monkeypatch):
    monkeypatch.setenv("REPRO_SEEDS", "3,5")
    monkeypatch.setenv("REPRO_GPUS", "1")
    monkeypatch.setenv("REPRO_RUNS", str(tmp_path / "from_env"))
    monkeypatch.setenv("ANLI_DIR", str(anli_dir))
    status, out, err = _call(table2.main, ["--preset", "paper", "--dry_run", "--methods", "none",
                                           "--models", "bert-base-uncased"])
    assert status == 0, err
    commands = [line.strip() for line in out.splitlines() if "train.py" in line]
    assert len(commands) == 2 and all("torch.distributed.run" not in c for c in commands)
    assert f"{tmp_path / 'from_env'}/bert-base-uncased/none/seed5" in out


@pytest.mark.parametrize("script", [grid, table2, table3, table4, figure3, figure2])
def test_every_script_explains_its_flags(script, capsys):
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--help"])
    assert exit_info.value.code == 0 and "--" in capsys.readouterr().out


def test_method_folders_name_only_non_default_options():
    assert grid.method(perturbation="smart", adv_step_size=1e-5).folder == "smart"  # the provider's default
    assert grid.method(perturbation="smart", adv_step_size=1e-3).folder == "smart@adv_step_size=1e-3"
    assert grid.method(perturbation="1-1", noise_size=0.5).folder == "1-1"
    assert grid.method(perturbation="1-1", noise_size=0.0).folder == "1-1@noise_size=0"
    assert grid.method(perturbation="1-1", noise_size=0.3).flags() == ["--perturbation", "1-1", "--noise_size", "0.3"]
    assert grid.method_from_folder(folder="smart@adv_step_size=0.001").folder == "smart@adv_step_size=1e-3"
    methods = grid.parse_methods("none,smart@adv_k=2,adv_step_size=1e-3,1-1@noise_size=0.3,2-1")
    assert [m.folder for m in methods] == ["none", "smart@adv_k=2,adv_step_size=1e-3", "1-1@noise_size=0.3", "2-1"]
    assert methods[1].flags() == ["--perturbation", "smart", "--adv_k", "2", "--adv_step_size", "1e-3"]
    with pytest.raises(grid.GridError, match="1-1_1.0: it has no option 'noise_size'"):
        grid.method_from_folder(folder="1-1_1.0@noise_size=0.5")
    with pytest.raises(grid.GridError, match="unknown provider"):
        grid.method(perturbation="no-such-method")


def test_seed_and_model_lists():
    assert grid.parse_seeds("1-3,7,2") == (1, 2, 3, 7)
    with pytest.raises(grid.GridError, match="--seeds 3-1"):
        grid.parse_seeds("3-1")
    models = grid.parse_models("bert-base-uncased,/models/roberta-large:8", default_batch={"bert-base-uncased": 32})
    assert [(m.name, m.batch_size, m.tag) for m in models] == [("bert-base-uncased", 32, "bert-base-uncased"),
                                                               ("/models/roberta-large", 8, "roberta-large")]
    with pytest.raises(grid.GridError, match="no batch size known"):
        grid.parse_models("my-model", default_batch={})


def test_a_run_held_by_a_live_grid_is_skipped_and_a_dead_ones_lock_taken_over(tmp_path, anli_dir):
    settings = grid.GridSettings(runs_dir=tmp_path, data_dir=anli_dir, train_datasets="anli:r1_dev", epochs=1,
                                 learning_rate=5e-5, warmup=0.1, max_seq_len=32, max_train_examples=8)
    cell = grid.Cell(grid.ModelSetting("packaged-minilm", 4), grid.method(perturbation="none"), 1)
    lock = grid.RunLock(cell.run_dir(tmp_path))
    assert lock.acquire()  # held by this (live) process
    lines: list[str] = []
    report = grid.run_grid(cells=[cell], settings=settings, log=lines.append)
    assert report.held_elsewhere == [cell] and report.started == []
    assert not (cell.run_dir(tmp_path) / grid.COMMAND_LOG).exists()
    lock.release()

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.path.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "since": "earlier"}))
    taker = grid.RunLock(cell.run_dir(tmp_path))
    assert taker.acquire() and json.loads(taker.path.read_text())["pid"] == os.getpid()
    taker.release()
    assert not taker.path.exists()
