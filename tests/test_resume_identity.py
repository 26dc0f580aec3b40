"""--resume continues the run it names, or refuses in one line: a changed training file (by content,
not path), task definition, model (by resolved folder and file hashes, not spelling) or flag; a
finished run stays as it was; a repeated --stop_at_step does nothing more; a run that never reached a
checkpoint is started afresh. predict.py reads the run's own copy of its task definitions, from any
working directory, and every damaged run folder is one line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from mt_dnn.checkpoint import CheckpointManager
from mt_dnn.cli_predict import main as predict_main
from mt_dnn.cli_train import main as train_main
from tiny_models import tiny_anli_setup, tiny_bert, write_anli_like
from train_runs import folder_snapshot

ANLI_YAML = (REPO_ROOT / "task_defs" / "anli.yml").read_text()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_anli_setup(tmp_path_factory.mktemp("identity"), train=32)


def _args(tiny, out, *extra, data=None, model=None, task_def=None):
    return ["--model", str(model or tiny["model"]), "--data_dir", str(data or tiny["data"]),
            "--cache_dir", str(tiny["cache"]), "--train_datasets", "anli:r1_train", "--test_datasets", "anli:r1_dev",
            "--epochs", "1", "--batch_size", "8", "--max_seq_len", "48", "--no_progress", "--output_dir", str(out),
            *(["--task_def", str(task_def)] if task_def else []), *extra]


def _refused(argv, capsys, *, contains: list[str]) -> str:
    out = Path(argv[argv.index("--output_dir") + 1])
    before = folder_snapshot(out, files_only=True)
    assert train_main(argv) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert errors[0].startswith("error: --resume: "), errors[0]
    for text in contains:
        assert text in errors[0], errors[0]
    assert folder_snapshot(out, files_only=True) == before, "a refused resume changed the run folder"
    return errors[0]


@pytest.fixture
def stopped(tiny, tmp_path):
    """A run stopped after 2 of its 4 updates."""
    out = tmp_path / "run"
    assert train_main(_args(tiny, out, "--stop_at_step", "2")) == 0
    return out


def test_training_file_with_other_content_is_refused(tiny, stopped, tmp_path, capsys):
    other = write_anli_like(tmp_path / "other", rounds=("R1",), sizes={"train": 32, "dev": 8, "test": 8}, seed=9)
    shutil.copy(tiny["data"] / "R1" / "dev.jsonl", other / "R1" / "dev.jsonl")
    _refused(_args(tiny, stopped, "--resume", data=other), capsys,
             contains=[f"training split anli:r1_train: {other / 'R1' / 'train.jsonl'} differs from the file the run "
                       f"started with (was {tiny['data'] / 'R1' / 'train.jsonl'})"])


def test_same_content_in_another_folder_is_accepted(tiny, stopped, tmp_path):
    moved = Path(shutil.copytree(tiny["data"], tmp_path / "moved"))
    assert train_main(_args(tiny, stopped, "--resume", data=moved)) == 0
    assert json.loads((stopped / "run_summary.json").read_text())["updates"] == 4


def test_edited_task_definition_is_refused(tiny, tmp_path, capsys):
    yml = tmp_path / "anli.yml"
    yml.write_text(ANLI_YAML)
    out = tmp_path / "run"
    assert train_main(_args(tiny, out, "--stop_at_step", "2", task_def=yml)) == 0
    yml.write_text("# reformatted, same content\n" + ANLI_YAML)
    assert train_main(_args(tiny, out, "--resume", "--stop_at_step", "3", task_def=yml)) == 0  # comments do not count
    yml.write_text(ANLI_YAML.replace("labels: [e, n, c]", "labels: [c, n, e]"))
    _refused(_args(tiny, out, "--resume", task_def=yml), capsys,
             contains=["the definition of task anli changed: labels was ['e', 'n', 'c'], now ['c', 'n', 'e']"])


def test_model_is_compared_by_identity_not_spelling(tiny, tmp_path, capsys):
    model = Path(shutil.copytree(tiny["model"], tmp_path / "bert"))
    out = tmp_path / "run"
    assert train_main(_args(tiny, out, "--stop_at_step", "1", model=model)) == 0
    assert train_main(_args(tiny, out, "--resume", "--stop_at_step", "2", model=f"{model}/")) == 0
    linked = tmp_path / "link"
    linked.symlink_to(model)
    assert train_main(_args(tiny, out, "--resume", "--stop_at_step", "3", model=linked)) == 0
    # same folder, other weights (re-initialised with another seed)
    tiny_bert(model, seed=7)
    _refused(_args(tiny, out, "--resume", model=model), capsys,
             contains=["the model's model.safetensors changed (sha256", f"(--model {model})"])
    other = tiny_bert(tmp_path / "other_bert")
    _refused(_args(tiny, out, "--resume", model=other), capsys,
             contains=[f"the model folder was {model}, now {other}"])


def test_packaged_minilm_with_a_trailing_slash(minilm_path, tiny, tmp_path):
    """The real MiniLM, given once as its folder and once with a '/' appended: one and the same model."""
    out = tmp_path / "run"
    argv = lambda *extra, model: _args(tiny, out, "--max_train_examples", "8", "--max_eval_examples", "4",
                                       "--batch_size", "4", "--max_seq_len", "32", *extra, model=model)
    assert train_main(argv("--stop_at_step", "1", model=minilm_path)) == 0
    assert train_main(argv("--resume", model=f"{minilm_path}/")) == 0
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["finished"] is True and summary["updates"] == 2


def test_changed_flag_is_refused(tiny, stopped, capsys):
    _refused(_args(tiny, stopped, "--resume", "--seed", "7"), capsys, contains=["--seed was 2018 but is now 7"])


def test_resume_of_a_finished_run_changes_nothing(tiny, tmp_path, caplog):
    out = tmp_path / "run"
    assert train_main(_args(tiny, out)) == 0
    before = folder_snapshot(out, files_only=True)
    summary = (out / "run_summary.json").read_bytes()
    with caplog.at_level("INFO", logger="mt_dnn.trainer"):
        assert train_main(_args(tiny, out, "--resume")) == 0
    assert "is already finished; nothing to do" in caplog.text
    assert (out / "run_summary.json").read_bytes() == summary
    assert folder_snapshot(out, files_only=True) == before


def test_repeated_stop_at_step_makes_no_further_update(tiny, tmp_path):
    out = tmp_path / "run"
    assert train_main(_args(tiny, out, "--stop_at_step", "3")) == 0
    checkpoints = CheckpointManager(out / "checkpoints")
    assert [p.name for p in checkpoints.step_checkpoints()] == ["step-000000003.pt"]
    before = folder_snapshot(out, files_only=True)
    for _ in range(2):
        assert train_main(_args(tiny, out, "--stop_at_step", "3", "--resume")) == 0
        assert [p.name for p in checkpoints.step_checkpoints()] == ["step-000000003.pt"]
    assert {k: v for k, v in folder_snapshot(out, files_only=True).items() if k != "metrics.jsonl"} == \
           {k: v for k, v in before.items() if k != "metrics.jsonl"}
    # then on to the end; the wall time counts the earlier session too
    earlier = checkpoints.load_latest()[1]["progress"]["wall_time_s"]
    assert train_main(_args(tiny, out, "--resume")) == 0
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["updates"] == 4 and summary["wall_time_s"] > earlier > 0


def test_run_that_never_reached_a_checkpoint_is_started_afresh(tiny, tmp_path, capsys, caplog):
    """What a crash before the first checkpoint leaves (run_config.json, model/, task_defs/)."""
    out = tmp_path / "run"
    assert train_main(_args(tiny, out, "--stop_at_step", "1")) == 0
    shutil.rmtree(out / "checkpoints")
    (out / "metrics.jsonl").unlink(missing_ok=True)
    # a plain rerun says what to do ...
    assert train_main(_args(tiny, out)) == 2
    assert "stopped before its first checkpoint: --resume starts it afresh" in capsys.readouterr().err
    # ... and --resume accepts it even with other settings, since nothing was trained yet
    with caplog.at_level("WARNING"):
        assert train_main(_args(tiny, out, "--resume", "--batch_size", "4")) == 0
    assert "has no checkpoint yet; starting afresh with the current settings" in caplog.text
    assert json.loads((out / "run_config.json").read_text())["batch_size"] == 4
    assert json.loads((out / "run_summary.json").read_text())["updates"] == 8


# -- predict.py and the run folder -----------------------------------------------------------------

@pytest.fixture
def finished_with_relative_task_def(tiny, tmp_path):
    """A run started from its own folder with a relative --task_def."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "tasks.yml").write_text(ANLI_YAML)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(REPO_ROOT / "train.py"),
                           *_args(tiny, "run", task_def="tasks.yml")], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return workdir


