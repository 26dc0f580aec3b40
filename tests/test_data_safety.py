"""Never delete what the program did not write, never train on input it misread, one line always.

Each test is a case a careful user tried (issue 25) and asserts what the user keeps: the folder's
files byte for byte, the input file unchanged, exactly one ``error:`` line and the exit code.

- train.py --overwrite deletes only a run folder of ours, never one holding an input of the run;
- mt_dnn.export --out is never the run folder, its parent or inside it; --overwrite replaces only an
  earlier export (its marker file); Ctrl-C/SIGTERM leave no temporary folder and exit 130/143;
- predict.py --output is never the input, a folder or a run's file, refused before any scoring;
  --input's message says which format the task reads;
- --resume refuses a run_config.json that lacks what decides the weights, and warns (and records)
  when the library versions changed;
- head_to_head refuses 0 examples, a data folder given twice, and a runs folder of other settings in
  one line; train.py refuses a task given two data folders;
- an --output_dir that is a dangling or looping link or lies under a file, a split path that is a
  folder or a FIFO, a full disk while model/ is written: one line each, naming the path.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from mt_dnn.cli_predict import main as predict_main
from mt_dnn.cli_train import main as train_main
from mt_dnn.export import PROVENANCE_FILE, main as export_main
from tiny_models import tiny_anli_setup
from train_runs import fails_cleanly, train_args, training_env

pytestmark = pytest.mark.usefixtures("one_thread")

ANLI_YAML = REPO_ROOT / "task_defs" / "anli.yml"
SNLI_SAMPLE = REPO_ROOT / "experiments" / "data" / "snli_sample"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_anli_setup(tmp_path_factory.mktemp("safety"), train=16)


@pytest.fixture(scope="module")
def finished(tiny):
    """A finished tiny run (with its hf_model/ export, as train.py writes it)."""
    out = tiny["root"] / "finished"
    assert train_main(train_args(tiny, out)) == 0
    return out


def contents(folder: Path) -> dict | None:
    """Every file under ``folder`` with its bytes, and every folder (None: no such folder)."""
    if not folder.exists():
        return None
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def one_error(err: str, *, starts: str) -> str:
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert errors[0].startswith("error: " + starts), errors[0]
    return errors[0]


def _fake_run_folder(folder: Path) -> Path:
    """A folder train.py would recognise as a run of its own (run_config.json with its keys)."""
    folder.mkdir(parents=True)
    (folder / "run_config.json").write_text(json.dumps({"train_datasets": "anli:r1_train", "perturbation": "none",
                                                        "output_dir": str(folder)}))
    (folder / "metrics.jsonl").write_text('{"epoch": 1}\n')
    return folder


# -- train.py --overwrite: only what train.py wrote ----------------------------------------------------

@pytest.fixture
def users_folder(tmp_path) -> Path:
    """The user's own folder: a model/ and a task_defs/ holding the task file given as --task_def."""
    folder = tmp_path / "mine"
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "notes.txt").write_text("my model notes")
    (folder / "task_defs").mkdir()
    shutil.copy(ANLI_YAML, folder / "task_defs" / "anli.yml")
    return folder


def test_overwrite_refuses_a_folder_train_py_did_not_write(tiny, users_folder, capsys):
    before = contents(users_folder)
    argv = train_args(tiny, users_folder, "--task_def", str(users_folder / "task_defs" / "anli.yml"), "--overwrite")
    line = fails_cleanly(argv, capsys, starts=f"--output_dir {users_folder}: holds model, task_defs but is not a run "
                                              "folder of train.py")
    assert "give another --output_dir" in line
    assert contents(users_folder) == before


def test_without_overwrite_the_message_does_not_call_it_a_run(tiny, users_folder, capsys):
    before = contents(users_folder)
    line = fails_cleanly(train_args(tiny, users_folder), capsys, starts=f"--output_dir {users_folder}: holds model")
    assert "another run's results" not in line and "not a run folder" in line
    assert contents(users_folder) == before


