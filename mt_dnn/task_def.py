"""Task definitions: what a task is (format, kind, labels, splits, losses, metrics), from YAML.

MT-DNN describes tasks in YAML so that new tasks need no code; this module loads such
files with ``yaml.safe_load`` and validates them strictly, because a typo in a task file
otherwise surfaces hours later as a wrong number of classes or a silently unused key.

The kinds MT-DNN's GLUE file uses are here: a sentence pair (``premise_hypothesis``) or a
single sentence (``premise_only``, MT-DNN's PremiseOnly); ``task_type`` classification (a
``labels`` list, cross-entropy) or regression (float labels, one output, mean squared
error, as STS-B); ``metrics`` a list, the first deciding model selection (the old single
``metric:`` key still reads). A combination that cannot work (a regression task with labels,
a symmetric KL over one output, F1 on three classes, Pearson on classes) is refused here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mt_dnn.errors import ConfigError
from mt_dnn.metrics import ALL_METRICS, BINARY_ONLY, CLASSIFICATION_METRICS, REGRESSION_METRICS

DATA_FORMATS = ("premise_hypothesis", "premise_only")
TASK_TYPES = ("classification", "regression")
# json_lists: one JSON object holding a list of example objects per key (AdvGLUE's dev.json);
# each split names its key
READERS = ("anli_jsonl", "jsonl", "tsv", "json_lists")
LOSSES = ("cross_entropy", "mse")
ADV_LOSSES = ("symmetric_kl", "mse")
METRICS = ALL_METRICS
ROLES = ("train", "dev", "test")
# tsv only: "none" reads quote characters as text (GLUE's files, read by GLUE's processors
# with no quoting); "csv" undoes a CSV writer's quoting ("A ""b""" -> A "b").
QUOTINGS = ("none", "csv")
# An empty premise or hypothesis: "warn" (one warning line per file, the run goes on: released
# sets such as SNLI's and MNLI's training files hold a few) or "error" (one line naming file:line).
EMPTY_TEXT = ("warn", "error")

_REQUIRED = ("data_format", "reader", "loss", "adv_loss", "splits")
_OPTIONAL = ("task_type", "labels", "label_names", "n_class", "dropout_p", "fields", "metric", "metrics", "quoting",
             "label_map", "empty_text")
_FIELD_KEYS = ("premise", "hypothesis", "label", "uid")
# what each task type may use (MT-DNN's pairing: regression takes MSE for both terms; a
# symmetric KL over a single output is identically zero)
_TYPE_LOSSES = {"classification": ("cross_entropy",), "regression": ("mse",)}
_TYPE_ADV_LOSSES = {"classification": ("symmetric_kl", "mse"), "regression": ("mse",)}
_TYPE_METRICS = {"classification": CLASSIFICATION_METRICS, "regression": REGRESSION_METRICS}
_DEFAULT_FIELDS = {
    "anli_jsonl": {"premise": "context", "hypothesis": "hypothesis", "label": "label", "uid": "uid"},
    "jsonl": {"premise": "premise", "hypothesis": "hypothesis", "label": "label", "uid": "uid"},
    "tsv": {"premise": "premise", "hypothesis": "hypothesis", "label": "label", "uid": "uid"},
    "json_lists": {"premise": "premise", "hypothesis": "hypothesis", "label": "label", "uid": "idx"},
}


@dataclass(frozen=True)
class SplitDef:
    name: str
    path: str
    role: str
    key: str | None = None  # json_lists: which list of the file


@dataclass(frozen=True)
class TaskDef:
    name: str
    data_format: str
    reader: str
    labels: tuple[str, ...]  # empty for regression
    label_names: tuple[str, ...]
    loss: str
    adv_loss: str
    metrics: tuple[str, ...]  # the first decides model selection
    dropout_p: float
    fields: dict[str, str]
    splits: dict[str, SplitDef]
    source: str = field(default="", compare=False)
    task_type: str = "classification"
    quoting: str = "none"
    # the file's label values -> this task's labels, when the file encodes them otherwise
    # (AdvGLUE's integers: RTE 0 = entailment, where GLUE's order puts not_entailment first)
    label_map: dict[str, str] | None = None
    empty_text: str = "warn"

    @property
    def n_class(self) -> int:
        """Outputs of the task's head: one per label, one score for regression."""
        return 1 if self.is_regression else len(self.labels)

    @property
    def is_regression(self) -> bool:
        return self.task_type == "regression"

    @property
    def single_sentence(self) -> bool:
        return self.data_format == "premise_only"

    @property
    def metric(self) -> str:
        """The model-selection metric (the first listed)."""
        return self.metrics[0]

    def splits_with_role(self, role: str) -> list[str]:
        return [name for name, split in self.splits.items() if split.role == role]


