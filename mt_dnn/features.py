"""Tokenised splits: premise/hypothesis pairs (or single sentences) to token ids, cached on disk.

Labels are int64 class indices (-1: none) for classification and float32 scores (NaN: none)
for regression; ``labelled_mask`` tells which examples carry one.

Tokenising 160k ANLI pairs takes minutes; the result is cached as a non-pickle ``.npz``
keyed by the file's content, the tokenizer and every setting that changes the ids, so a
stale cache can never be used and an unreadable one is rebuilt (with a warning). The data
warnings of :mod:`mt_dnn.data_checks` are stored with it and repeated on every cache hit.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mt_dnn.data import Example, read_examples
from mt_dnn.data_checks import example_notes, log_notes, special_only_notes
from mt_dnn.errors import DataError
from mt_dnn.run_files import atomic_write_bytes
from mt_dnn.task_def import TaskDef

logger = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 3  # 2: the data warnings (data_checks) are stored with the arrays; 3: task kinds
_ARRAYS = ("key", "input_ids", "offsets", "token_type_ids", "labels", "uids", "notes")


@dataclass
class TokenizedSplit:
    """One split's examples as flat arrays (ids of all examples concatenated + offsets)."""

    task: str
    split: str
    input_ids: np.ndarray  # int32 [total tokens]
    token_type_ids: np.ndarray  # int8 [total tokens]
    offsets: np.ndarray  # int64 [n + 1]
    labels: np.ndarray  # int64 [n], -1 = unlabelled; float32 for regression, NaN = unlabelled
    uids: np.ndarray  # str [n]

    def __len__(self) -> int:
        return len(self.labels)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def example(self, index: int) -> dict[str, np.ndarray | int]:
        start, end = self.offsets[index], self.offsets[index + 1]
        return {
            "input_ids": self.input_ids[start:end],
            "token_type_ids": self.token_type_ids[start:end],
            "label": self.labels[index].item(),
        }

    def take(self, count: int) -> "TokenizedSplit":
        """The first ``count`` examples (for smoke runs with --max_train_examples)."""
        if count >= len(self):
            return self
        end = self.offsets[count]
        return TokenizedSplit(
            task=self.task, split=self.split, input_ids=self.input_ids[:end],
            token_type_ids=self.token_type_ids[:end], offsets=self.offsets[: count + 1],
            labels=self.labels[:count], uids=self.uids[:count],
        )


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of everything in the tokenizer that decides the ids it produces."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # Truncation and padding settings live in the backend too and change with every call.
        spec = json.loads(backend.to_str())
        spec.pop("truncation", None)
        spec.pop("padding", None)
        text = json.dumps(spec, sort_keys=True)
    else:  # a slow tokenizer: its vocabulary and special tokens decide the ids
        text = json.dumps([sorted(tokenizer.get_vocab().items()), tokenizer.all_special_tokens])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def labelled_mask(labels: np.ndarray) -> np.ndarray:
    """Which examples carry a label: a class index >= 0, or a score that is not NaN."""
    return ~np.isnan(labels) if labels.dtype.kind == "f" else labels >= 0


def encode_single(*, tokenizer, sentences: list[str], max_seq_len: int) -> tuple[list, list]:
    """Token and segment ids of single sentences (CoLA, SST-2): one segment, cut at ``max_seq_len``."""
    encoded = tokenizer(sentences, truncation=True, max_length=max_seq_len, return_token_type_ids=True,
                        return_attention_mask=False)
    return encoded["input_ids"], encoded["token_type_ids"]


def encode_pairs(*, tokenizer, premises: list[str], hypotheses: list[str], max_seq_len: int) -> tuple[list, list]:
    """Token ids and segment ids of each pair, cut to ``max_seq_len`` by shortening the premise first.

    The hypothesis is the short, decisive half of an NLI pair, so the premise is truncated;
    only when the hypothesis alone does not fit is it cut too (longest-first on that pair).
    """
    common = dict(max_length=max_seq_len, return_token_type_ids=True, return_attention_mask=False)
    hypothesis_lengths = [len(ids) for ids in tokenizer(hypotheses, add_special_tokens=False)["input_ids"]]
    room = max_seq_len - tokenizer.num_special_tokens_to_add(pair=True)
    # "only_first" fails on a pair whose hypothesis alone leaves no room for the premise
    fits = [length < room for length in hypothesis_lengths]
    input_ids: list = [None] * len(premises)
    token_type_ids: list = [None] * len(premises)
    for strategy, wanted in (("only_first", True), ("longest_first", False)):
        rows = [i for i, ok in enumerate(fits) if ok == wanted]
        if not rows:
            continue
        encoded = tokenizer([premises[i] for i in rows], [hypotheses[i] for i in rows], truncation=strategy, **common)
        for row, ids, types in zip(rows, encoded["input_ids"], encoded["token_type_ids"]):
            input_ids[row], token_type_ids[row] = ids, types
    return input_ids, token_type_ids


