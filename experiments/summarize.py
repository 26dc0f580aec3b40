"""Turn a folder of training runs into the paper's tables, with the spread over seeds.

The paper reports only means of 6 seeds; differences between methods are often a few tenths
of a point, so this script prints mean ± sample standard deviation, the number of seeds, the
paper's value beside every cell, and a significance test of each method against plain
fine-tuning and SMART. It also prints the training-time table (the paper's "23% faster
than SMART") and the measured perturbation sizes (SMART ≈ 0.003%, 1-1 ≈ 30%, ...).

    python -m experiments.summarize RUNS [--format markdown|csv|both] [--out DIR]

Run folders follow docs/run_format.md; a run folder is any folder under RUNS holding
run_config.json. Model tag, method and seed come from the layout
RUNS/<model_tag>/<method>/seed<k>/ when a run sits in it (checked against run_config.json),
otherwise from run_config.json (`model`, `perturbation`, `seed`).

Reported epoch: every run is reported at the epoch with the best pooled dev accuracy
(A1+A2+A3 dev, 3,200 examples on ANLI), the earliest such epoch on ties. Test accuracy is
read at that epoch only and never takes part in the choice.

"All" is accuracy pooled over the rounds' examples, taken from the `eval_pooled` records,
or recomputed size-weighted from the per-split records when those are absent; when both
exist they must agree (within 0.1 point).

Runs that cannot be reported (no run_summary.json, `finished: false`, no complete dev/test
evaluation) and seeds that some methods of a model have and others lack are listed under
"Missing or unfinished runs"; they are never averaged in.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean, stdev

from scipy import stats

from experiments import paper_values

ROUND_OF_SPLIT_PREFIX = {"r1": "A1", "r2": "A2", "r3": "A3"}
PER_ROUND = ("A1", "A2", "A3")
# Pooled accuracy written by the trainer vs recomputed from rounded per-split accuracies.
POOL_TOLERANCE = 1e-3
# Pooled accuracies are ratios of integer counts; anything closer than this is a tie.
TIE_TOLERANCE = 1e-9
REFERENCES = ("none", "smart")
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
    summary_best_epoch: int | None = None


@dataclass(frozen=True)
class CellStats:
    """Accuracies (percent) of one (model, method, role, round) over seeds."""

    seeds: tuple
    values: tuple

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return mean(self.values)

    @property
    def std(self) -> float | None:
        return stdev(self.values) if self.n >= 2 else None


@dataclass(frozen=True)
class Comparison:
    """Test-All difference of one method to a reference method, with its significance test."""

    model: str
    method: str
    reference: str
    difference: float | None  # mean(method) − mean(reference), percentage points
    test: str  # "paired t-test", "Welch's t-test" or "n/a"
    p_value: float | None
    detail: str


@dataclass(frozen=True)
class MissingRun:
    model: str
    method: str
    seed: int | None
    path: Path | None
    reason: str


@dataclass(frozen=True)
class TimeRow:
    model: str
    method: str
    device_name: str
    n: int
    seconds_per_update: float | None
    wall_time_s: float | None
    forward_passes_per_update: float | None
    backward_passes_per_update: float | None
    ratio_to_none: float | None
    ratio_to_smart: float | None


@dataclass(frozen=True)
class PerturbationRow:
    model: str
    method: str
    n: int
    changed_share_percent: float | None
    noise_share_percent: float | None
    paper_changed_percent: float | None
    paper_changed_kind: str | None  # "measured" or "by design"
    paper_noise_percent: float | None


@dataclass(frozen=True)
class Summary:
    models: tuple
    methods: dict  # model -> methods in table order
    cells: dict  # (model, method, role, round) -> CellStats
    options: dict  # (model, method) -> perturbation_options
    comparisons: tuple
    missing: tuple
    time_rows: tuple
    perturbation_rows: tuple
    notes: tuple
    runs: tuple  # the reported runs


# ---------------------------------------------------------------- reading run folders


def _read_json_object(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); expected one JSON object") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a JSON object, found {type(value).__name__}")
    return value


def _read_metrics(path: Path, *, tolerate_torn_tail: bool) -> list[dict]:
    """metrics.jsonl as a list of objects; an unfinished run may end in a half-written line."""
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if tolerate_torn_tail and number == len(lines):
                break
            raise ValueError(f"{path}:{number}: not a JSON object; expected one metrics record per line") from None
        if not isinstance(record, dict) or "kind" not in record:
            raise ValueError(f"{path}:{number}: expected a JSON object with a 'kind' key")
        record["_line"] = number  # kept so later checks can name the line
        records.append(record)
    return records


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


def _mean_or_none(values: list) -> float | None:
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
    records = _read_metrics(metrics_path, tolerate_torn_tail=False)

    train_epochs = [r for r in records if r["kind"] == "train_epoch"]
    perturbations = [r["perturbation"] for r in train_epochs if isinstance(r.get("perturbation"), dict)]
    updates = sum(r.get("updates", 0) for r in train_epochs)
    fallback_spu = sum(r.get("seconds", 0.0) for r in train_epochs) / updates if updates else None
    extra = dict(
        seconds_per_update=summary.get("seconds_per_update", fallback_spu),
        wall_time_s=summary.get("wall_time_s"),
        forward_passes_per_update=summary.get(
            "forward_passes_per_update", _mean_or_none([r.get("forward_passes_per_update") for r in train_epochs])),
        backward_passes_per_update=summary.get(
            "backward_passes_per_update", _mean_or_none([r.get("backward_passes_per_update") for r in train_epochs])),
        changed_share=_mean_or_none([p.get("changed_share") for p in perturbations]),
        noise_share=_mean_or_none([p.get("noise_share") for p in perturbations]),
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


# ---------------------------------------------------------------- statistics


def _model_order(models) -> tuple:
    return tuple(m for m in paper_values.MODELS if m in models) + tuple(sorted(set(models) - set(paper_values.MODELS)))


def _method_order(methods) -> tuple:
    def key(method: str) -> tuple:
        base, _ = parse_method(method=method)
        paper_index = paper_values.METHODS.index(base) if base in paper_values.METHODS else len(paper_values.METHODS)
        return ("@" in method, paper_index, method)

    return tuple(sorted(set(methods), key=key))


def method_label(*, method: str) -> str:
    base, _ = parse_method(method=method)
    label = paper_values.METHOD_LABELS.get(base, f"+{base}")
    return label + method[len(base):]


def compare_seeds(*, values: dict[int, float], reference: dict[int, float]) -> tuple[str, float | None, str]:
    """(test name, p-value, detail): paired t over ≥ 2 common seeds, else Welch over ≥ 2 each, else n/a."""
    common = sorted(set(values) & set(reference))
    with warnings.catch_warnings():
        # Constant differences give a NaN p-value with a RuntimeWarning; we print n/a instead.
        warnings.simplefilter("ignore", RuntimeWarning)
        if len(common) >= 2:
            result = stats.ttest_rel([values[s] for s in common], [reference[s] for s in common])
            test, detail = "paired t-test", f"{len(common)} common seeds"
        elif len(values) >= 2 and len(reference) >= 2:
            result = stats.ttest_ind(list(values.values()), list(reference.values()), equal_var=False)
            test, detail = "Welch's t-test", f"n={len(values)} vs {len(reference)}, {len(common)} common seeds"
        else:
            return "n/a", None, f"n={len(values)} vs {len(reference)} seeds, {len(common)} common: too few to test"
    p_value = float(result.pvalue)
    if not math.isfinite(p_value):
        return test, None, detail + "; p undefined (no spread)"
    return test, p_value, detail


def _missing_seeds(runs: list[Run]) -> list[MissingRun]:
    """Seeds that other methods of the same model (or the same sweep) have and this one lacks."""
    families: dict[tuple[str, str], dict[str, set[int]]] = {}
    for run in runs:
        base, settings = parse_method(method=run.method)
        family = f"{base}@{','.join(sorted(settings))}" if settings else ""
        families.setdefault((run.model, family), {}).setdefault(run.method, set()).add(run.seed)
    missing = []
    for (model, family), methods in families.items():
        expected = set().union(*methods.values())
        for method, seeds in methods.items():
            for seed in sorted(expected - seeds):
                scope = "the same sweep" if family else "this model"
                missing.append(MissingRun(model, method, seed, None,
                                          f"no run folder, though other methods of {scope} have seed {seed}"))
    return missing


def summarize(*, runs: list[Run]) -> Summary:
    """Group reported runs by (model, method) and compute every table's numbers."""
    reported = [run for run in runs if run.problem is None]
    missing = [MissingRun(r.model, r.method, r.seed, r.path, r.problem) for r in runs if r.problem is not None]
    missing += _missing_seeds(runs)
    models = _model_order({run.model for run in runs})
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in reported:
        groups.setdefault((run.model, run.method), []).append(run)
    methods = {model: _method_order({m for (g, m) in groups if g == model}) for model in models}
    notes = []
    for model in models:
        ran = {run.method for run in runs if run.model == model}
        absent = [paper_values.METHOD_LABELS[m] for m in paper_values.METHODS if m not in ran]
        if absent:
            missing.append(MissingRun(model, "", None, None, "no runs at all of " + ", ".join(absent)))

    cells: dict[tuple[str, str, str, str], CellStats] = {}
    options: dict[tuple[str, str], dict] = {}
    for (model, method), group in groups.items():
        group.sort(key=lambda r: r.seed)
        option_sets = {json.dumps(r.options, sort_keys=True) for r in group}
        if len(option_sets) > 1:
            raise ValueError(f"{group[0].path.parent}: seeds of {model}/{method} ran with different perturbation_options "
                             f"{sorted(option_sets)}; give each setting its own method folder")
        options[(model, method)] = group[0].options
        for role in paper_values.ROLES:
            for round_name in paper_values.ROUNDS:
                cells[(model, method, role, round_name)] = CellStats(
                    seeds=tuple(r.seed for r in group),
                    values=tuple(100.0 * r.accuracy[(role, round_name)] for r in group),
                )
        for run in group:
            if run.summary_best_epoch is not None and run.summary_best_epoch != run.reported_epoch:
                notes.append(f"{run.path}: run_summary.json best_epoch {run.summary_best_epoch}, reported epoch "
                             f"{run.reported_epoch} (best pooled dev, earliest on ties)")

    method_rank = {
        (model, method): rank
        for model in models
        for rank, method in enumerate(_method_order({run.method for run in runs if run.model == model}))
    }
    comparisons = []
    for model in models:
        for method in methods[model]:
            test_all = cells[(model, method, "test", "All")]
            for reference in REFERENCES:
                if reference == method:
                    continue
                ref_cell = cells.get((model, reference, "test", "All"))
                if ref_cell is None:
                    comparisons.append(Comparison(model, method, reference, None, "n/a", None,
                                                  f"no finished {reference} runs for {model}"))
                    continue
                test, p_value, detail = compare_seeds(values=dict(zip(test_all.seeds, test_all.values)),
                                                      reference=dict(zip(ref_cell.seeds, ref_cell.values)))
                comparisons.append(Comparison(model, method, reference, test_all.mean - ref_cell.mean,
                                              test, p_value, detail))

    return Summary(
        models=models, methods=methods, cells=cells, options=options, comparisons=tuple(comparisons),
        missing=tuple(sorted(missing, key=lambda m: (models.index(m.model), method_rank.get((m.model, m.method), -1),
                                                     m.seed if m.seed is not None else -1))),
        time_rows=tuple(_time_rows(reported, models=models, methods=methods)),
        perturbation_rows=tuple(_perturbation_rows(groups, models=models, methods=methods)),
        notes=tuple(notes), runs=tuple(reported),
    )


