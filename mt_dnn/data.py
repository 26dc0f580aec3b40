"""Reading labelled premise/hypothesis examples from ANLI jsonl, generic jsonl and tsv files.

Every line is validated as it is read, because a bad line found mid-epoch wastes a GPU
hour: a malformed line, a missing field or an unknown label stops with ``FILE:LINE: what
was expected``. A UTF-8 byte-order mark and CRLF line ends are accepted.

``python -m mt_dnn.data download-anli`` fetches and verifies the official ANLI archive.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

from mt_dnn.errors import DataError
from mt_dnn.json_input import parse_json, unencodable_at
from mt_dnn.task_def import TaskDef


@dataclass(frozen=True)
class Example:
    uid: str
    premise: str
    hypothesis: str
    label: int  # index into the task's labels; -1 when the file carries no label
    line: int = 0  # where it is in its file (for warnings)
    null_uid: bool = False  # the uid field was null: the line number stands in


def _decoded_lines(path: Path) -> list[str]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    lines = raw.split(b"\n")
    decoded = []
    for number, line in enumerate(lines, start=1):
        try:
            decoded.append(line.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}:{number}: not valid UTF-8 (byte {exc.start + 1} of the line)") from None
    if not any(line.strip() for line in decoded):
        raise DataError(f"{path}: empty file, expected one example per line")
    return decoded


def _label_index(value: object, *, task: TaskDef, where: str) -> int:
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    if text is None or text not in task.labels:
        raise DataError(f"{where}: label {value!r} is not one of {', '.join(task.labels)} (task {task.name})")
    return task.labels.index(text)


def _text_field(record: dict, key: str, *, where: str) -> str:
    if key not in record:
        raise DataError(f"{where}: missing field {key!r}")
    value = record[key]
    if not isinstance(value, str):
        raise DataError(f"{where}: field {key!r} must be a string, got {type(value).__name__}")
    bad = unencodable_at(value)
    if bad is not None:  # a "\ud800" escape: no tokenizer or encoder accepts it
        raise DataError(f"{where}: field {key!r} is not valid Unicode (lone surrogate "
                        f"{value[bad].encode('unicode_escape').decode()} at character {bad + 1})")
    return value


def _build_example(record: dict, *, task: TaskDef, number: int, where: str, require_label: bool) -> Example:
    names = task.fields
    premise = _text_field(record, names["premise"], where=where)
    hypothesis = _text_field(record, names["hypothesis"], where=where)
    uid = record.get(names["uid"], number)
    null_uid = uid is None
    if null_uid:
        uid = number
    elif isinstance(uid, str) and unencodable_at(uid) is not None:
        raise DataError(f"{where}: field {names['uid']!r} is not valid Unicode (a lone surrogate)")
    label = -1
    if names["label"] in record and record[names["label"]] not in (None, ""):
        label = _label_index(record[names["label"]], task=task, where=where)
    elif require_label:
        raise DataError(f"{where}: missing field {names['label']!r}")
    return Example(uid=str(uid), premise=premise, hypothesis=hypothesis, label=label, line=number, null_uid=null_uid)


def _read_jsonl(path: Path, *, task: TaskDef, require_label: bool) -> list[Example]:
    examples = []
    for number, line in enumerate(_decoded_lines(path), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        record = parse_json(line, where=where)
        if not isinstance(record, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
        examples.append(_build_example(record, task=task, number=number, where=where, require_label=require_label))
    return examples


def _read_tsv(path: Path, *, task: TaskDef, require_label: bool) -> list[Example]:
    lines = _decoded_lines(path)
    rows = list(csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE))
    header = rows[0]
    by_name = all(not value.isdigit() for value in task.fields.values())
    examples = []
    for number, row in enumerate(rows[1:] if by_name else rows, start=2 if by_name else 1):
        if not row or not any(cell.strip() for cell in row):
            continue
        where = f"{path}:{number}"
        if by_name:
            if len(row) != len(header):
                raise DataError(f"{where}: expected {len(header)} tab-separated columns, got {len(row)}")
            record = dict(zip(header, row))
        else:
            record = {str(i): cell for i, cell in enumerate(row)}
        examples.append(_build_example(record, task=task, number=number, where=where, require_label=require_label))
    return examples


def read_examples(*, path: str | Path, task: TaskDef, require_label: bool = True) -> list[Example]:
    """All examples of one file, in file order, validated against the task's labels."""
    path = Path(path)
    if task.reader == "tsv":
        examples = _read_tsv(path, task=task, require_label=require_label)
    else:
        examples = _read_jsonl(path, task=task, require_label=require_label)
    if not examples:
        raise DataError(f"{path}: no examples found")
    return examples


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = ("download-anli", "verify-anli")
    if not argv or argv[0] not in commands:
        print(f"usage: python -m mt_dnn.data {{{','.join(commands)}}} [--data_dir DIR] ...", file=sys.stderr)
        return 2
    from mt_dnn import anli_download

    return anli_download.main(argv)


if __name__ == "__main__":
    sys.exit(main())
