"""Reading labelled examples (sentence pairs or single sentences) from ANLI jsonl, generic jsonl and tsv files.

Every line is validated as it is read, because a bad line found mid-epoch wastes a GPU
hour: a malformed line, a missing field or an unknown label stops with ``FILE:LINE: what
was expected``. A UTF-8 byte-order mark and CRLF line ends are accepted.

TSV files are read exactly or refused, never guessed at: GLUE's files are plain
tab-separated text whose quote characters are text (RTE and SST-2 hold unbalanced quotes;
GLUE's own processors read with no quoting), so a quote is never CSV syntax unless the task
says ``quoting: csv``. A row with more or fewer fields than the header (or, read by column
number, than the first row), a header naming a column twice, a field that looks written by
a CSV writer (a quote-wrapped field with doubled inner quotes) in a plain file, a carriage return inside a line, or a field over
``MAX_FIELD_CHARS`` characters: one line naming FILE:LINE. Classification labels are looked
up in the task's labels; regression labels are finite floats (STS-B's 0-5 scores).

``python -m mt_dnn.data download-anli`` fetches and verifies the official ANLI archive,
``python -m mt_dnn.data download-glue`` GLUE's small tasks (:mod:`mt_dnn.glue_download`).
"""

from __future__ import annotations

import csv
import io
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from mt_dnn.errors import DataError
from mt_dnn.json_input import parse_json, unencodable_at
from mt_dnn.task_def import TaskDef


# Python's csv module refuses longer fields (csv.field_size_limit()); the plain reader keeps
# the same bound so that both quoting modes accept the same files.
MAX_FIELD_CHARS = 131_072
UNLABELLED = -1  # classification; a regression example without a score has NaN


@dataclass(frozen=True)
class Example:
    uid: str
    premise: str
    hypothesis: str | None  # None for a single-sentence task
    label: int | float  # classification: index into the task's labels, -1 when the file has none; regression: the score (NaN when none)
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


def _regression_label(value: object, *, task: TaskDef, where: str) -> float:
    number = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None or not math.isfinite(number):
        raise DataError(f"{where}: label {value!r} is not a finite number (task {task.name} is a regression task)")
    return number


def _label_index(value: object, *, task: TaskDef, where: str) -> int:
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    if task.label_map is not None:
        if text is None or text not in task.label_map:
            raise DataError(f"{where}: label {value!r} is not one of {', '.join(task.label_map)} "
                            f"(label_map of task {task.name})")
        return task.labels.index(task.label_map[text])
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
    hypothesis = None if task.single_sentence else _text_field(record, names["hypothesis"], where=where)
    if task.empty_text == "error":
        for key, text in (("premise", premise), ("hypothesis", hypothesis)):
            if text is not None and not text.strip():
                raise DataError(f"{where}: empty {key} (field {names[key]!r}); expected text (task {task.name} says "
                                "`empty_text: error`; `warn` trains on it with one warning per file)")
    uid = record.get(names["uid"], number)
    null_uid = uid is None
    if null_uid:
        uid = number
    elif isinstance(uid, str) and unencodable_at(uid) is not None:
        raise DataError(f"{where}: field {names['uid']!r} is not valid Unicode (a lone surrogate)")
    label = math.nan if task.is_regression else UNLABELLED
    if names["label"] in record and record[names["label"]] not in (None, ""):
        value = record[names["label"]]
        if task.is_regression:
            label = _regression_label(value, task=task, where=where)
        else:
            label = _label_index(value, task=task, where=where)
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


def _csv_quoted(cell: str) -> bool:
    """A field as a CSV writer quotes one holding a quote: wrapped in quotes, every inner quote doubled.

    A wrapped field alone is legal text (MRPC and STS-B hold quoted sentences); the doubled
    inner quotes are what no plain text has (none of GLUE's files does).
    """
    if len(cell) < 4 or cell[0] != '"' or cell[-1] != '"':
        return False
    inner = cell[1:-1]
    return '""' in inner and '"' not in inner.replace('""', "")