def test_overwrite_of_a_run_holding_an_input_is_refused(tiny, tmp_path, capsys):
    run = _fake_run_folder(tmp_path / "run")
    (run / "task_defs").mkdir()
    shutil.copy(ANLI_YAML, run / "task_defs" / "edited.yml")
    before = contents(run)
    line = fails_cleanly(train_args(tiny, run, "--task_def", str(run / "task_defs" / "edited.yml"), "--overwrite"),
                         capsys, starts=f"--output_dir {run}: task_defs there holds --task_def")
    assert "would delete" in line
    assert contents(run) == before


def test_overwrite_of_a_run_holding_another_run_is_refused(tiny, tmp_path, capsys):
    run = _fake_run_folder(tmp_path / "run")
    inner = _fake_run_folder(run / "predictions" / "kept")
    before = contents(run)
    fails_cleanly(train_args(tiny, run, "--overwrite"), capsys,
                  starts=f"--output_dir {run}: {inner.resolve()} is another run folder")
    assert contents(run) == before


def test_output_dir_that_is_the_data_folder_is_refused(tiny, data, capsys):
    before = contents(data)
    fails_cleanly(train_args(tiny, data, data=data), capsys, starts=f"--output_dir {data}: is the --data_dir")
    assert contents(data) == before


def test_overwrite_of_a_run_folder_of_ours_still_replaces_it(tiny, tmp_path):
    run = _fake_run_folder(tmp_path / "run")
    assert train_main(train_args(tiny, run, "--overwrite", "--no_export")) == 0
    assert json.loads((run / "run_config.json").read_text())["seed"] == 2018
    assert (run / ".mtdnn_run").is_file()  # written first: a start cut short is still recognised as ours


# -- mt_dnn.export --out -----------------------------------------------------------------------------

def _export_refused(argv, capsys, *, starts: str, keep: Path) -> None:
    before = contents(keep)
    assert export_main(argv) == 2
    one_error(capsys.readouterr().err, starts=starts)
    assert contents(keep) == before


def test_export_out_is_never_the_run_folder_its_parent_or_inside_it(finished, tmp_path, capsys):
    run = finished
    for out, starts in ((run, f"--out {run}: is the run folder"),
                        (run.parent, f"--out {run.parent}: holds the run folder"),
                        (run / "checkpoints" / "x", f"--out {run / 'checkpoints' / 'x'}: lies inside the run folder")):
        _export_refused(["--run_dir", str(run), "--out", str(out), "--overwrite"], capsys, starts=starts,
                        keep=run.parent)
    other = _fake_run_folder(tmp_path / "other_run")
    _export_refused(["--run_dir", str(run), "--out", str(other / "hf"), "--overwrite"], capsys,
                    starts=f"--out {other / 'hf'}: lies inside the run folder {other.resolve()}", keep=other)


