"""``--tensorboard``: every scalar of ``metrics.jsonl`` also written to ``RUN/tensorboard/``.

``metrics.jsonl`` stays the record; this is a view of it for people who watch runs in
TensorBoard. Each record becomes scalars at its ``global_step``, tagged by its kind and
what it is about: ``train/train_loss``, ``train/seconds_per_update``,
``train/perturbation/noise_share``, ``eval/anli:r1_dev/accuracy``,
``eval_pooled/anli:dev/accuracy``, ... (every number of the record, nested ones by path).

On ``--resume`` the metrics log is cut back to the checkpoint's records; the writer then
opens with ``purge_step`` at the first dropped record's step, so TensorBoard hides the
events of the lost updates instead of showing them twice. The writer is opened at the first
record, so a run that stops at a bad flag writes nothing here. TensorBoard is an optional
extra (``pip install -e .[tensorboard]``); asking for it without the package is a one-line error.
"""

from __future__ import annotations

import math
from pathlib import Path

from mt_dnn.errors import ConfigError
from mt_dnn.run_files import MetricsLog

TENSORBOARD_FOLDER = "tensorboard"
# What names a record (part of the tag) rather than measures something.
_QUALIFIERS = {"eval": ("task", "split"), "eval_pooled": ("task", "role")}
_NOT_SCALARS = {"kind", "global_step", "task", "split", "role"}
_PREFIXES = {"train_epoch": "train"}


def summary_writer_class():
    """torch's SummaryWriter; ConfigError (one line) when the tensorboard package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("--tensorboard: the tensorboard package is not installed "
                          "(pip install -e .[tensorboard], or pip install tensorboard)") from None
    return SummaryWriter


def _numbers(value, path: str):
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, (int, float)):
        if math.isfinite(value):
            yield path, float(value)
    elif isinstance(value, dict):
        for key, inner in sorted(value.items()):
            yield from _numbers(inner, f"{path}/{key}")


def record_scalars(record: dict) -> dict[str, float]:
    """The record's numbers by tag (see the module docstring); strings, lists and booleans are left out."""
    kind = str(record.get("kind", "record"))
    prefix = _PREFIXES.get(kind, kind)
    qualifiers = [str(record[key]) for key in _QUALIFIERS.get(kind, ()) if key in record]
    if qualifiers:
        prefix = f"{prefix}/{':'.join(qualifiers)}"
    scalars: dict[str, float] = {}
    for key, value in sorted(record.items()):
        if key not in _NOT_SCALARS:
            scalars.update(_numbers(value, f"{prefix}/{key}"))
    return scalars


class TensorBoardMetricsLog(MetricsLog):
    """A MetricsLog whose every appended record also goes to a TensorBoard event file."""

    def __init__(self, path: Path, *, log_dir: Path) -> None:
        super().__init__(path)
        self.log_dir = Path(log_dir)
        self._writer_class = summary_writer_class()
        self._writer = None
        self._purge_step: int | None = None

    def truncate(self, count: int) -> None:
        dropped = self.read()[count:]
        super().truncate(count)
        steps = [r["global_step"] for r in dropped if isinstance(r.get("global_step"), int)]
        if steps:
            self._purge_step = min(steps)

    def append(self, record: dict) -> None:
        super().append(record)
        if self._writer is None:
            self._writer = self._writer_class(log_dir=str(self.log_dir), purge_step=self._purge_step)
        step = record.get("global_step") if isinstance(record.get("global_step"), int) else 0
        for tag, value in record_scalars(record).items():
            self._writer.add_scalar(tag, value, global_step=step)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def metrics_log(output_dir: Path, *, tensorboard: bool) -> MetricsLog:
    """RUN/metrics.jsonl, mirrored to RUN/tensorboard/ with ``tensorboard``."""
    path = Path(output_dir) / "metrics.jsonl"
    if not tensorboard:
        return MetricsLog(path)
    return TensorBoardMetricsLog(path, log_dir=Path(output_dir) / TENSORBOARD_FOLDER)
