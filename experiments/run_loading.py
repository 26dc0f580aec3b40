"""Read run folders (docs/run_format.md) into Run records: identity, reported epoch, accuracies.

One job: turn each folder under RUNS that holds run_config.json into one :class:`Run`, with
model tag, method and seed taken from the layout RUNS/<model_tag>/<method>/seed<k>/ (checked
against run_config.json) and the accuracies read at the epoch with the best pooled dev
accuracy. A run that cannot be reported keeps a ``problem`` saying why; the tables list it
instead of averaging it in. experiments.seed_statistics takes it from here.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean

from experiments import paper_values

ROUND_OF_SPLIT_PREFIX = {"r1": "A1", "r2": "A2", "r3": "A3"}
PER_ROUND = ("A1", "A2", "A3")
# Pooled accuracy written by the trainer vs recomputed from rounded per-split accuracies.
POOL_TOLERANCE = 1e-3
# Pooled accuracies are ratios of integer counts; anything closer than this is a tie.
TIE_TOLERANCE = 1e-9
_SEED_FOLDER = re.compile(r"^seed(\d+)$")


@dataclass(frozen=True)
class Run:
    """One run folder, read and reduced to what the tables need."""

    path: Path
    model: str
    method: str
    perturbation: str
    options: dict
    seed: int
    device_name: str
    # Why the run cannot be reported (unfinished, incomplete evaluation); None when usable.
    problem: str | None = None
    reported_epoch: int | None = None
    # (role, round) -> accuracy as a fraction.
    accuracy: dict = field(default_factory=dict)
    seconds_per_update: float | None = None
    wall_time_s: float | None = None
    forward_passes_per_update: float | None = None
    backward_passes_per_update: float | None = None
    # Means over the train_epoch records, fractions; None when the run perturbs nothing.
    changed_share: float | None = None
    noise_share: float | None = None
    # smart_mtdnn only: the size MT-DNN's own code logs for its perturbation (a fraction).
    mtdnn_logged_share: float | None = None
    summary_best_epoch: int | None = None


def _read_json_object(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); expected one JSON object") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a JSON object, found {type(value).__name__}")
    return value


def _read_metrics(path: Path) -> tuple[list[dict], int | None]:
    """metrics.jsonl's records, and the number of its last line when that line was cut off.

    A record is appended with its newline in one write, so a crash mid-write leaves a last
    line without a newline that is not JSON: that is a cut line, returned for the caller to
    report. A complete line that is not a JSON object is malformed input and raises.
    """
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines) and not text.endswith("\n"):
                return records, number
            raise ValueError(f"{path}:{number}: not a JSON object; expected one metrics record per line") from None
        if not isinstance(record, dict) or "kind" not in record:
            raise ValueError(f"{path}:{number}: expected a JSON object with a 'kind' key")
        record["_line"] = number  # kept so later checks can name the line
        records.append(record)
    return records, None


def model_tag(*, model: str) -> str:
    """Folder-style tag of a model name or path: 'FacebookAI/roberta-large' -> 'roberta-large'."""
    return Path(str(model).rstrip("/\\")).name or str(model)


def parse_method(*, method: str) -> tuple[str, dict[str, str]]:
    """'smart@adv_step_size=1e-3' -> ('smart', {'adv_step_size': '1e-3'})."""
    base, _, suffix = method.partition("@")
    settings: dict[str, str] = {}
    if suffix:
        for part in suffix.split(","):
            key, sep, value = part.partition("=")
            if not sep or not key:
                raise ValueError(f"method folder {method!r}: expected <perturbation>@<option>=<value>[,...]")
            settings[key] = value
    return base, settings


def _same_setting(written: object, wanted: str) -> bool:
    try:
        return math.isclose(float(written), float(wanted), rel_tol=1e-9, abs_tol=0.0)
    except (TypeError, ValueError):
        return str(written) == wanted


def _layout(run_dir: Path, runs_dir: Path) -> tuple[str, str, int] | None:
    parts = run_dir.relative_to(runs_dir).parts
    if len(parts) < 3:
        return None
    match = _SEED_FOLDER.match(parts[-1])
    if not match:
        return None
    return parts[-3], parts[-2], int(match.group(1))


def _identity(run_dir: Path, runs_dir: Path, config: dict, config_path: Path) -> tuple[str, str, str, dict, int]:
    """(model tag, method, perturbation, options, seed), the layout checked against the config."""
    perturbation = config.get("perturbation")
    if not isinstance(perturbation, str) or not perturbation:
        raise ValueError(f"{config_path}: 'perturbation' missing; expected the --perturbation name (none, smart, 1-1, ...)")
    options = config.get("perturbation_options") or {}
    if not isinstance(options, dict):
        raise ValueError(f"{config_path}: 'perturbation_options' must be a JSON object")
    options = dict(options)
    config_seed = config.get("seed")
    layout = _layout(run_dir, runs_dir)
    if layout is None:
        if not isinstance(config_seed, int):
            raise ValueError(f"{config_path}: 'seed' missing and the folder is not <model_tag>/<method>/seed<k>")
        if "model" not in config:
            raise ValueError(f"{config_path}: 'model' missing and the folder is not <model_tag>/<method>/seed<k>")
        return model_tag(model=config["model"]), perturbation, perturbation, options, config_seed
    tag, method, seed = layout
    base, settings = parse_method(method=method)
    if base != perturbation:
        raise ValueError(f"{config_path}: perturbation {perturbation!r} but the run sits in method folder {method!r}")
    for key, value in settings.items():
        if key in options and not _same_setting(options[key], value):
            raise ValueError(f"{config_path}: perturbation_options[{key!r}] = {options[key]!r} but the folder says {method!r}")
        options.setdefault(key, float(value) if _is_number(value) else value)
    if config_seed is not None and config_seed != seed:
        raise ValueError(f"{config_path}: seed {config_seed!r} but the run sits in folder seed{seed}")
    return tag, method, perturbation, options, seed


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _round_of(split: object) -> str | None:
    return ROUND_OF_SPLIT_PREFIX.get(str(split).split("_", 1)[0])


def _pooled_by_epoch(records: list[dict], *, task: str, metrics_path: Path) -> dict[tuple[int, str], dict[str, float]]:
    """(epoch, role) -> {round: accuracy} with 'All' pooled, for every complete evaluation."""
    per_split: dict[tuple[int, str], dict[str, tuple[float, int]]] = {}
    pooled: dict[tuple[int, str], float] = {}
    for record in records:
        if record["kind"] not in ("eval", "eval_pooled"):
            continue
        if record.get("task", task) != task or record.get("role") not in paper_values.ROLES:
            continue
        try:
            key = (int(record["epoch"]), record["role"])
            if record["kind"] == "eval":
                round_name = _round_of(record["split"])
                if round_name is not None:
                    # A later record of the same epoch and split is a re-evaluation; it wins.
                    per_split.setdefault(key, {})[round_name] = (float(record["accuracy"]), int(record["examples"]))
            else:
                splits = record.get("splits")
                # A pool over other splits than A1+A2+A3 is not the paper's "All".
                if splits is None or sorted(filter(None, map(_round_of, splits))) == list(PER_ROUND):
                    pooled[key] = float(record["accuracy"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(
                f"{metrics_path}:{record['_line']}: {record['kind']} record needs epoch, role, accuracy and "
                "(for eval) split and examples, as in docs/run_format.md"
            ) from None
    result: dict[tuple[int, str], dict[str, float]] = {}
    for key in sorted(set(per_split) | set(pooled)):
        rounds = per_split.get(key, {})
        values = {name: accuracy for name, (accuracy, _) in rounds.items()}
        recomputed = None
        if set(rounds) == set(PER_ROUND):
            total = sum(examples for _, examples in rounds.values())
            recomputed = sum(accuracy * examples for accuracy, examples in rounds.values()) / total
        if key in pooled and recomputed is not None and abs(pooled[key] - recomputed) > POOL_TOLERANCE:
            raise ValueError(
                f"{metrics_path}: epoch {key[0]} {key[1]}: eval_pooled accuracy {pooled[key]:.4f} disagrees with "
                f"{recomputed:.4f}, the size-weighted mean of the per-split accuracies"
            )
        all_value = pooled.get(key, recomputed)
        if all_value is not None:
            values["All"] = all_value
        result[key] = values
    return result


def reported_epoch(*, dev_all: dict[int, float]) -> int:
    """The epoch with the best pooled dev accuracy; the earliest of equally good epochs."""
    best = max(dev_all.values())
    return min(epoch for epoch, accuracy in dev_all.items() if accuracy >= best - TIE_TOLERANCE)


def mean_or_none(values: list) -> float | None:
    finite = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return mean(finite) if finite else None


def _load_run(run_dir: Path, runs_dir: Path, *, task: str) -> Run:
    config_path = run_dir / "run_config.json"
    config = _read_json_object(config_path)
    tag, method, perturbation, options, seed = _identity(run_dir, runs_dir, config, config_path)
    base = dict(path=run_dir, model=tag, method=method, perturbation=perturbation, options=options, seed=seed,
                device_name=str(config.get("device_name") or config.get("device") or "unknown"))
    summary_path = run_dir / "run_summary.json"
    summary = _read_json_object(summary_path) if summary_path.is_file() else None
    if summary is None:
        return Run(**base, problem="unfinished: no run_summary.json")
    if summary.get("finished") is not True:
        return Run(**base, problem="unfinished: run_summary.json says finished is not true")
    metrics_path = run_dir / "metrics.jsonl"
    if not metrics_path.is_file():
        return Run(**base, problem="finished but no metrics.jsonl")
    records, cut_line = _read_metrics(metrics_path)
    if cut_line is not None:
        # The records may stop before the last evaluation: report nothing from a partial log.
        return Run(**base, problem=f"finished but metrics.jsonl line {cut_line} (the last) is cut off; "
                                   "its records are incomplete")

    train_epochs = [r for r in records if r["kind"] == "train_epoch"]
    perturbations = [r["perturbation"] for r in train_epochs if isinstance(r.get("perturbation"), dict)]
    updates = sum(r.get("updates", 0) for r in train_epochs)
    fallback_spu = sum(r.get("seconds", 0.0) for r in train_epochs) / updates if updates else None
    extra = dict(
        seconds_per_update=summary.get("seconds_per_update", fallback_spu),
        wall_time_s=summary.get("wall_time_s"),
        forward_passes_per_update=summary.get(
            "forward_passes_per_update", mean_or_none([r.get("forward_passes_per_update") for r in train_epochs])),
        backward_passes_per_update=summary.get(
            "backward_passes_per_update", mean_or_none([r.get("backward_passes_per_update") for r in train_epochs])),
        changed_share=mean_or_none([p.get("changed_share") for p in perturbations]),
        noise_share=mean_or_none([p.get("noise_share") for p in perturbations]),
        mtdnn_logged_share=mean_or_none([p.get("mtdnn_logged_share") for p in perturbations]),
        summary_best_epoch=summary.get("best_epoch"),
    )

    evaluations = _pooled_by_epoch(records, task=task, metrics_path=metrics_path)
    dev_all = {epoch: values["All"] for (epoch, role), values in evaluations.items() if role == "dev" and "All" in values}
    if not dev_all:
        return Run(**base, **extra, problem=f"finished but metrics.jsonl has no pooled {task} dev accuracy")
    epoch = reported_epoch(dev_all=dev_all)
    accuracy = {}
    for role in paper_values.ROLES:
        values = evaluations.get((epoch, role), {})
        lacking = [name for name in paper_values.ROUNDS if name not in values]
        if lacking:
            return Run(**base, **extra, reported_epoch=epoch,
                       problem=f"reported epoch {epoch} lacks {role} {'/'.join(lacking)} in metrics.jsonl")
        accuracy.update({(role, name): values[name] for name in paper_values.ROUNDS})
    return Run(**base, **extra, reported_epoch=epoch, accuracy=accuracy)


def load_runs(*, runs_dir: Path | str, task: str = "anli") -> list[Run]:
    """Every run folder under runs_dir (finished or not), sorted by model, method, seed."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise ValueError(f"{runs_dir}: no such folder; expected a folder of run folders (docs/run_format.md)")
    runs: list[Run] = []
    for folder, subfolders, files in os.walk(runs_dir):
        subfolders.sort()
        if "run_config.json" in files:
            subfolders.clear()  # checkpoints/, predictions/, model/ hold no runs
            runs.append(_load_run(Path(folder), runs_dir, task=task))
    seen: dict[tuple[str, str, int], Path] = {}
    for run in runs:
        key = (run.model, run.method, run.seed)
        if key in seen:
            raise ValueError(
                f"{run.path}: same model/method/seed {key} as {seen[key]}; keep one, or put sweeps under "
                "RUNS/<model_tag>/<method>@<option>=<value>/seed<k>/"
            )
        seen[key] = run.path
    return sorted(runs, key=lambda r: (r.model, r.method, r.seed))