def test_export_overwrite_replaces_only_an_earlier_export(finished, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    _export_refused(["--run_dir", str(finished), "--out", str(mine), "--overwrite"], capsys,
                    starts=f"--out {mine}: --overwrite replaces only a folder mt_dnn.export wrote", keep=mine)
    earlier = tmp_path / "earlier"
    assert export_main(["--run_dir", str(finished), "--out", str(earlier)]) == 0
    assert (earlier / PROVENANCE_FILE).is_file()
    (earlier / "model.safetensors").write_bytes(b"stale")
    assert export_main(["--run_dir", str(finished), "--out", str(earlier), "--overwrite"]) == 0
    assert (earlier / "model.safetensors").read_bytes() != b"stale"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# Runs mt_dnn.export with a pause after the folder is built and before it is checked, so that a
# signal reliably arrives while the temporary folder exists.
_SLOW_EXPORT = """
import signal, sys, time
# Ctrl-C as at a terminal: a process started in the background by a shell (a CI runner, nohup ... &)
# inherits SIGINT ignored, and then the signal this test sends would never arrive.
signal.signal(signal.SIGINT, signal.default_int_handler)
import mt_dnn.export as export
real = export.probe_logits
def slow(**kwargs):
    print("building", flush=True)
    time.sleep(60)
    return real(**kwargs)
export.probe_logits = slow
sys.exit(export.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("sent, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_interrupted_export_leaves_no_temporary_folder(finished, tmp_path, sent, code):
    out = tmp_path / "exported"
    process = subprocess.Popen([sys.executable, "-c", _SLOW_EXPORT, "--run_dir", str(finished), "--out", str(out)],
                               cwd=REPO_ROOT, env=training_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    assert process.stdout.readline().strip() == "building"
    assert [p.name for p in tmp_path.iterdir()] == [f".exported.tmp-{process.pid}"]
    process.send_signal(sent)
    _, err = process.communicate(timeout=120)
    assert process.returncode == code, err
    one_error(err, starts=f"interrupted by {sent.name}")
    assert list(tmp_path.iterdir()) == []


# -- predict.py --output, --input --------------------------------------------------------------------

@pytest.fixture
def never_scores(monkeypatch):
    """predict.py's refusals come before any scoring: scoring here fails the test."""
    import mt_dnn.cli_predict

    def scored(**kwargs):
        raise AssertionError("predict.py scored before refusing --output")

    monkeypatch.setattr(mt_dnn.cli_predict, "predict_split", scored)


def _pairs(path: Path) -> Path:
    path.write_text("".join(json.dumps({"uid": f"u{i}", "context": f"A man walks {i}.", "hypothesis": "He moves."})
                            + "\n" for i in range(3)))
    return path


def test_predict_output_that_is_the_input_is_refused(finished, tmp_path, capsys, never_scores):
    pairs = _pairs(tmp_path / "pairs.jsonl")
    before = pairs.read_bytes()
    assert predict_main(["--run_dir", str(finished), "--input", str(pairs), "--output", str(pairs)]) == 2
    one_error(capsys.readouterr().err, starts=f"--output {pairs}: is the --input file")
    assert pairs.read_bytes() == before


def test_predict_output_inside_the_run_folder_is_refused(finished, tmp_path, capsys, never_scores):
    pairs = _pairs(tmp_path / "pairs.jsonl")
    before = contents(finished)
    target = finished / "run_config.json"
    assert predict_main(["--run_dir", str(finished), "--input", str(pairs), "--output", str(target)]) == 2
    one_error(capsys.readouterr().err, starts=f"--output {target}: lies inside the run folder")
    assert contents(finished) == before


def test_predict_output_that_is_a_folder_is_refused_before_scoring(finished, tmp_path, capsys, never_scores):
    pairs = _pairs(tmp_path / "pairs.jsonl")
    folder = tmp_path / "preds"
    folder.mkdir()
    assert predict_main(["--run_dir", str(finished), "--input", str(pairs), "--output", str(folder)]) == 2
    one_error(capsys.readouterr().err, starts=f"--output {folder}: is a folder")
    assert list(folder.iterdir()) == []


def test_predict_input_in_another_format_says_which_it_expects(finished, tmp_path, capsys):
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("premise\thypothesis\nA man walks.\tHe moves.\n")
    out = tmp_path / "preds.jsonl"
    assert predict_main(["--run_dir", str(finished), "--input", str(tsv), "--output", str(out)]) == 2
    line = one_error(capsys.readouterr().err, starts=f"--input: {tsv}:1")
    assert "expected one JSON object per line with the fields 'context', 'hypothesis' (task anli's reader " \
           "anli_jsonl)" in line
    assert not out.exists()


# -- --resume compares everything -----------------------------------------------------------------------

@pytest.fixture
def stopped(tiny, tmp_path):
    out = tmp_path / "run"
    assert train_main(train_args(tiny, out, "--stop_at_step", "1", "--no_export")) == 0
    return out


def _edit_config(run: Path, edit) -> None:
    path = run / "run_config.json"
    saved = json.loads(path.read_text())
    edit(saved)
    path.write_text(json.dumps(saved))


@pytest.mark.parametrize("remove, name", [
    (lambda c: c.pop("seed"), "'seed'"),
    (lambda c: c["identity"].pop("train_files"), "'identity.train_files'"),
    (lambda c: c["identity"]["train_files"].pop("anli:r1_train"), "'identity.train_files.anli:r1_train'"),
    (lambda c: c.pop("identity"), "'identity'"),
])
def test_resume_refuses_a_config_missing_what_decides_the_weights(tiny, stopped, capsys, remove, name):
    _edit_config(stopped, remove)
    before = contents(stopped)
    line = fails_cleanly(train_args(tiny, stopped, "--stop_at_step", "1", "--no_export", "--resume", "--seed", "7"),
                         capsys, starts=f"--resume: {stopped / 'run_config.json'} has no {name}")
    assert "written by another version of train.py or edited" in line
    assert contents(stopped) == before


def test_resume_under_other_library_versions_warns_once_and_records_it(tiny, stopped, caplog):
    import torch
    import transformers

    _edit_config(stopped, lambda c: c["versions"].update(torch="0.0.1-old"))
    assert train_main(train_args(tiny, stopped, "--no_export", "--resume")) == 0
    warned = [r.getMessage() for r in caplog.records if "library code" in r.getMessage()]
    assert warned == [f"--resume: torch was 0.0.1-old, now {torch.__version__}; the rest of this run is trained with "
                      f"other library code (recorded in {stopped / 'run_config.json'})"]
    saved = json.loads((stopped / "run_config.json").read_text())
    assert saved["versions"]["torch"] == "0.0.1-old"  # what the run started with stays
    assert saved["resumed_with_versions"] == [{"changed": ["torch"], "versions": {
        **saved["versions"], "torch": torch.__version__, "transformers": transformers.__version__}}]


# -- one data folder per task -------------------------------------------------------------------------

def test_a_task_given_two_data_folders_is_refused(tiny, data, tmp_path, capsys):
    out = tmp_path / "run"
    for values, starts in (([f"anli={data}", f"anli={tiny['data']}"], "--data_dir: task anli is given two folders"),
                           ([str(data), str(tiny["data"])], "--data_dir: two folders for every task")):
        argv = train_args(tiny, out)
        at = argv.index("--data_dir")
        argv[at + 1:at + 2] = values
        fails_cleanly(argv, capsys, starts=starts)
    argv = train_args(tiny, out) + ["--data_dir", str(data)]  # the flag given twice
    fails_cleanly(argv, capsys, starts="--data_dir: two folders for every task")
    assert not out.exists()


# -- head_to_head ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("flag", ["--max_train_examples", "--max_eval_examples", "--batch_size"])
def test_head_to_head_refuses_zero_counts(tmp_path, capsys, flag):
    from experiments.head_to_head import main

    runs = tmp_path / "runs"
    # a model that does not exist: without the check, the run would fail fast instead of training on everything
    assert main(["--data_dir", str(SNLI_SAMPLE), "--output", str(runs), "--methods", "none", "--seeds", "1",
                 "--model", str(tmp_path / "no_model"), flag, "0", "--quiet"]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert lines == [f"head_to_head: error: {flag}: expected a whole number >= 1, got 0"], err
    assert not runs.exists()


def test_head_to_head_refuses_a_data_folder_given_twice(tmp_path, capsys):
    from experiments.head_to_head import main

    runs = tmp_path / "runs"
    assert main(["--data_dir", str(tmp_path), "--data_dir", str(SNLI_SAMPLE), "--output", str(runs),
                 "--methods", "none", "--seeds", "1", "--model", str(tmp_path / "no_model"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if "error:" in line] == [
        f"head_to_head: error: --data_dir: given twice ({tmp_path} and {SNLI_SAMPLE}); give one"], err
    assert not runs.exists()


def test_grid_scripts_refuse_a_data_folder_given_twice(tmp_path, capsys):
    from experiments.table2 import main

    with pytest.raises(SystemExit) as stopped:  # argparse's own exit, with its usage
        main(["--preset", "cpu", "--data_dir", str(tmp_path), "--data_dir", str(tmp_path / "b"), "--dry_run",
              "--output", str(tmp_path / "runs")])
    assert stopped.value.code == 2
    assert "--data_dir: given twice" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_head_to_head_rerun_with_other_settings_is_one_line(tiny, tmp_path, capsys):
    from experiments.grid_types import ModelSetting, build_cells, parse_methods
    from experiments.head_to_head import main

    runs = tmp_path / "runs"
    cell = build_cells(models=(ModelSetting(str(tiny["model"]), 16),), methods=parse_methods("none"), seeds=(1,))[0]
    run = cell.run_dir(runs)
    run.mkdir(parents=True)
    (run / "run_summary.json").write_text(json.dumps({"finished": True}))
    (run / "run_config.json").write_text(json.dumps({"learning_rate": 0.5}))
    before = contents(runs)
    assert main(["--data_dir", str(SNLI_SAMPLE), "--output", str(runs), "--methods", "none", "--seeds", "1",
                 "--model", str(tiny["model"]), "--quiet"]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"head_to_head: error: {run / 'run_config.json'}: this finished run was made with "
                               "--learning_rate 0.5")
    assert contents(runs) == before


# -- one line, naming the path ----------------------------------------------------------------------------

def _listing(folder: Path) -> list:
    """Names, link targets and file bytes of ``folder``'s entries (links are not followed)."""
    return [(p.name, os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.iterdir())]


def test_output_dir_that_is_a_dangling_or_looping_link_or_under_a_file(tiny, tmp_path, capsys):
    dangling, loop, a_file = tmp_path / "dangling", tmp_path / "loop", tmp_path / "a_file"
    dangling.symlink_to(tmp_path / "nowhere")
    loop.symlink_to(loop)
    a_file.write_text("x")
    before = _listing(tmp_path)
    for out, starts in ((dangling, f"--output_dir {dangling}: is a symbolic link to {tmp_path / 'nowhere'}, which "
                                   "does not exist"),
                        (loop, f"--output_dir {loop}: is a symbolic link that loops"),
                        (a_file / "run", f"--output_dir {a_file / 'run'}: lies under {a_file}, which exists and is "
                                         "not a folder")):
        assert train_main(train_args(tiny, out)) == 2
        one_error(capsys.readouterr().err, starts=starts)
        assert _listing(tmp_path) == before


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_split_path_that_is_not_a_regular_file(tiny, data, tmp_path, capsys, kind):
    split = data / "R1" / "dev.jsonl"
    split.unlink()
    if kind == "folder":
        split.mkdir()
    else:
        os.mkfifo(split)
    what = "a folder" if kind == "folder" else "a FIFO"
    fails_cleanly(train_args(tiny, tmp_path / "run", data=data), capsys,
                  starts=f"split anli:r1_dev: {split} is not a regular file ({what})")


@pytest.mark.parametrize("failure", ["oserror", "tokenizers"])
def test_full_disk_while_model_folder_is_written(tiny, tmp_path, capsys, monkeypatch, failure):
    from transformers import PreTrainedTokenizerBase

    def full(self, *args, **kwargs):
        if failure == "oserror":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        raise Exception("No space left on device (os error 28)")  # what the tokenizers library raises

    monkeypatch.setattr(PreTrainedTokenizerBase, "save_pretrained", full)
    out = tmp_path / "run"
    line = fails_cleanly(train_args(tiny, out), capsys, code=1,
                         starts=f"{out / 'model'}: cannot write it (No space left on device)")
    assert line == f"error: {out / 'model'}: cannot write it (No space left on device)"
    assert not out.exists() or not (out / "run_config.json").exists() and not list(out.glob(".model.*"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads which file a descriptor is through /proc")
def test_full_disk_while_a_checkpoint_is_written_names_the_file(tiny, tmp_path, capsys, monkeypatch):
    real_fsync = os.fsync

    def fsync(fd):
        if "/checkpoints/" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as write()/fsync() raise it: no file name
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    out = tmp_path / "run"
    assert train_main(train_args(tiny, out)) == 1
    err = capsys.readouterr().err
    line = one_error(err, starts="[Errno 28] No space left on device: ")
    assert f"{out / 'checkpoints'}/" in line and line.endswith(".pt'"), line
    assert not [p.name for p in (out / "checkpoints").iterdir() if p.name.endswith(".tmp")]


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
