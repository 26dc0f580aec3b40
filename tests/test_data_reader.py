"""Readers: the official ANLI jsonl, generic jsonl/tsv, and one-line errors with FILE:LINE."""

from __future__ import annotations

import json

import pytest

from mt_dnn.data import read_examples
from mt_dnn.errors import DataError
from mt_dnn.task_def import load_task_defs
from conftest import REPO_ROOT

TASKS = load_task_defs(paths=[REPO_ROOT / "task_defs" / "anli.yml", REPO_ROOT / "task_defs" / "mnli_example.yml"])
ANLI = TASKS["anli"]


def _line(**overrides):
    record = {"uid": "u1", "context": "A man drives a car.", "hypothesis": "A person drives.", "label": "e"}
    record.update(overrides)
    return json.dumps(record)


def test_real_anli_files(anli_dir):
    counts = {}
    for r in ("R1", "R2", "R3"):
        for split in ("dev", "test"):
            examples = read_examples(path=anli_dir / r / f"{split}.jsonl", task=ANLI)
            counts[f"{r}/{split}"] = len(examples)
            assert {e.label for e in examples} == {0, 1, 2}
            assert all(e.premise and e.hypothesis and e.uid for e in examples)
    assert counts == {"R1/dev": 1000, "R1/test": 1000, "R2/dev": 1000, "R2/test": 1000,
                      "R3/dev": 1200, "R3/test": 1200}


def test_label_order_follows_task_definition(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(_line(label=x, uid=x) for x in "cne") + "\n", encoding="utf-8")
    assert [e.label for e in read_examples(path=path, task=ANLI)] == [2, 1, 0]


def test_bom_and_crlf_are_accepted(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (_line() + "\r\n" + _line(uid="u2") + "\r\n").encode("utf-8"))
    examples = read_examples(path=path, task=ANLI)
    assert [e.uid for e in examples] == ["u1", "u2"] and examples[0].hypothesis == "A person drives."


@pytest.mark.parametrize(
    "content, expected",
    [
        (_line() + "\n{not json\n", ":2: malformed JSON"),
        (_line() + "\n" + json.dumps({"uid": "x", "context": "p", "label": "e"}) + "\n", ":2: missing field 'hypothesis'"),
        (_line(label="entailment") + "\n", ":1: label 'entailment' is not one of e, n, c"),
        (_line(hypothesis=3) + "\n", ":1: field 'hypothesis' must be a string"),
        ("[1, 2]\n", ":1: expected a JSON object"),
        ("\n\n", ": empty file"),
    ],
)
def test_errors_name_file_and_line(tmp_path, content, expected):
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_examples(path=path, task=ANLI)
    assert str(info.value).startswith(str(path)) and expected in str(info.value), str(info.value)


def test_undecodable_bytes_name_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes((_line() + "\n").encode() + b'{"uid": "\xff\xfe"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: not valid UTF-8"):
        read_examples(path=path, task=ANLI)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_examples(path=tmp_path / "none.jsonl", task=ANLI)


def test_generic_jsonl_reader_with_field_names(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"idx": 7, "premise": "p", "hypothesis": "h", "label": "neutral"}) + "\n")
    (example,) = read_examples(path=path, task=TASKS["mnli"])
    assert (example.uid, example.premise, example.hypothesis, example.label) == ("7", "p", "h", 1)


def test_tsv_reader(tmp_path):
    import dataclasses

    task = dataclasses.replace(TASKS["mnli"], reader="tsv", fields={"premise": "premise", "hypothesis": "hypothesis",
                                                                   "label": "label", "uid": "id"})
    path = tmp_path / "m.tsv"
    path.write_text("id\tpremise\thypothesis\tlabel\n1\tA dog.\tAn animal.\tentailment\n2\tx\ty\n")
    with pytest.raises(DataError, match=r"m\.tsv:3: expected 4 tab-separated columns \(as the header\), got 3"):
        read_examples(path=path, task=task)
    path.write_text("id\tpremise\thypothesis\tlabel\n1\tA dog.\tAn animal.\tentailment\n")
    assert read_examples(path=path, task=task)[0].premise == "A dog."


def test_unlabelled_input_for_prediction(tmp_path):
    path = tmp_path / "u.jsonl"
    path.write_text(json.dumps({"context": "p", "hypothesis": "h"}) + "\n")
    with pytest.raises(DataError, match="missing field 'label'"):
        read_examples(path=path, task=ANLI)
    assert read_examples(path=path, task=ANLI, require_label=False)[0].label == -1