def _time_rows(reported: list[Run], *, models: tuple, methods: dict) -> list[TimeRow]:
    by_device: dict[tuple[str, str, str], list[Run]] = {}
    for run in reported:
        by_device.setdefault((run.model, run.method, run.device_name), []).append(run)

    def seconds(model: str, method: str, device: str) -> float | None:
        group = by_device.get((model, method, device), [])
        return _mean_or_none([r.seconds_per_update for r in group])

    rows = []
    for model in models:
        devices = sorted({device for (m, _, device) in by_device if m == model})
        for device in devices:
            for method in methods[model]:
                group = by_device.get((model, method, device))
                if not group:
                    continue
                spu = seconds(model, method, device)
                ratios = []
                for reference in REFERENCES:
                    ref = seconds(model, reference, device)
                    ratios.append(spu / ref if spu is not None and ref else None)
                rows.append(TimeRow(
                    model, method, device, len(group), spu,
                    _mean_or_none([r.wall_time_s for r in group]),
                    _mean_or_none([r.forward_passes_per_update for r in group]),
                    _mean_or_none([r.backward_passes_per_update for r in group]),
                    ratios[0], ratios[1],
                ))
    return rows


def _perturbation_rows(groups: dict, *, models: tuple, methods: dict) -> list[PerturbationRow]:
    rows = []
    for model in models:
        for method in methods[model]:
            group = groups[(model, method)]
            changed = _mean_or_none([r.changed_share for r in group])
            noise = _mean_or_none([r.noise_share for r in group])
            if changed is None and noise is None:
                continue
            base, _ = parse_method(method=method)
            paper_changed, kind = None, None
            if base in paper_values.WORDNET_METHODS and model in paper_values.WORDNET_REPLACED_SHARE_PERCENT:
                paper_changed, kind = paper_values.WORDNET_REPLACED_SHARE_PERCENT[model], "measured"
            elif method in paper_values.DESIGN_CHANGED_SHARE_PERCENT:
                paper_changed, kind = paper_values.DESIGN_CHANGED_SHARE_PERCENT[method], "by design"
            rows.append(PerturbationRow(
                model, method, len(group),
                None if changed is None else 100.0 * changed,
                None if noise is None else 100.0 * noise,
                paper_changed, kind, paper_values.NOISE_SHARE_PERCENT.get(method),
            ))
    return rows