def _tsv_rows(path: Path, *, task: TaskDef) -> list[tuple[int, list[str]]]:
    """(line number, fields) of every non-blank row, read exactly as the task's quoting says."""
    lines = _decoded_lines(path)
    if task.quoting == "csv":
        reader = csv.reader(io.StringIO("\n".join(lines)), delimiter="\t", quoting=csv.QUOTE_MINIMAL, strict=True)
        rows = []
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                raise DataError(f"{path}:{reader.line_num or start}: not readable as CSV-quoted tab-separated text "
                                f"({exc})") from None
            rows.append((start, row))
    else:
        rows = [(number, line.split("\t")) for number, line in enumerate(lines, start=1)]
    kept = []
    for number, row in rows:
        if not row or not any(cell.strip() for cell in row):
            continue
        for cell in row:
            if len(cell) > MAX_FIELD_CHARS:
                raise DataError(f"{path}:{number}: a field of {len(cell):,} characters; expected at most "
                                f"{MAX_FIELD_CHARS:,}")
            if "\r" in cell:
                raise DataError(f"{path}:{number}: a carriage return inside a field; expected lines ending in LF "
                                f"or CRLF and no CR elsewhere")
            if task.quoting == "none" and _csv_quoted(cell):
                raise DataError(f"{path}:{number}: a field quoted as a CSV writer quotes ({cell[:40]!r}); this task "
                                f"reads quotes as text: set `quoting: csv` in task {task.name} if the file is "
                                f"CSV-quoted")
        kept.append((number, row))
    return kept


def _read_tsv(path: Path, *, task: TaskDef, require_label: bool) -> list[Example]:
    rows = _tsv_rows(path, task=task)
    if not rows:
        raise DataError(f"{path}: no examples found")
    by_name = all(not value.isdigit() for value in task.fields.values())
    examples = []
    if by_name:
        header_line, header = rows[0]
        seen: dict[str, int] = {}
        for column, name in enumerate(header, start=1):
            if name in seen:
                raise DataError(f"{path}:{header_line}: the header names column {name!r} twice (columns "
                                f"{seen[name]} and {column}); expected distinct column names")
            seen[name] = column
        body, width = rows[1:], len(header)
        what = f"{width} tab-separated columns (as the header)"
    else:
        body, width = rows, len(rows[0][1])
        needed = max(int(value) for value in task.fields.values() if value.isdigit()) + 1
        if width < needed:
            raise DataError(f"{path}:{rows[0][0]}: {width} tab-separated columns, but task {task.name} reads "
                            f"column {needed - 1} (counting from 0)")
        what = f"{width} tab-separated columns (as line {rows[0][0]})"
    for number, row in body:
        where = f"{path}:{number}"
        if len(row) != width:
            raise DataError(f"{where}: expected {what}, got {len(row)}")
        if by_name:
            record = dict(zip(header, row))
        else:
            record = {str(i): cell for i, cell in enumerate(row)}
        examples.append(_build_example(record, task=task, number=number, where=where, require_label=require_label))
    return examples


def _read_json_lists(path: Path, *, task: TaskDef, key: str | None, require_label: bool) -> list[Example]:
    if key is None:
        raise DataError(f"{path}: task {task.name} reads one list of a JSON object (reader json_lists): "
                        f"give a split of its task definition, which names the list")
    text = "\n".join(_decoded_lines(path))
    document = parse_json(text, where=str(path))
    if not isinstance(document, dict):
        raise DataError(f"{path}: expected a JSON object of lists, got {type(document).__name__}")
    if key not in document:
        raise DataError(f"{path}: no list {key!r} (it holds {', '.join(map(str, document))})")
    records = document[key]
    if not isinstance(records, list):
        raise DataError(f"{path}: {key!r}: expected a list of examples, got {type(records).__name__}")
    examples = []
    for number, record in enumerate(records, start=1):
        where = f"{path}: {key}[{number - 1}]"
        if not isinstance(record, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
        examples.append(_build_example(record, task=task, number=number, where=where, require_label=require_label))
    return examples


def read_examples(*, path: str | Path, task: TaskDef, require_label: bool = True,
                  key: str | None = None) -> list[Example]:
    """All examples of one file, in file order, validated against the task's labels.

    ``key``: the list to read from a ``json_lists`` file (the split's ``key``)."""
    path = Path(path)
    if task.reader == "json_lists":
        examples = _read_json_lists(path, task=task, key=key, require_label=require_label)
    elif task.reader == "tsv":
        examples = _read_tsv(path, task=task, require_label=require_label)
    else:
        examples = _read_jsonl(path, task=task, require_label=require_label)
    if not examples:
        raise DataError(f"{path}: no examples found")
    return examples


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = ("download-anli", "verify-anli", "download-glue", "verify-glue")
    if not argv or argv[0] not in commands:
        print(f"usage: python -m mt_dnn.data {{{','.join(commands)}}} [--data_dir DIR] ...", file=sys.stderr)
        return 2
    if argv[0].endswith("-glue"):
        from mt_dnn import glue_download

        return glue_download.main(argv)
    from mt_dnn import anli_download

    return anli_download.main(argv)


if __name__ == "__main__":
    sys.exit(main())
