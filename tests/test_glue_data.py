"""GLUE's files read exactly as shipped (task_defs/glue.yml), and TSV input read exactly or refused.

The real-file tests need $GLUE_DIR (CI sets it to ../shared/data/glue); the figures are those
of that folder's PROVENANCE.md. The strictness tests write their own small files.
"""

from __future__ import annotations

import statistics
from collections import Counter

import pytest

from mt_dnn.data import MAX_FIELD_CHARS, read_examples
from mt_dnn.errors import DataError
from mt_dnn.task_def import load_task_defs
from conftest import REPO_ROOT

GLUE = load_task_defs(paths=[REPO_ROOT / "task_defs" / "glue.yml"])

# PROVENANCE.md: examples and label distributions
EXPECTED = {
    ("rte", "train"): {"entailment": 1249, "not_entailment": 1241},
    ("rte", "dev"): {"entailment": 146, "not_entailment": 131},
    ("cola", "train"): {"1": 6023, "0": 2528},
    ("cola", "dev"): {"1": 721, "0": 322},
    ("mrpc", "train"): {"1": 2474, "0": 1194},
    ("mrpc", "dev"): {"1": 279, "0": 129},
    ("sst2", "train"): {"1": 37569, "0": 29780},
    ("sst2", "dev"): {"1": 444, "0": 428},
}


def _read(glue_dir, task, split):
    return read_examples(path=glue_dir / GLUE[task].splits[split].path, task=GLUE[task])


@pytest.mark.parametrize("task, split", sorted(EXPECTED))
def test_classification_counts_and_labels(glue_dir, task, split):
    examples = _read(glue_dir, task, split)
    assert dict(Counter(GLUE[task].labels[e.label] for e in examples)) == EXPECTED[(task, split)]
    assert all(e.premise.strip() for e in examples)
    if GLUE[task].single_sentence:
        assert all(e.hypothesis is None for e in examples)
    else:
        assert all(e.hypothesis.strip() for e in examples)


@pytest.mark.parametrize("split, count, mean", [("train", 5749, 2.7010), ("dev", 1500, 2.3639)])
def test_stsb_scores_are_floats(glue_dir, split, count, mean):
    examples = _read(glue_dir, "stsb", split)
    scores = [e.label for e in examples]
    assert len(scores) == count and all(isinstance(s, float) for s in scores)
    assert min(scores) == 0.0 and max(scores) == 5.0
    assert round(statistics.mean(scores), 4) == mean
    assert examples[0].uid == "0" and examples[0].label == 5.0  # "5.000", the first row


def test_cola_has_no_header_and_mrpc_its_bom(glue_dir):
    cola = _read(glue_dir, "cola", "dev")
    first = (glue_dir / "CoLA" / "dev.tsv").read_text(encoding="utf-8").split("\n")[0].split("\t")
    assert cola[0].premise == first[3] and cola[0].line == 1  # line 1 is data, not a header
    assert not (glue_dir / "CoLA" / "dev.tsv").read_bytes().endswith(b"\n")  # and the last line counts too
    assert len(cola) == 1043
    assert (glue_dir / "MRPC" / "dev.tsv").read_bytes().startswith(b"\xef\xbb\xbfQuality\t")
    mrpc = _read(glue_dir, "mrpc", "dev")
    assert mrpc[0].premise.startswith("He said the foodservice pie business")
    assert mrpc[0].hypothesis.startswith('" The foodservice pie business')  # a leading quote is text


# SST-2 holds no double quote at all (its quotes are tokenised as `` and ''): its counts above are the check.
@pytest.mark.parametrize("task, folder", [("rte", "RTE"), ("stsb", "STS-B"), ("mrpc", "MRPC")])
def test_unbalanced_quotes_are_text(glue_dir, task, folder):
    raw = (glue_dir / folder / "train.tsv").read_text(encoding="utf-8-sig").split("\n")
    odd = [number for number, line in enumerate(raw, start=1) if line.count('"') % 2]
    assert odd, f"{folder} train holds no line with an unbalanced quote"
    by_line = {e.line: e for e in _read(glue_dir, task, "train")}
    column = {"rte": (1, 2), "stsb": (7, 8), "mrpc": (3, 4)}[task]
    for number in odd:
        cells = raw[number - 1].split("\t")
        assert by_line[number].premise == cells[column[0]]
        assert by_line[number].hypothesis == cells[column[1]]


def _task(**changes):
    import dataclasses

    return dataclasses.replace(GLUE["rte"], **changes)