# ---------------------------------------------------------------- output


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _fmt_p(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _fmt_percent(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3g}" if value < 1 else f"{value:.1f}"


def _accuracy_table(summary: Summary, model: str) -> list[str]:
    label = paper_values.MODEL_LABELS.get(model)
    lines = [f"## {model}" + (f" ({label})" if label else ""), ""]
    headers = [f"{role} {name}" for role in paper_values.ROLES for name in paper_values.ROUNDS]
    lines.append("| method | n | " + " | ".join(headers) + " |")
    lines.append("|---|---|" + "---|" * len(headers))
    for method in summary.methods[model]:
        cells = []
        for role in paper_values.ROLES:
            for name in paper_values.ROUNDS:
                cell = summary.cells[(model, method, role, name)]
                text = f"{cell.mean:.2f} ± {_fmt(cell.std)}"
                paper = paper_values.paper_accuracy(model=model, method=method, role=role, round_name=name)
                if paper is not None:
                    text += f" ({paper:.1f})"
                cells.append(text)
        n = summary.cells[(model, method, "test", "All")].n
        lines.append(f"| {method_label(method=method)} | {n} | " + " | ".join(cells) + " |")
    return lines + [""]


def render_markdown(*, summary: Summary) -> str:
    """The whole report: accuracy tables in the paper's layout, significance, time, noise, gaps."""
    lines = [
        "# ANLI accuracy (%)",
        "",
        "Cells: mean ± sample std (ddof=1; n/a with one seed) over seeds, the paper's value (mean of "
        f"{paper_values.SEEDS_PER_CELL} seeds) in parentheses. Each run is reported at the epoch with the best "
        "pooled dev accuracy (earliest on ties); test never takes part in that choice. All = pooled over "
        "the rounds' examples.",
        "",
    ]
    if not summary.runs:
        lines += ["No finished runs.", ""]
    for model in summary.models:
        if summary.methods[model]:
            lines += _accuracy_table(summary, model)

    lines += [
        "## Significance (test All)",
        "",
        "Δ = mean(method) − mean(reference) in points. Test over seeds: paired t-test on the seeds both "
        "have when ≥ 2, else Welch's t-test when each has ≥ 2, else n/a.",
        "",
        "| model | method | Δ vs fine-tuning | test | p | Δ vs SMART | test | p |",
        "|---|---|---|---|---|---|---|---|",
    ]
    by_key = {(c.model, c.method, c.reference): c for c in summary.comparisons}
    for model in summary.models:
        for method in summary.methods[model]:
            parts = []
            for reference in REFERENCES:
                c = by_key.get((model, method, reference))
                if c is None:
                    parts += ["—", "—", "—"]
                else:
                    diff = "n/a" if c.difference is None else f"{c.difference:+.2f}"
                    parts += [diff, f"{c.test} ({c.detail})", _fmt_p(c.p_value)]
            lines.append(f"| {model} | {method_label(method=method)} | " + " | ".join(parts) + " |")
    lines.append("")

    lines += [
        "## Training time",
        "",
        "Ratios are seconds per update divided by fine-tuning's (× FT) and SMART's (× SMART), comparing "
        f"only runs on the same device. Paper: the proposed methods take ≈{paper_values.TIME_SAVING_VS_SMART_PERCENT:.0f}% "
        "less training time than SMART; passes per update fine-tuning 1+1, SMART 3+2, proposed 2+1.",
        "",
        "| model | device | method | n | s/update | wall time (s) | fwd/update | bwd/update | paper fwd+bwd | × FT | × SMART |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary.time_rows:
        paper = paper_values.PASSES_PER_UPDATE.get(row.method)
        paper_text = f"{paper[0]:.0f}+{paper[1]:.0f}" if paper else "—"
        lines.append(
            f"| {row.model} | {row.device_name} | {method_label(method=row.method)} | {row.n} | "
            f"{_fmt(row.seconds_per_update, 4)} | {_fmt(row.wall_time_s, 1)} | {_fmt(row.forward_passes_per_update, 1)} | "
            f"{_fmt(row.backward_passes_per_update, 1)} | {paper_text} | {_fmt(row.ratio_to_none, 3)} | {_fmt(row.ratio_to_smart, 3)} |"
        )
    lines.append("")

    lines += [
        "## Perturbation size",
        "",
        "Epoch means from the train_epoch records, averaged over seeds: share of perturbable tokens changed, "
        "and ‖perturbation‖₂ / ‖token embedding‖₂ over changed tokens (percent).",
        "",
        "| model | method | n | changed tokens % | paper | noise / embedding % | paper |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in summary.perturbation_rows:
        paper_changed = "—" if row.paper_changed_percent is None else f"{row.paper_changed_percent:.0f} ({row.paper_changed_kind})"
        lines.append(
            f"| {row.model} | {method_label(method=row.method)} | {row.n} | {_fmt_percent(row.changed_share_percent)} | "
            f"{paper_changed} | {_fmt_percent(row.noise_share_percent)} | {_fmt_percent(row.paper_noise_percent)} |"
        )
    lines.append("")

    lines += ["## Missing or unfinished runs", ""]
    if not summary.missing:
        lines.append("None.")
    for item in summary.missing:
        who = item.model + (f" / {method_label(method=item.method)}" if item.method else "")
        seed = f" seed {item.seed}" if item.seed is not None else ""
        where = f" ({item.path})" if item.path is not None else ""
        lines.append(f"- {who}{seed}: {item.reason}{where}")
    lines.append("")
    if summary.notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in summary.notes] + [""]
    return "\n".join(lines)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _csv_text(header: list[str], rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if value is None else value for value in row])
    return buffer.getvalue()


def write_csv(*, summary: Summary, out_dir: Path | str) -> list[Path]:
    """accuracy/significance/time/perturbation/missing/runs CSVs; empty field = not available."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables: dict[str, tuple[list[str], list[list]]] = {}
    accuracy_rows = []
    for model in summary.models:
        for method in summary.methods[model]:
            for role in paper_values.ROLES:
                for name in paper_values.ROUNDS:
                    cell = summary.cells[(model, method, role, name)]
                    accuracy_rows.append([
                        model, method, role, name, round(cell.mean, 4),
                        None if cell.std is None else round(cell.std, 4), cell.n,
                        " ".join(map(str, cell.seeds)),
                        paper_values.paper_accuracy(model=model, method=method, role=role, round_name=name),
                    ])
    tables["accuracy.csv"] = (["model", "method", "role", "round", "mean", "std", "n", "seeds", "paper"], accuracy_rows)
    tables["significance.csv"] = (
        ["model", "method", "reference", "difference", "test", "p_value", "detail"],
        [[c.model, c.method, c.reference, None if c.difference is None else round(c.difference, 4), c.test,
          c.p_value, c.detail] for c in summary.comparisons],
    )
    tables["time.csv"] = (
        ["model", "device_name", "method", "n", "seconds_per_update", "wall_time_s", "forward_passes_per_update",
         "backward_passes_per_update", "ratio_to_none", "ratio_to_smart"],
        [[r.model, r.device_name, r.method, r.n, r.seconds_per_update, r.wall_time_s, r.forward_passes_per_update,
          r.backward_passes_per_update, r.ratio_to_none, r.ratio_to_smart] for r in summary.time_rows],
    )
    tables["perturbation.csv"] = (
        ["model", "method", "n", "changed_share_percent", "paper_changed_percent", "paper_changed_kind",
         "noise_share_percent", "paper_noise_percent"],
        [[r.model, r.method, r.n, r.changed_share_percent, r.paper_changed_percent, r.paper_changed_kind,
          r.noise_share_percent, r.paper_noise_percent] for r in summary.perturbation_rows],
    )
    tables["missing.csv"] = (
        ["model", "method", "seed", "path", "reason"],
        [[m.model, m.method, m.seed, None if m.path is None else str(m.path), m.reason] for m in summary.missing],
    )
    tables["runs.csv"] = (
        ["model", "method", "seed", "reported_epoch", "dev_all", "test_all", "device_name", "path"],
        [[r.model, r.method, r.seed, r.reported_epoch, r.accuracy[("dev", "All")], r.accuracy[("test", "All")],
          r.device_name, str(r.path)] for r in summary.runs],
    )
    written = []
    for name, (header, rows) in tables.items():
        path = out_dir / name
        _write_atomic(path, _csv_text(header, rows))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.summarize", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, help="folder holding run folders (RUNS/<model_tag>/<method>/seed<k>/)")
    parser.add_argument("--format", choices=("markdown", "csv", "both"), default=None,
                        help="markdown to stdout, CSV files in --out, or both (default: both with --out, else markdown)")
    parser.add_argument("--out", type=Path, default=None, help="folder for the CSV files and summary.md")
    parser.add_argument("--task", default="anli", help="task whose r1_/r2_/r3_ splits make the table (default anli)")
    args = parser.parse_args(argv)
    output_format = args.format or ("both" if args.out else "markdown")
    if output_format in ("csv", "both") and args.out is None:
        parser.error(f"--format {output_format} needs --out DIR for the CSV files")
    try:
        runs = load_runs(runs_dir=args.runs, task=args.task)
        if not runs:
            raise ValueError(f"{args.runs}: no run folders (folders with run_config.json) found")
        summary = summarize(runs=runs)
    except ValueError as exc:
        print(f"summarize: error: {exc}", file=sys.stderr)
        return 1
    if output_format in ("markdown", "both"):
        text = render_markdown(summary=summary)
        print(text)
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            _write_atomic(args.out / "summary.md", text + "\n")
    if output_format in ("csv", "both"):
        for path in write_csv(summary=summary, out_dir=args.out):
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