def _predict_py(*argv, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(REPO_ROOT / "predict.py"), *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_predict_from_another_folder_uses_the_runs_copy(finished_with_relative_task_def, tmp_path):
    workdir = finished_with_relative_task_def
    run = workdir / "run"
    config = json.loads((run / "run_config.json").read_text())
    assert config["task_def"] == [str(workdir / "tasks.yml")]
    assert (run / "task_defs" / "tasks.yml").read_text() == ANLI_YAML
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = _predict_py("--run_dir", str(run), "--split", "r1_dev", "--output", "first.jsonl",
                       "--checkpoint", "latest", cwd=elsewhere)
    assert done.returncode == 0, done.stderr[-3000:]
    first = [json.loads(line) for line in (elsewhere / "first.jsonl").read_text().splitlines()]
    assert len(first) == 8

    # the YAML on disk is edited (label order reversed): predictions still use the run's labels
    (workdir / "tasks.yml").write_text(ANLI_YAML.replace("labels: [e, n, c]", "labels: [c, n, e]"))
    done = _predict_py("--run_dir", str(run), "--split", "r1_dev", "--output", "second.jsonl",
                       "--checkpoint", "latest", cwd=elsewhere)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (f"{workdir / 'tasks.yml'} has changed since this run was trained; using the run's copy "
            f"{run / 'task_defs' / 'tasks.yml'}") in done.stderr
    second = [json.loads(line) for line in (elsewhere / "second.jsonl").read_text().splitlines()]
    assert second == first


@pytest.mark.parametrize("damage, starts", [
    ("corrupt", "{config}:2: malformed JSON (Expecting value at column 1)"),
    ("empty", "{config}: the run's configuration is empty"),
    ("not an object", "{config}: the run's configuration must be a JSON object, got list"),
    ("no task_def", "{config}: expected 'task_def' (list)"),
    ("no model config", "--run_dir {run}: {run}/model/config.json is missing (the run folder is incomplete)"),
    ("no task copy", "--run_dir {run}: {run}/task_defs/tasks.yml is missing"),
])
def test_damaged_run_folder_is_one_line(finished_with_relative_task_def, tmp_path, capsys, damage, starts):
    run = Path(shutil.copytree(finished_with_relative_task_def / "run", tmp_path / "damaged"))
    config = run / "run_config.json"
    text = config.read_text()
    if damage == "corrupt":
        config.write_text('{"task_def": [\n}')
    elif damage == "empty":
        config.write_text("")
    elif damage == "not an object":
        config.write_text("[1, 2]")
    elif damage == "no task_def":
        config.write_text(json.dumps({k: v for k, v in json.loads(text).items() if k != "task_def"}))
    elif damage == "no model config":
        (run / "model" / "config.json").unlink()
    else:
        (run / "task_defs" / "tasks.yml").unlink()
    output = tmp_path / "preds.jsonl"
    assert predict_main(["--run_dir", str(run), "--split", "r1_dev", "--output", str(output)]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert errors[0].startswith("error: " + starts.format(config=config, run=run)), errors[0]
    assert not output.exists()