def _refused(tmp_path, content: bytes, task=None, name="d.tsv") -> str:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        read_examples(path=path, task=task or GLUE["rte"])
    message = str(info.value)
    assert message.startswith(f"{path}:") and "\n" not in message, message
    return message


HEADER = b"index\tsentence1\tsentence2\tlabel\n"


def test_duplicate_header_names_are_refused(tmp_path):
    message = _refused(tmp_path, b"index\tsentence1\tsentence2\tlabel\tlabel\n0\ta\tb\tentailment\tnot_entailment\n")
    assert ":1: the header names column 'label' twice (columns 4 and 5)" in message


def test_rows_with_more_or_fewer_fields_are_refused(tmp_path):
    assert ":3: expected 4 tab-separated columns (as the header), got 5" in _refused(
        tmp_path, HEADER + b"0\ta\tb\tentailment\n1\ta\tb\tc\tentailment\n")
    assert ":2: expected 4 tab-separated columns (as the header), got 3" in _refused(tmp_path, HEADER + b"0\ta\tb\n")
    # read by column number (CoLA): an extra tab in the last field would cut the text short
    cola = GLUE["cola"]
    assert ":2: expected 4 tab-separated columns (as line 1), got 5" in _refused(
        tmp_path, b"s\t1\t\tA sentence.\ns\t0\t*\tHalf\tof it.\n", task=cola)
    assert "3 tab-separated columns, but task cola reads column 3" in _refused(tmp_path, b"s\t1\tA.\n", task=cola)


def test_csv_quoting_in_a_plain_tsv_is_refused_or_read_when_declared(tmp_path):
    content = HEADER + b'0\t"A ""b"" c"\tplain\tentailment\n'
    message = _refused(tmp_path, content)
    assert ":2: a field quoted as a CSV writer quotes" in message and "set `quoting: csv` in task rte" in message
    path = tmp_path / "q.tsv"
    path.write_bytes(content)
    (example,) = read_examples(path=path, task=_task(quoting="csv"))
    assert example.premise == 'A "b" c' and example.hypothesis == "plain"


def test_a_lone_carriage_return_and_an_overlong_field_are_one_line(tmp_path):
    assert ":2: a carriage return inside a field" in _refused(tmp_path, HEADER + b"0\ta\rb\tc\tentailment\n")
    big = b"x" * (MAX_FIELD_CHARS + 1)
    assert f":3: a field of {MAX_FIELD_CHARS + 1:,} characters; expected at most {MAX_FIELD_CHARS:,}" in _refused(
        tmp_path, HEADER + b"0\ta\tb\tentailment\n1\t" + big + b"\tb\tentailment\n")
    # the same in the CSV-quoting mode: Python's csv module's own errors become one line too
    assert ":2: " in _refused(tmp_path, HEADER + b'0\t"a\tb\tentailment\n', task=_task(quoting="csv"))
    assert ":2: not readable as CSV-quoted tab-separated text (field larger than field limit" in _refused(
        tmp_path, HEADER + b"0\t" + big + b"\tb\tentailment\n", task=_task(quoting="csv"))


@pytest.mark.parametrize("score, expected", [("high", "label 'high' is not a finite number"),
                                             ("nan", "label 'nan' is not a finite number")])
def test_regression_label_that_is_not_a_number(tmp_path, score, expected):
    header = b"index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    row = f"0\tg\tf\ty\t0\tn\tn\tA.\tB.\t{score}\n".encode()
    assert f":2: {expected} (task stsb is a regression task)" in _refused(tmp_path, header + row, task=GLUE["stsb"])


def test_classification_label_not_in_the_list(tmp_path):
    assert ":1: label '7' is not one of 0, 1 (task cola)" in _refused(tmp_path, b"s\t7\t\tA.\n", task=GLUE["cola"])


ADVGLUE = load_task_defs(paths=[REPO_ROOT / "task_defs" / "advglue.yml"])


def test_advglue_tasks_share_glues_heads():
    for name, task in ADVGLUE.items():
        assert (task.labels, task.task_type, task.data_format) == (
            GLUE[name].labels, GLUE[name].task_type, GLUE[name].data_format), name


# AdvGLUE's PROVENANCE.md: counts; label names of the integers (0 entailment for RTE/QNLI/MNLI)
ADV_EXPECTED = {
    ("sst2", "dev"): {"1": 76, "0": 72},
    ("qqp", "dev"): {"0": 46, "1": 32},
    ("mnli", "matched_dev"): {"contradiction": 50, "neutral": 39, "entailment": 32},
    ("mnli", "mismatched_dev"): {"entailment": 60, "contradiction": 57, "neutral": 45},
    ("qnli", "dev"): {"entailment": 74, "not_entailment": 74},
    ("rte", "dev"): {"entailment": 35, "not_entailment": 46},
}