def _cache_key(*, data: bytes, task: TaskDef, tokenizer, max_seq_len: int, require_label: bool,
               key: str | None = None) -> str:
    digest = hashlib.sha256()
    for part in (
        f"v{CACHE_FORMAT_VERSION}", hashlib.sha256(data).hexdigest(), tokenizer_fingerprint(tokenizer),
        str(max_seq_len), task.reader, json.dumps(task.fields, sort_keys=True), ",".join(task.labels),
        str(require_label), task.task_type, task.data_format, task.quoting, str(key),
        json.dumps(task.label_map, sort_keys=True),
        # only when not the default, so that existing caches keep their keys
        *(["empty_text=error"] if task.empty_text == "error" else []),
    ):
        digest.update(part.encode("utf-8") + b"\0")
    return digest.hexdigest()


def _tokenize(examples: list[Example], *, task: TaskDef, split: str, tokenizer, max_seq_len: int) -> TokenizedSplit:
    if task.single_sentence:
        ids, types = encode_single(tokenizer=tokenizer, sentences=[e.premise for e in examples],
                                   max_seq_len=max_seq_len)
    else:
        ids, types = encode_pairs(
            tokenizer=tokenizer, premises=[e.premise for e in examples],
            hypotheses=[e.hypothesis for e in examples], max_seq_len=max_seq_len,
        )
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return TokenizedSplit(
        task=task.name, split=split,
        input_ids=np.fromiter((t for row in ids for t in row), dtype=np.int32, count=int(offsets[-1])),
        token_type_ids=np.fromiter((t for row in types for t in row), dtype=np.int8, count=int(offsets[-1])),
        offsets=offsets,
        labels=np.array([e.label for e in examples], dtype=np.float32 if task.is_regression else np.int64),
        uids=np.array([e.uid for e in examples], dtype=str),
    )


def _write_cache(path: Path, *, key: str, split: TokenizedSplit, notes: list[str]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, key=np.array(key), input_ids=split.input_ids, offsets=split.offsets,
             token_type_ids=split.token_type_ids, labels=split.labels, uids=split.uids,
             notes=np.array(json.dumps(notes)))
    atomic_write_bytes(path, buffer.getvalue())


def _read_cache(path: Path, *, key: str, task: str, split: str) -> tuple[TokenizedSplit, list[str]] | None:
    """The cached split and its data notes, or None (with a warning when the file exists but is unusable)."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            if sorted(stored.files) != sorted(_ARRAYS):
                raise ValueError(f"arrays {sorted(stored.files)}")
            if str(stored["key"]) != key:
                raise ValueError("key does not match")
            arrays = {name: stored[name] for name in _ARRAYS[1:-1]}
            notes = json.loads(str(stored["notes"]))
        if not isinstance(notes, list) or not all(isinstance(note, str) for note in notes):
            raise ValueError("notes are not a list of strings")
        offsets = arrays["offsets"]
        n = len(arrays["labels"])
        if (len(offsets) != n + 1 or offsets[0] != 0 or offsets[-1] != len(arrays["input_ids"])
                or len(arrays["token_type_ids"]) != len(arrays["input_ids"]) or len(arrays["uids"]) != n
                or np.any(np.diff(offsets) <= 0)):
            raise ValueError("inconsistent array shapes")
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        logger.warning("%s: unusable token cache (%s); rebuilding it", path, exc)
        return None
    return TokenizedSplit(task=task, split=split, **arrays), notes


def load_tokenized_split(
    *, path: str | Path, task: TaskDef, split: str, tokenizer, max_seq_len: int,
    cache_dir: str | Path | None, require_label: bool = True,
) -> TokenizedSplit:
    """The tokenised split of ``path``, read from the cache when it is valid for these settings."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found (split {task.name}:{split})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read (split {task.name}:{split}: {exc.strerror})") from None
    json_key = task.splits[split].key if split in task.splits else None
    key = _cache_key(data=data, task=task, tokenizer=tokenizer, max_seq_len=max_seq_len, require_label=require_label,
                     key=json_key)
    cache_path = Path(cache_dir) / f"{task.name}-{split}-{key[:24]}.npz" if cache_dir else None
    if cache_path is not None:
        cached = _read_cache(cache_path, key=key, task=task.name, split=split)
        if cached is not None:
            logger.info("%s:%s: %d examples from the token cache", task.name, split, len(cached[0]))
            log_notes(path, cached[1])
            return cached[0]
    examples = read_examples(path=path, task=task, require_label=require_label, key=json_key)
    notes = example_notes(examples) + special_only_notes(examples, tokenizer=tokenizer)
    tokenized = _tokenize(examples, task=task, split=split, tokenizer=tokenizer, max_seq_len=max_seq_len)
    if cache_path is not None:
        _write_cache(cache_path, key=key, split=tokenized, notes=notes)
    logger.info("%s:%s: tokenised %d examples", task.name, split, len(tokenized))
    log_notes(path, notes)
    return tokenized