def _fail(source: str, where: str, what: str) -> ConfigError:
    return ConfigError(f"{source}: {where}: {what}")


def _expect_type(value: Any, kind: type | tuple[type, ...], *, source: str, where: str, what: str) -> Any:
    # bool is an int in Python; a task file saying `dropout_p: true` is a mistake, not 1.0
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise _fail(source, where, f"expected {what}, got {value!r}")
    if not isinstance(value, kind):
        raise _fail(source, where, f"expected {what}, got {type(value).__name__} {value!r}")
    return value


def _choice(value: Any, choices: tuple[str, ...], *, source: str, where: str) -> str:
    _expect_type(value, str, source=source, where=where, what=f"one of {', '.join(choices)}")
    if value not in choices:
        raise _fail(source, where, f"expected one of {', '.join(choices)}, got {value!r}")
    return value


def _parse_task(name: str, body: Any, *, source: str) -> TaskDef:
    if not isinstance(body, dict):
        raise _fail(source, name, f"expected a mapping of task settings, got {type(body).__name__}")
    unknown = sorted(set(body) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        allowed = ", ".join(_REQUIRED + _OPTIONAL)
        raise _fail(source, f"{name}.{unknown[0]}", f"unknown key (allowed: {allowed})")
    for key in _REQUIRED:
        if key not in body:
            raise _fail(source, f"{name}.{key}", "missing required key")

    data_format = _choice(body["data_format"], DATA_FORMATS, source=source, where=f"{name}.data_format")
    reader = _choice(body["reader"], READERS, source=source, where=f"{name}.reader")
    task_type = _choice(body.get("task_type", "classification"), TASK_TYPES, source=source,
                        where=f"{name}.task_type")
    loss = _choice(body["loss"], LOSSES, source=source, where=f"{name}.loss")
    if loss not in _TYPE_LOSSES[task_type]:
        raise _fail(source, f"{name}.loss", f"a {task_type} task takes {' or '.join(_TYPE_LOSSES[task_type])}, "
                                            f"got {loss!r}")
    adv_loss = _choice(body["adv_loss"], ADV_LOSSES, source=source, where=f"{name}.adv_loss")
    if adv_loss not in _TYPE_ADV_LOSSES[task_type]:
        raise _fail(source, f"{name}.adv_loss", f"a {task_type} task takes "
                                                f"{' or '.join(_TYPE_ADV_LOSSES[task_type])}, got {adv_loss!r}")
    metrics = _parse_metrics(body, name=name, source=source, task_type=task_type)

    if task_type == "regression":
        for key in ("labels", "label_names"):
            if key in body:
                raise _fail(source, f"{name}.{key}", "a regression task takes float labels, not a labels list")
        labels, label_names = [], []
        if "n_class" in body:
            n_class = _expect_type(body["n_class"], int, source=source, where=f"{name}.n_class", what="an integer")
            if n_class != 1:
                raise _fail(source, f"{name}.n_class", f"a regression task has one output, got {n_class}")
    else:
        if "labels" not in body:
            raise _fail(source, f"{name}.labels", "missing required key (a classification task lists its labels)")
        labels = _expect_type(body["labels"], list, source=source, where=f"{name}.labels",
                              what="a list of label strings")
        # YAML reads `labels: [0, 1]` as integers; the files hold the text "0"/"1"
        if len(labels) < 2 or not all((isinstance(x, str) and x) or (isinstance(x, int) and not isinstance(x, bool))
                                      for x in labels):
            raise _fail(source, f"{name}.labels", f"expected at least two non-empty label strings, got {labels!r}")
        labels = [str(x) for x in labels]
        if len(set(labels)) != len(labels):
            raise _fail(source, f"{name}.labels", f"labels must be distinct, got {labels!r}")
        label_names = body.get("label_names", labels)
        _expect_type(label_names, list, source=source, where=f"{name}.label_names", what="a list of strings")
        if len(label_names) != len(labels) or not all(isinstance(x, str) for x in label_names):
            raise _fail(source, f"{name}.label_names", f"expected {len(labels)} strings, one per label")
        if "n_class" in body:
            n_class = _expect_type(body["n_class"], int, source=source, where=f"{name}.n_class", what="an integer")
            if n_class != len(labels):
                raise _fail(source, f"{name}.n_class", f"is {n_class} but {len(labels)} labels are listed")
        for metric in metrics:
            if metric in BINARY_ONLY and len(labels) != 2:
                raise _fail(source, f"{name}.metrics", f"{metric} is of the positive class of a two-label task; "
                                                       f"this task has {len(labels)} labels")
    dropout_p = body.get("dropout_p", 0.1)
    _expect_type(dropout_p, (int, float), source=source, where=f"{name}.dropout_p", what="a number in [0, 1)")
    if not 0.0 <= float(dropout_p) < 1.0:
        raise _fail(source, f"{name}.dropout_p", f"expected a number in [0, 1), got {dropout_p!r}")

    fields = dict(_DEFAULT_FIELDS[reader])
    field_keys = _FIELD_KEYS
    if data_format == "premise_only":  # one sentence: no second segment to read
        fields.pop("hypothesis")
        field_keys = tuple(k for k in _FIELD_KEYS if k != "hypothesis")
    if "fields" in body:
        given = _expect_type(body["fields"], dict, source=source, where=f"{name}.fields", what="a mapping")
        for key, value in given.items():
            if key not in field_keys:
                raise _fail(source, f"{name}.fields.{key}", f"unknown key for data_format {data_format} "
                                                           f"(allowed: {', '.join(field_keys)})")
            if not isinstance(value, (str, int)) or isinstance(value, bool):
                raise _fail(source, f"{name}.fields.{key}", "expected a field name (or a column number for tsv)")
            fields[key] = str(value)
        by_index = [str(v).isdigit() for v in given.values()]
        if reader == "tsv" and any(by_index) and not all(by_index):
            raise _fail(source, f"{name}.fields", "a tsv file is read either by column names (it has a header) or "
                                                  "by column numbers (it has none), not both")
    quoting = body.get("quoting", "none")
    if "quoting" in body and reader != "tsv":
        raise _fail(source, f"{name}.quoting", f"applies to the tsv reader only (this task's reader is {reader})")
    quoting = _choice(quoting, QUOTINGS, source=source, where=f"{name}.quoting")
    empty_text = _choice(body.get("empty_text", "warn"), EMPTY_TEXT, source=source, where=f"{name}.empty_text")
    label_map = None
    if "label_map" in body:
        if task_type == "regression":
            raise _fail(source, f"{name}.label_map", "a regression task takes float labels, not a label map")
        given = _expect_type(body["label_map"], dict, source=source, where=f"{name}.label_map",
                             what="a mapping of the file's label values to this task's labels")
        label_map = {}
        for value, label in given.items():
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise _fail(source, f"{name}.label_map", f"expected label values (strings or integers), got {value!r}")
            if str(label) not in labels:
                raise _fail(source, f"{name}.label_map.{value}", f"{label!r} is not one of {', '.join(labels)}")
            label_map[str(value)] = str(label)
        if sorted(label_map.values()) != sorted(labels):
            raise _fail(source, f"{name}.label_map", f"expected each of {', '.join(labels)} exactly once")

    raw_splits = _expect_type(body["splits"], dict, source=source, where=f"{name}.splits", what="a mapping of split names")
    if not raw_splits:
        raise _fail(source, f"{name}.splits", "expected at least one split")
    splits: dict[str, SplitDef] = {}
    for split_name, spec in raw_splits.items():
        where = f"{name}.splits.{split_name}"
        if not isinstance(split_name, str) or not split_name.replace("_", "").isalnum():
            raise _fail(source, where, "split names must be letters, digits and underscores")
        _expect_type(spec, dict, source=source, where=where, what="a mapping with path and role")
        split_keys = {"path", "role", "key"} if reader == "json_lists" else {"path", "role"}
        extra = sorted(set(spec) - split_keys)
        if extra:
            raise _fail(source, f"{where}.{extra[0]}", f"unknown key (allowed: {', '.join(sorted(split_keys))})")
        json_key = None
        if reader == "json_lists":
            if "key" not in spec:
                raise _fail(source, f"{where}.key", "missing required key (which list of the json_lists file)")
            json_key = _expect_type(spec["key"], str, source=source, where=f"{where}.key", what="a key of the JSON object")
        for key in ("path", "role"):
            if key not in spec:
                raise _fail(source, f"{where}.{key}", "missing required key")
        path = _expect_type(spec["path"], str, source=source, where=f"{where}.path", what="a relative file path")
        if Path(path).is_absolute() or ".." in Path(path).parts:
            raise _fail(source, f"{where}.path", f"expected a path inside the data folder, got {path!r}")
        role = _choice(spec["role"], ROLES, source=source, where=f"{where}.role")
        splits[split_name] = SplitDef(name=split_name, path=path, role=role, key=json_key)

    return TaskDef(
        name=name, data_format=data_format, reader=reader, labels=tuple(labels),
        label_names=tuple(label_names), loss=loss, adv_loss=adv_loss, metrics=metrics,
        dropout_p=float(dropout_p), fields=fields, splits=splits, source=source,
        task_type=task_type, quoting=quoting, label_map=label_map, empty_text=empty_text,
    )


def _parse_metrics(body: dict, *, name: str, source: str, task_type: str) -> tuple[str, ...]:
    """``metrics: [...]`` (the first picks the best epoch) or the older single ``metric: NAME``."""
    if "metric" in body and "metrics" in body:
        raise _fail(source, f"{name}.metric", "give either metric (one name) or metrics (a list), not both")
    if "metric" in body:
        key, names = "metric", [_choice(body["metric"], METRICS, source=source, where=f"{name}.metric")]
    elif "metrics" in body:
        key = "metrics"
        names = _expect_type(body["metrics"], list, source=source, where=f"{name}.metrics",
                             what=f"a list of metric names ({', '.join(METRICS)})")
        if not names:
            raise _fail(source, f"{name}.metrics", "expected at least one metric (the first picks the best epoch)")
        for value in names:
            _choice(value, METRICS, source=source, where=f"{name}.metrics")
        if len(set(names)) != len(names):
            raise _fail(source, f"{name}.metrics", f"metrics must be distinct, got {names!r}")
    else:
        raise _fail(source, f"{name}.metrics", "missing required key (a list of metric names; the first picks "
                                               "the best epoch)")
    allowed = _TYPE_METRICS[task_type]
    for value in names:
        if value not in allowed:
            raise _fail(source, f"{name}.{key}", f"{value} does not fit a {task_type} task "
                                                 f"(expected one of {', '.join(allowed)})")
    return tuple(names)


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses duplicate mapping keys (PyYAML keeps the last one silently)."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def load_task_defs(*, paths: list[str | Path]) -> dict[str, TaskDef]:
    """Load and validate every task of the given YAML files; task names must be unique."""
    tasks: dict[str, TaskDef] = {}
    for path in paths:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise ConfigError(f"{source}: task definition file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{source}: cannot read task definition file ({exc})") from None
        try:
            document = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"{source}{line}: invalid YAML: {problem}") from None
        except RecursionError:
            raise ConfigError(f"{source}: invalid YAML: nested too deeply to read") from None
        except ValueError as exc:  # PyYAML's int() of a number with thousands of digits
            raise ConfigError(f"{source}: invalid YAML: unreadable value ({str(exc).split(';')[0]})") from None
        if not isinstance(document, dict) or not document:
            raise ConfigError(f"{source}: expected a mapping of task names to task settings")
        for name, body in document.items():
            if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
                raise ConfigError(f"{source}: {name!r}: task names must be letters, digits, '_' or '-'")
            if name in tasks:
                raise ConfigError(f"{source}: {name}: duplicate task name (already defined in {tasks[name].source})")
            tasks[name] = _parse_task(name, body, source=source)
    return tasks
