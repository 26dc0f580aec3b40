"""Parsing JSON from files a user gave us, with every failure as one line naming file and line.

``json.loads`` fails in more ways than ``JSONDecodeError``: a deeply nested value raises
``RecursionError``, an integer of thousands of digits ``ValueError`` (Python's limit on
int-from-string conversion), and a ``\\ud800`` escape yields a string no encoder accepts.
Every reader of a user's JSON (data lines, run_config.json, checkpoint manifests, model
configs) goes through here, so none of those escapes as a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mt_dnn.errors import DataError


def parse_json(text: str, *, where: str) -> Any:
    """``json.loads(text)``; DataError "WHERE: what is wrong" on any failure."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        if "\n" in text.rstrip():  # a whole file: name the line, as for data lines
            where = f"{where}:{exc.lineno}"
        raise DataError(f"{where}: malformed JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise DataError(f"{where}: JSON nested too deeply to read") from None
    except ValueError as exc:  # "Exceeds the limit (4300 digits) for integer string conversion"
        detail = str(exc).split(";")[0]
        raise DataError(f"{where}: unreadable JSON value ({detail})") from None


def unencodable_at(text: str) -> int | None:
    """Index of the first character that is not valid Unicode (a lone surrogate), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def read_json_object(path: Path, *, what: str) -> dict:
    """A JSON object from ``path``; DataError naming the file (and line) otherwise."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: {what} is missing") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: {what} is not valid UTF-8 (byte {exc.start + 1})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read {what} ({exc.strerror})") from None
    if not text.strip():
        raise DataError(f"{path}: {what} is empty")
    value = parse_json(text, where=str(path))
    if not isinstance(value, dict):
        raise DataError(f"{path}: {what} must be a JSON object, got {type(value).__name__}")
    return value
