"""Inputs that used to escape as tracebacks, mid-run crashes or silence: each is now one line naming the
flag or file:line (exit 2, the output folder untouched), or, for data that is legal but suspicious, one
warning line per file and kind, repeated when the split comes from the token cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from train_runs import fails_cleanly, train_args
from conftest import REPO_ROOT
from mt_dnn.cli_train import main as train_main
from tiny_models import tiny_anli_setup, tiny_roberta


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_anli_setup(tmp_path_factory.mktemp("inputs"), train=16)


def _with(argv, flag, value):
    argv = list(argv)
    argv[argv.index(flag) + 1] = value
    return argv


# -- flags ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed, starts", [
    ("-1", "--seed: expected a whole number in [0, 4294967295], got -1"),
    ("4294967296", "--seed: expected a whole number in [0, 4294967295], got 4294967296"),
    ("1.5", "--seed: expected a whole number, got '1.5'"),
])
def test_seed_out_of_range(tiny, tmp_path, capsys, seed, starts):
    out = tmp_path / "run"
    fails_cleanly(train_args(tiny, out, "--seed", seed), capsys, starts=starts, out=out)


@pytest.mark.parametrize("value, starts", [
    ("2", "--max_seq_len: expected at least 5 (3 special tokens plus one token each for premise and hypothesis), "
          "got 2"),
    ("4", "--max_seq_len: expected at least 5"),
    ("129", "--max_seq_len: expected at most 128 (the positions of --model {model}), got 129"),
    ("100000", "--max_seq_len: expected at most 128"),
])
def test_max_seq_len_range_from_the_models_config(tiny, tmp_path, capsys, value, starts):
    out = tmp_path / "run"
    fails_cleanly(_with(train_args(tiny, out), "--max_seq_len", value), capsys, starts=starts.format(model=tiny["model"]), out=out)


def test_max_seq_len_limits_of_roberta_and_the_real_minilm(tiny, tmp_path, capsys, minilm_path):
    roberta = tiny_roberta(tmp_path / "roberta")  # 130 positions, numbered from padding_idx 1 + 1
    out = tmp_path / "run"
    fails_cleanly(_with(train_args(tiny, out, model=roberta), "--max_seq_len", "129"), capsys, out=out,
           starts=f"--max_seq_len: expected at most 128 (the positions of --model {roberta}), got 129")
    fails_cleanly(_with(train_args(tiny, out, model=roberta), "--max_seq_len", "5"), capsys, out=out,
           starts="--max_seq_len: expected at least 6 (4 special tokens")
    fails_cleanly(_with(train_args(tiny, out, model=minilm_path), "--max_seq_len", "513"), capsys, out=out,
           starts=f"--max_seq_len: expected at most 512 (the positions of --model {minilm_path}), got 513")


def test_smallest_max_seq_len_keeps_text_of_both_halves(tiny, tmp_path):
    out = tmp_path / "run"
    assert train_main(_with(train_args(tiny, out), "--max_seq_len", "5")) == 0
    predictions = (out / "predictions" / "epoch1_anli_r1_dev.jsonl").read_text().splitlines()
    assert len(predictions) == 8


def test_empty_output_dir(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fails_cleanly(_with(train_args(tiny, tmp_path / "unused"), "--output_dir", ""), capsys, out=tmp_path / "unused",
           starts="--output_dir: expected a folder path, got an empty string")
    assert not any(tmp_path.iterdir())


# -- files at the boundary where they are read ------------------------------------------------------

def test_truncated_model_safetensors(tiny, tmp_path, capsys):
    model = Path(shutil.copytree(tiny["model"], tmp_path / "model"))
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    out = tmp_path / "run"
    line = fails_cleanly(train_args(tiny, out, model=model), capsys, out=out, starts=f"{weights}: truncated safetensors file (")
    assert "download the model again" in line


def test_broken_model_config(tiny, tmp_path, capsys):
    model = Path(shutil.copytree(tiny["model"], tmp_path / "model"))
    (model / "config.json").write_text('{"model_type": "bert",\n "hidden_size": }')
    out = tmp_path / "run"
    fails_cleanly(train_args(tiny, out, model=model), capsys, out=out,
           starts=f"{model / 'config.json'}:2: malformed JSON (Expecting value at column 17)")


def _replace_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[number - 1] = text
    path.write_text("\n".join(lines), encoding="utf-8")


@pytest.mark.parametrize("case, line, starts", [
    ("deep nesting", "[" * 100_000 + "]" * 100_000, "{train}:5: JSON nested too deeply to read"),
    ("deep inside an object", '{"uid": "x", "context": "a", "hypothesis": "b", "label": '
     + "[" * 100_000 + "]" * 100_000 + "}", "{train}:5: JSON nested too deeply to read"),
    ("huge integer label", '{"uid": "x", "context": "a dog", "hypothesis": "a cat", "label": 1' + "0" * 5000 + "}",
     "{train}:5: unreadable JSON value (Exceeds the limit (4300 digits) for integer string conversion"),
    ("lone surrogate", '{"uid": "x", "context": "a dog \\ud800 runs", "hypothesis": "a cat", "label": "e"}',
     "{train}:5: field 'context' is not valid Unicode (lone surrogate \\ud800 at character 7)"),
    ("surrogate in the uid", '{"uid": "\\udfff", "context": "a dog", "hypothesis": "a cat", "label": "e"}',
     "{train}:5: field 'uid' is not valid Unicode"),
])
def test_data_line_that_json_or_unicode_cannot_take(tiny, data, tmp_path, capsys, case, line, starts):
    train = data / "R1" / "train.jsonl"
    _replace_line(train, 5, line)
    out = tmp_path / "run"
    fails_cleanly(train_args(tiny, out, data=data), capsys, out=out, starts=starts.format(train=train))


@pytest.mark.parametrize("text, starts", [
    ("anli: " + "[" * 50_000 + "]" * 50_000 + "\n", "{yml}: invalid YAML: nested too deeply to read"),
    ("anli:\n  n_class: 1" + "0" * 5000 + "\n", "{yml}: invalid YAML: unreadable value (Exceeds the limit"),
])
def test_task_definition_that_yaml_cannot_take(tiny, tmp_path, capsys, text, starts):
    yml = tmp_path / "tasks.yml"
    yml.write_text(text)
    out = tmp_path / "run"
    fails_cleanly(train_args(tiny, out, "--task_def", str(yml)), capsys, out=out, starts=starts.format(yml=yml))


def test_the_real_command_exits_2_with_one_line(tiny, data, tmp_path):
    train = data / "R1" / "train.jsonl"
    _replace_line(train, 3, '{"uid": "x", "context": "\\ud83d", "hypothesis": "h", "label": "n"}')
    out = tmp_path / "new" / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(REPO_ROOT / "train.py"), *train_args(tiny, out, data=data)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: {train}:3: field 'context' is not valid Unicode (lone surrogate \\ud83d at character 1)")
    assert not (tmp_path / "new").exists()  # the folder made for the lock is gone again


# -- legal but suspicious data: warned, once per file and kind ---------------------------------------

def test_suspicious_data_is_warned_about_with_counts(tiny, data, tmp_path, caplog):
    train = data / "R1" / "train.jsonl"
    rows = [json.loads(line) for line in train.read_text().splitlines()]
    rows[1]["uid"] = rows[2]["uid"] = rows[0]["uid"]  # lines 2 and 3 repeat line 1's uid
    rows[3]["uid"] = None
    rows[4]["context"] = ""
    rows[5]["hypothesis"] = "   "
    rows[6]["context"] = "%% ~~ ^^"  # no such characters in the vocabulary: [UNK] only
    rows[7]["hypothesis"] = "\u200b"  # a zero-width space: the tokenizer keeps nothing of it
    train.write_text("".join(json.dumps(row) + "\n" for row in rows))
    expected = [
        f"{train}: 2 examples with a duplicate uid (first at line 2: {rows[0]['uid']!r})",
        f"{train}: 1 example with a null uid (its line number is used) (first at line 4)",
        f"{train}: 1 example with an empty premise (first at line 5)",
        f"{train}: 1 example with an empty hypothesis (first at line 6)",
        f"{train}: 1 example with a premise that tokenises to special tokens only (first at line 7)",
        f"{train}: 1 example with a hypothesis that tokenises to special tokens only (first at line 8)",
    ]
    cache = tmp_path / "cache"
    for attempt in ("read", "from the token cache"):
        out = tmp_path / attempt.replace(" ", "_")
        caplog.clear()
        with caplog.at_level("WARNING", logger="mt_dnn.data_checks"):
            assert train_main(_with(train_args(tiny, out, data=data), "--cache_dir", str(cache))) == 0
        warnings = [r.getMessage() for r in caplog.records if r.name == "mt_dnn.data_checks"]
        assert warnings == expected, attempt
    predictions = (tmp_path / "read" / "predictions" / "epoch1_anli_r1_dev.jsonl").read_text().splitlines()
    assert len(predictions) == 8  # the dev file is clean: no warning about it