@pytest.mark.parametrize("task, split", sorted(ADV_EXPECTED))
def test_advglue_counts_and_label_names(advglue_dir, task, split):
    definition = ADVGLUE[task]
    examples = read_examples(path=advglue_dir / "dev.json", task=definition, key=definition.splits[split].key)
    assert dict(Counter(definition.labels[e.label] for e in examples)) == ADV_EXPECTED[(task, split)]


def test_advglue_rte_integers_are_mapped_by_name(advglue_dir):
    import json

    raw = json.loads((advglue_dir / "dev.json").read_text(encoding="utf-8"))["rte"]
    examples = read_examples(path=advglue_dir / "dev.json", task=ADVGLUE["rte"], key="rte")
    for record, example in zip(raw, examples):  # 0 = entailment, which GLUE's RTE head has at index 1
        assert ADVGLUE["rte"].labels[example.label] == ("entailment" if record["label"] == 0 else "not_entailment")
        assert example.premise == record["sentence1"] and example.uid == str(record["idx"])


def test_advglue_label_out_of_range_is_one_line(tmp_path):
    path = tmp_path / "dev.json"
    path.write_text('{"rte": [{"idx": 0, "sentence1": "a", "sentence2": "b", "label": 2}]}', encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_examples(path=path, task=ADVGLUE["rte"], key="rte")
    assert str(info.value) == f"{path}: rte[0]: label 2 is not one of 0, 1 (label_map of task rte)"
    with pytest.raises(DataError, match=r"no list 'qnli' \(it holds rte\)"):
        read_examples(path=path, task=ADVGLUE["qnli"], key="qnli")


@pytest.mark.parametrize("case, line, expected", [
    ("extra tab in the last field", b"gj04\t1\t\tThe sailors rode\tthe breeze.", "expected 4 tab-separated columns (as line 1), got 5"),
    ("lone carriage return", b"gj04\t1\t\tThe sailors\rrode the breeze.", "a carriage return inside a field"),
    ("label not in the list", b"gj04\t7\t\tThe sailors rode the breeze.", "label '7' is not one of 0, 1 (task cola)"),
])
def test_train_py_refuses_a_misread_glue_line_in_one_line(tmp_path, glue_dir, capsys, case, line, expected):
    from mt_dnn.cli_train import main as train_main
    from tiny_models import tiny_bert
    from train_runs import fails_cleanly

    data = tmp_path / "glue"
    (data / "CoLA").mkdir(parents=True)
    lines = (glue_dir / "CoLA" / "train.tsv").read_bytes().split(b"\n")[:20]
    lines[11] = line
    (data / "CoLA" / "train.tsv").write_bytes(b"\n".join(lines) + b"\n")
    (data / "CoLA" / "dev.tsv").write_bytes(b"\n".join(lines[:8]))
    argv = ["--task_def", str(REPO_ROOT / "task_defs" / "glue.yml"), "--train_datasets", "cola",
            "--data_dir", str(data), "--model", str(tiny_bert(tmp_path / "bert")), "--cache_dir",
            str(tmp_path / "cache"), "--epochs", "1", "--batch_size", "4", "--max_seq_len", "32", "--no_progress",
            "--output_dir", str(tmp_path / "run")]
    fails_cleanly(argv, capsys, starts=f"{data / 'CoLA' / 'train.tsv'}:12: {expected}", main=train_main)
    assert not (tmp_path / "run").exists()


def test_an_empty_sentence_is_one_line_where_the_task_says_error(tmp_path, caplog):
    assert GLUE["rte"].empty_text == "error"
    message = _refused(tmp_path, HEADER + b"0\ta\tb\tentailment\n1\t \tb\tentailment\n")
    assert ":3: empty premise (field 'sentence1'); expected text" in message
    assert ":2: empty hypothesis (field 'sentence2')" in _refused(tmp_path, HEADER + b"0\ta\t\tentailment\n")
    # the default (ANLI, SNLI: released training sets hold a few) reads it; data_checks warns once per file
    path = tmp_path / "warn.tsv"
    path.write_bytes(HEADER + b"0\ta\tb\tentailment\n1\t \tb\tentailment\n")
    examples = read_examples(path=path, task=_task(empty_text="warn"))
    assert [e.premise for e in examples] == ["a", " "]
