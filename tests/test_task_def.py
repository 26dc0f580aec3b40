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


REGRESSION = """
sts:
  data_format: premise_hypothesis
  reader: tsv
  task_type: regression
  fields: {premise: sentence1, hypothesis: sentence2, label: score}
  loss: mse
  adv_loss: mse
  metrics: [pearson, spearman]
  splits:
    train: {path: train.tsv, role: train}
"""

SINGLE = """
cola:
  data_format: premise_only
  reader: tsv
  fields: {premise: 3, label: 1}
  labels: [0, 1]
  loss: cross_entropy
  adv_loss: symmetric_kl
  metrics: [mcc, accuracy]
  splits:
    train: {path: train.tsv, role: train}
"""


def test_task_kinds_regression_and_single_sentence(tmp_path):
    sts = load_task_defs(paths=[_write(tmp_path, REGRESSION, "r.yml")])["sts"]
    assert sts.is_regression and sts.n_class == 1 and sts.labels == ()
    assert sts.metrics == ("pearson", "spearman") and sts.metric == "pearson"
    assert sts.loss == "mse" and sts.adv_loss == "mse"
    cola = load_task_defs(paths=[_write(tmp_path, SINGLE, "s.yml")])["cola"]
    assert cola.single_sentence and not cola.is_regression
    assert cola.labels == ("0", "1") and cola.n_class == 2  # YAML integers read as the files' text
    assert "hypothesis" not in cola.fields and cola.metric == "mcc"
    three = _write(tmp_path, SINGLE.replace("labels: [0, 1]", "labels: [0, 1, 2]"), "three.yml")
    assert load_task_defs(paths=[three])["cola"].n_class == 3  # MCC and accuracy take any number of classes
    # the old single-metric key still reads, as a one-item list
    assert load_task_defs(paths=[_write(tmp_path, GOOD)])["nli"].metrics == ("accuracy",)


@pytest.mark.parametrize(
    "text, mutation, expected",
    [
        (REGRESSION, lambda t: t.replace("  loss: mse\n", "  loss: mse\n  labels: [a, b]\n"),
         "sts.labels: a regression task takes float labels, not a labels list"),
        (REGRESSION, lambda t: t.replace("  loss: mse\n", "  loss: mse\n  n_class: 2\n"),
         "sts.n_class: a regression task has one output, got 2"),
        (REGRESSION, lambda t: t.replace("loss: mse\n  adv", "loss: cross_entropy\n  adv"),
         "sts.loss: a regression task takes mse"),
        (REGRESSION, lambda t: t.replace("adv_loss: mse", "adv_loss: symmetric_kl"),
         "sts.adv_loss: a regression task takes mse"),
        (REGRESSION, lambda t: t.replace("[pearson, spearman]", "[accuracy]"),
         "sts.metrics: accuracy does not fit a regression task"),
        (REGRESSION, lambda t: t.replace("[pearson, spearman]", "[pearson, bleu]"),
         "sts.metrics: expected one of accuracy, f1, mcc, auc, pearson, spearman, got 'bleu'"),
        (REGRESSION, lambda t: t.replace("[pearson, spearman]", "[]"), "sts.metrics: expected at least one metric"),
        (REGRESSION, lambda t: t.replace("[pearson, spearman]", "[pearson, pearson]"), "metrics must be distinct"),
        (REGRESSION, lambda t: t.replace("  metrics: [pearson, spearman]\n", ""), "sts.metrics: missing required key"),
        (REGRESSION, lambda t: t.replace("task_type: regression", "task_type: ranking"),
         "sts.task_type: expected one of classification, regression"),
        (SINGLE, lambda t: t.replace("[mcc, accuracy]", "[pearson]"),
         "cola.metrics: pearson does not fit a classification task"),
        (SINGLE, lambda t: t.replace("[mcc, accuracy]", "[f1]").replace("labels: [0, 1]", "labels: [a, b, c]"),
         "cola.metrics: f1 is of the positive class of a two-label task; this task has 3 labels"),
        (SINGLE, lambda t: t.replace("{premise: 3, label: 1}", "{premise: 3, hypothesis: 2, label: 1}"),
         "cola.fields.hypothesis: unknown key for data_format premise_only"),
        (SINGLE, lambda t: t.replace("{premise: 3, label: 1}", "{premise: sentence, label: 1}"),
         "cola.fields: a tsv file is read either by column names"),
        (SINGLE, lambda t: t.replace("  loss: cross", "  quoting: excel\n  loss: cross"),
         "cola.quoting: expected one of none, csv"),
        (SINGLE, lambda t: t.replace("  loss: cross", "  empty_text: skip\n  loss: cross"),
         "cola.empty_text: expected one of warn, error"),
        (SINGLE, lambda t: t.replace("  metrics: [mcc, accuracy]\n", "  metrics: [mcc]\n  metric: mcc\n"),
         "cola.metric: give either metric (one name) or metrics (a list), not both"),
        (SINGLE, lambda t: t.replace("  labels: [0, 1]\n", ""), "cola.labels: missing required key"),
        (GOOD, lambda t: t.replace("  metric: accuracy\n", "  metric: accuracy\n  quoting: csv\n"),
         "nli.quoting: applies to the tsv reader only"),
    ],
)
def test_kind_errors_name_file_and_key(tmp_path, text, mutation, expected):
    path = _write(tmp_path, mutation(text))
    with pytest.raises(ConfigError) as info:
        load_task_defs(paths=[path])
    message = str(info.value)
    assert message.startswith(str(path)) and expected in message and "\n" not in message, message


ADV = """
rte:
  data_format: premise_hypothesis
  reader: json_lists
  labels: [not_entailment, entailment]
  label_map: {0: entailment, 1: not_entailment}
  loss: cross_entropy
  adv_loss: symmetric_kl
  metrics: [accuracy]
  splits:
    dev: {path: dev.json, role: dev, key: rte}
"""


def test_label_map_and_json_lists(tmp_path):
    task = load_task_defs(paths=[_write(tmp_path, ADV)])["rte"]
    assert task.label_map == {"0": "entailment", "1": "not_entailment"} and task.splits["dev"].key == "rte"


@pytest.mark.parametrize("mutation, expected", [
    (lambda t: t.replace("1: not_entailment}", "1: neutral}"), "rte.label_map.1: 'neutral' is not one of"),
    (lambda t: t.replace("1: not_entailment}", "1: entailment}"), "rte.label_map: expected each of"),
    (lambda t: t.replace(", key: rte}", "}"), "rte.splits.dev.key: missing required key"),
    (lambda t: t.replace("reader: json_lists", "reader: jsonl"), "rte.splits.dev.key: unknown key"),
])
def test_label_map_errors(tmp_path, mutation, expected):
    path = _write(tmp_path, mutation(ADV))
    with pytest.raises(ConfigError) as info:
        load_task_defs(paths=[path])
    assert str(info.value).startswith(str(path)) and expected in str(info.value), str(info.value)
