"""Task definitions: the shipped ANLI file, and every validation error names the file and key."""

from __future__ import annotations

import textwrap

import pytest

from mt_dnn.errors import ConfigError
from mt_dnn.task_def import load_task_defs
from conftest import REPO_ROOT

ANLI_YML = REPO_ROOT / "task_defs" / "anli.yml"

GOOD = """
nli:
  data_format: premise_hypothesis
  reader: jsonl
  labels: [entailment, neutral, contradiction]
  loss: cross_entropy
  adv_loss: symmetric_kl
  metric: accuracy
  splits:
    train: {path: train.jsonl, role: train}
"""


def _write(tmp_path, text, name="t.yml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_shipped_anli_definition():
    task = load_task_defs(paths=[ANLI_YML])["anli"]
    assert task.labels == ("e", "n", "c") and task.n_class == 3
    assert task.loss == "cross_entropy" and task.adv_loss == "symmetric_kl" and task.metric == "accuracy"
    assert task.splits_with_role("train") == ["r1_train", "r2_train", "r3_train"]
    assert task.splits_with_role("dev") == ["r1_dev", "r2_dev", "r3_dev"]
    assert task.splits["r3_test"].path == "R3/test.jsonl"
    assert task.fields["premise"] == "context"


def test_several_files_and_the_example_mnli():
    tasks = load_task_defs(paths=[ANLI_YML, REPO_ROOT / "task_defs" / "mnli_example.yml"])
    assert set(tasks) == {"anli", "mnli"}


@pytest.mark.parametrize(
    "mutation, expected",
    [
        (lambda t: t.replace("  metric: accuracy\n", "  metric: accuracy\n  colour: red\n"), "nli.colour: unknown key"),
        (lambda t: t.replace("  loss: cross_entropy\n", ""), "nli.loss: missing required key"),
        (lambda t: t.replace("loss: cross_entropy", "loss: hinge"), "nli.loss: expected one of cross_entropy"),
        (lambda t: t.replace("labels: [entailment, neutral, contradiction]", "labels: entailment"),
         "nli.labels: expected a list"),
        (lambda t: t.replace("  metric: accuracy\n", "  metric: accuracy\n  n_class: 2\n"),
         "nli.n_class: is 2 but 3 labels"),
        (lambda t: t.replace("role: train", "role: training"), "nli.splits.train.role: expected one of"),
        (lambda t: t.replace("{path: train.jsonl, role: train}", "{role: train}"), "nli.splits.train.path: missing"),
        (lambda t: t.replace("path: train.jsonl", "path: ../secret.jsonl"), "expected a path inside the data folder"),
        (lambda t: t.replace("  metric: accuracy\n", "  metric: accuracy\n  dropout_p: yes\n"),
         "nli.dropout_p: expected a number"),
        (lambda t: t + "  reader: tsv\n", "duplicate key 'reader'"),
        (lambda t: t.replace("splits:", "splits: [\n"), "invalid YAML"),
    ],
)
def test_errors_name_file_and_key(tmp_path, mutation, expected):
    path = _write(tmp_path, mutation(GOOD))
    with pytest.raises(ConfigError) as info:
        load_task_defs(paths=[path])
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert expected in message, message
    assert "\n" not in message


def test_duplicate_task_across_files(tmp_path):
    first, second = _write(tmp_path, GOOD, "a.yml"), _write(tmp_path, GOOD, "b.yml")
    with pytest.raises(ConfigError, match=r"b\.yml: nli: duplicate task name \(already defined in .*a\.yml\)"):
        load_task_defs(paths=[first, second])


def test_missing_file_and_empty_file(tmp_path):
    with pytest.raises(ConfigError, match="task definition file not found"):
        load_task_defs(paths=[tmp_path / "nope.yml"])
    with pytest.raises(ConfigError, match="expected a mapping of task names"):
        load_task_defs(paths=[_write(tmp_path, "")])
