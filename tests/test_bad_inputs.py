"""Every bad input: a one-line error naming the file/line or flag and what was expected, a non-zero
exit, no traceback (unless --debug), and nothing new in the output folder.

Most cases call ``train.py``'s ``main()`` in this process (seconds each); two run the real
``train.py`` to check the exit code and the whole of stderr.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from train_runs import fails_cleanly, train_args
from conftest import REPO_ROOT
from mt_dnn.checkpoint import CheckpointManager, write_checkpoint
from mt_dnn.cli_train import main as train_main
from mt_dnn.data import main as data_main
from mt_dnn.errors import UserError
from tiny_models import tiny_anli_setup


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_anli_setup(tmp_path_factory.mktemp("bad"), train=16)


# -- data files ---------------------------------------------------------------------------------

def _rewrite(path: Path, line_number: int, new_line: bytes) -> None:
    lines = path.read_bytes().split(b"\n")
    lines[line_number - 1] = new_line
    path.write_bytes(b"\n".join(lines))


def test_malformed_json_line(tiny, data, tmp_path, capsys):
    train = data / "R1" / "train.jsonl"
    _rewrite(train, 3, b'{"uid": "x", "context": "a dog"')
    fails_cleanly(train_args(tiny, tmp_path / "run", data=data), capsys, starts=f"{train}:3: malformed JSON")


def test_missing_field(tiny, data, tmp_path, capsys):
    train = data / "R1" / "train.jsonl"
    _rewrite(train, 2, json.dumps({"uid": "x", "context": "a dog .", "label": "e"}).encode())
    fails_cleanly(train_args(tiny, tmp_path / "run", data=data), capsys, starts=f"{train}:2: missing field 'hypothesis'")


def test_label_outside_the_tasks_labels(tiny, data, tmp_path, capsys):
    dev = data / "R1" / "dev.jsonl"
    _rewrite(dev, 5, json.dumps({"uid": "x", "context": "a dog .", "hypothesis": "a cat .", "label": "maybe"}).encode())
    line = fails_cleanly(train_args(tiny, tmp_path / "run", data=data), capsys, starts=f"{dev}:5: label 'maybe'")
    assert "e, n, c" in line


def test_empty_file(tiny, data, tmp_path, capsys):
    train = data / "R1" / "train.jsonl"
    train.write_bytes(b"\n\n")
    fails_cleanly(train_args(tiny, tmp_path / "run", data=data), capsys, starts=f"{train}: empty file")


def test_missing_split_file(tiny, data, tmp_path, capsys):
    (data / "R1" / "dev.jsonl").unlink()
    fails_cleanly(train_args(tiny, tmp_path / "run", data=data), capsys,
           starts=f"missing split file(s): anli:r1_dev ({data / 'R1' / 'dev.jsonl'})")


def test_undecodable_bytes(tiny, data, tmp_path, capsys):
    train = data / "R1" / "train.jsonl"
    _rewrite(train, 4, b'{"uid": "x", "context": "caf\xe9", "hypothesis": "a", "label": "e"}')
    fails_cleanly(train_args(tiny, tmp_path / "run", data=data), capsys, starts=f"{train}:4: not valid UTF-8")


def test_bom_and_crlf_are_accepted(tiny, data, tmp_path):
    for split in ("train", "dev"):
        path = data / "R1" / f"{split}.jsonl"
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    out = tmp_path / "run"
    assert train_main(train_args(tiny, out, data=data)) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert next(r for r in records if r["kind"] == "train_epoch")["examples"] == 16
    assert next(r for r in records if r["kind"] == "eval")["examples"] == 8


# -- task definitions (YAML) --------------------------------------------------------------------

ANLI_YAML = (REPO_ROOT / "task_defs" / "anli.yml").read_text()


@pytest.mark.parametrize("case, text, starts", [
    ("syntax", ANLI_YAML.replace("labels: [e, n, c]", "labels: [e, n, c"), "{yml}:"),
    ("unknown key", ANLI_YAML.replace("  metric: accuracy", "  metric: accuracy\n  colour: red"),
     "{yml}: anli.colour: unknown key"),
    ("wrong type", ANLI_YAML.replace("dropout_p: 0.1", "dropout_p: high"), "{yml}: anli.dropout_p: expected a number"),
    ("missing field", ANLI_YAML.replace("  loss: cross_entropy\n", ""), "{yml}: anli.loss: missing required key"),
    ("duplicate task", ANLI_YAML + "\n" + ANLI_YAML.split("anli:", 1)[0] + "anli:" + ANLI_YAML.split("anli:", 1)[1],
     "{yml}:"),
])
def test_bad_task_definition(tiny, tmp_path, capsys, case, text, starts):
    yml = tmp_path / "tasks.yml"
    yml.write_text(text)
    line = fails_cleanly(train_args(tiny, tmp_path / "run", "--task_def", str(yml)), capsys, starts=starts.format(yml=yml))
    if case == "syntax":
        assert re.match(rf"error: {re.escape(str(yml))}:\d+: invalid YAML: expected ',' or ']'", line), line
    if case == "duplicate task":
        assert re.match(rf"error: {re.escape(str(yml))}:\d+: invalid YAML: duplicate key 'anli'", line), line


def test_same_task_in_two_files(tiny, tmp_path, capsys):
    first, second = tmp_path / "a.yml", tmp_path / "b.yml"
    first.write_text(ANLI_YAML)
    second.write_text(ANLI_YAML)
    fails_cleanly(train_args(tiny, tmp_path / "run", "--task_def", str(first), str(second)), capsys,
           starts=f"{second}: anli: duplicate task name")


def test_yaml_is_loaded_safely(tiny, tmp_path, capsys):
    yml = tmp_path / "tasks.yml"
    marker = tmp_path / "pwned"
    yml.write_text(f"anli: !!python/object/apply:os.system ['touch {marker}']\n")
    fails_cleanly(train_args(tiny, tmp_path / "run", "--task_def", str(yml)), capsys,
           starts=f"{yml}:1: invalid YAML: could not determine a constructor")
    assert not marker.exists()


# -- flags --------------------------------------------------------------------------------------

@pytest.mark.parametrize("extra, starts", [
    (["--perturbation", "gaussian"], "--perturbation gaussian: unknown provider (choices: none, smart_mtdnn, smart, 1-1"),
    (["--perturbation", "1-1", "--noise_size", "2"], "--noise_size: expected a number in [0.0, 1.0], got 2.0"),
    (["--perturbation", "1-1", "--noise_size", "-0.5"], "--noise_size: expected a number in [0.0, 1.0]"),
    (["--perturbation", "1-2", "--top_k", "0"], "--top_k: expected a number >= 1, got 0"),
    (["--perturbation", "2-1", "--noise_ratio", "0"], "--noise_ratio: expected a number in (0.0, 1.0], got 0.0"),
    (["--perturbation", "2-1", "--noise_ratio", "1.5"], "--noise_ratio: expected a number in (0.0, 1.0]"),
    (["--learning_rate", "-1e-5"], "--learning_rate: expected a number > 0, got -1e-5"),
    (["--learning_rate", "0"], "--learning_rate: expected a number > 0"),
    (["--batch_size", "0"], "--batch_size: expected a whole number >= 1, got 0"),
    (["--perturbation", "none", "--noise_size", "0.3"], "--noise_size does not apply to --perturbation none"),
])
def test_bad_flag_values(tiny, tmp_path, capsys, extra, starts):
    fails_cleanly(train_args(tiny, tmp_path / "run", *extra), capsys, starts=starts)


def test_model_path_that_does_not_exist(tiny, tmp_path, capsys):
    missing = tmp_path / "no_such_model"
    argv = train_args(tiny, tmp_path / "run")
    argv[argv.index("--model") + 1] = str(missing)
    fails_cleanly(argv, capsys, starts=f"--model {missing}: no such folder")


def test_tokenizer_larger_than_the_embedding_matrix(tiny, tmp_path, capsys):
    from transformers import AutoTokenizer

    model = Path(shutil.copytree(tiny["model"], tmp_path / "model"))
    tokenizer = AutoTokenizer.from_pretrained(model)
    tokenizer.add_tokens([f"extra{i}" for i in range(5)])
    tokenizer.save_pretrained(model)
    argv = train_args(tiny, tmp_path / "run")
    argv[argv.index("--model") + 1] = str(model)
    line = fails_cleanly(argv, capsys, starts=f"--model {model}: the tokenizer has {len(tokenizer)} tokens")
    assert "embedding matrix" in line


# -- the output folder, caches, checkpoints ------------------------------------------------------

def test_output_folder_of_another_run(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "run_config.json").write_text(json.dumps({"train_datasets": "anli", "perturbation": "none",
                                                     "output_dir": str(out)}))
    (out / "metrics.jsonl").write_text("")
    fails_cleanly(train_args(tiny, out), capsys, starts=f"--output_dir {out}: holds another run's results")
    (out / "run_config.json").write_text("{}")  # not one train.py wrote: --overwrite does not delete it either
    fails_cleanly(train_args(tiny, out, "--overwrite"), capsys,
                  starts=f"--output_dir {out}: holds run_config.json, metrics.jsonl but is not a run folder of "
                         "train.py (its run_config.json is not one train.py wrote)")


def test_corrupt_cache_file_is_rebuilt_with_a_warning(tiny, tmp_path, caplog):
    cache = tmp_path / "cache"
    argv = train_args(tiny, tmp_path / "first")
    argv[argv.index("--cache_dir") + 1] = str(cache)
    assert train_main(argv) == 0
    files = sorted((cache / "tokens").glob("*.npz"))
    assert len(files) == 2
    for path in files:
        path.write_bytes(path.read_bytes()[:100])  # cut short, as by a full disk
    argv[argv.index("--output_dir") + 1] = str(tmp_path / "second")
    assert train_main(argv) == 0
    assert caplog.text.count("unusable token cache") == 2 and "rebuilding it" in caplog.text
    for path in files:
        with np.load(path, allow_pickle=False) as stored:
            assert len(stored["labels"]) in (16, 8)


@pytest.fixture
def stopped_run(tiny, tmp_path):
    """A run stopped after 1 update: one checkpoint to spoil, then --resume."""
    out = tmp_path / "run"
    assert train_main(train_args(tiny, out, "--stop_at_step", "1")) == 0
    checkpoints = CheckpointManager(out / "checkpoints").step_checkpoints()
    assert len(checkpoints) == 1
    return out, checkpoints[0]


def test_corrupt_checkpoint(tiny, stopped_run, capsys):
    out, checkpoint = stopped_run
    data = bytearray(checkpoint.read_bytes())
    data[-50] ^= 0xFF
    checkpoint.write_bytes(bytes(data))
    line = fails_cleanly(train_args(tiny, out, "--resume"), capsys,
                  starts=f"{out / 'checkpoints'}: no valid checkpoint to resume from")
    assert f"{checkpoint}: corrupt checkpoint" in line


def test_checkpoint_with_code_is_refused(tiny, stopped_run, capsys):
    """A checkpoint whose pickle would run a command (with a matching manifest) is not executed."""
    out, checkpoint = stopped_run
    marker = out.parent / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    write_checkpoint(checkpoint, {"model": Payload()}, info={"step": 1})
    line = fails_cleanly(train_args(tiny, out, "--resume"), capsys, starts=f"{out / 'checkpoints'}: no valid checkpoint")
    assert "cannot load checkpoint" in line and not marker.exists()


# -- downloaded archives (python -m mt_dnn.data download-anli) -------------------------------------

def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, body in members.items():
            archive.writestr(name, body)
    return path


def test_archive_checksum_mismatch(tmp_path, capsys):
    archive = _zip(tmp_path / "anli.zip", {"anli_v1.0/R1/dev.jsonl": b"{}\n"})
    target = tmp_path / "data" / "anli_v1.0"
    wrong = hashlib.sha256(b"something else").hexdigest()
    argv = ["download-anli", "--data_dir", str(target), "--url", archive.as_uri(), "--archive_sha256", wrong]
    fails_cleanly(argv, capsys, main=data_main, code=1, out=target,
           starts=f"checksum mismatch for archive {archive.as_uri()}: expected sha256 {wrong}")
    assert not any(target.parent.iterdir())  # no temporary download or extraction left beside it


def test_archive_member_outside_the_target_folder(tmp_path, capsys):
    archive = _zip(tmp_path / "anli.zip", {"anli_v1.0/R1/dev.jsonl": b"{}\n", "../../escaped.txt": b"x"})
    target = tmp_path / "data" / "anli_v1.0"
    fails_cleanly(["download-anli", "--data_dir", str(target), "--url", archive.as_uri()], capsys, main=data_main, code=1,
           out=target, starts="unsafe archive member '../../escaped.txt'")
    assert not (tmp_path / "escaped.txt").exists() and not any(target.parent.iterdir())


# -- the real command: exit code, the whole of stderr, --debug ---------------------------------------

def _train_py(*argv):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(REPO_ROOT / "train.py"), *argv], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_train_py_prints_one_line_and_exits_2(tiny, data, tmp_path):
    train = data / "R1" / "train.jsonl"
    _rewrite(train, 7, b"[1, 2]")
    out = tmp_path / "run"
    done = _train_py(*train_args(tiny, out, data=data))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"error: {train}:7: expected a JSON object, got list"
    assert not out.exists()


def test_debug_raises_instead(tiny, tmp_path):
    """--debug lets the exception through, so Python prints its traceback."""
    with pytest.raises(UserError, match=r"^--top_k: expected a number >= 1, got 0$"):
        train_main(train_args(tiny, tmp_path / "run", "--top_k", "0", "--perturbation", "1-2", "--debug"))
    with pytest.raises(UserError, match="malformed JSON"):
        data = Path(shutil.copytree(tiny["data"], tmp_path / "anli"))
        _rewrite(data / "R1" / "dev.jsonl", 2, b"{")
        train_main(train_args(tiny, tmp_path / "run", "--debug", data=data))
    assert not (tmp_path / "run").exists()
