"""The numbers of every table: accuracies over seeds, significance tests, time and noise rows.

One job: from the Run records of experiments.run_loading, group the usable runs by (model,
method), compute mean and sample standard deviation over seeds, test each method against
plain fine-tuning and both SMARTs, MT-DNN's (``smart_mtdnn``, the paper's +SMART) and the
corrected ``smart`` (paired t-test on common seeds, else Welch's), and build the
training-time and perturbation-size rows, listing every run or seed that is missing. The
result is one :class:`Summary`; experiments.table_rendering and experiments.table_csv print it.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from statistics import mean, stdev

from scipy import stats

from experiments import paper_values
from experiments.run_loading import Run, mean_or_none, parse_method

# The methods every other method is compared against: plain fine-tuning, SMART as the paper
# ran it (MT-DNN's code) and the corrected SMART.
REFERENCES = ("none", paper_values.PAPER_SMART, paper_values.CORRECTED_SMART)

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
    ratio_to_smart_mtdnn: float | None  # to SMART as the paper ran it
    ratio_to_smart: float | None  # to the corrected SMART


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
    # What the noise share is measured against: "token embedding" or "embedding output".
    space: str = "token embedding"
    # smart_mtdnn only: the size MT-DNN's own code logs (percent).
    mtdnn_logged_share_percent: float | None = None
    # Which of the two measured sizes the paper's figure sits beside: "applied" or "mtdnn_logged".
    paper_noise_measure: str | None = None


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


def _model_order(models) -> tuple:
    return tuple(m for m in paper_values.MODELS if m in models) + tuple(sorted(set(models) - set(paper_values.MODELS)))


def _method_order(methods) -> tuple:
    def key(method: str) -> tuple:
        base, _ = parse_method(method=method)
        paper_index = paper_values.METHODS.index(base) if base in paper_values.METHODS else len(paper_values.METHODS)
        return ("@" in method, paper_index, method)

    return tuple(sorted(set(methods), key=key))


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
        return mean_or_none([r.seconds_per_update for r in group])

    rows = []
    for model in models:
        devices = sorted({device for (m, _, device) in by_device if m == model})
        for device in devices:
            for method in methods[model]:
                group = by_device.get((model, method, device))
                if not group:
                    continue
                spu = seconds(model, method, device)
                ratios = {}
                for reference in REFERENCES:
                    ref = seconds(model, reference, device)
                    ratios[reference] = spu / ref if spu is not None and ref else None
                rows.append(TimeRow(
                    model, method, device, len(group), spu,
                    mean_or_none([r.wall_time_s for r in group]),
                    mean_or_none([r.forward_passes_per_update for r in group]),
                    mean_or_none([r.backward_passes_per_update for r in group]),
                    ratios.get("none"), ratios.get(paper_values.PAPER_SMART),
                    ratios.get(paper_values.CORRECTED_SMART),
                ))
    return rows


def perturbation_space(*, method: str, options: dict) -> str:
    """What a method's noise share is measured against: its perturbation's own input space."""
    base, _ = parse_method(method=method)
    if base == paper_values.PAPER_SMART or (base == paper_values.CORRECTED_SMART
                                            and options.get("smart_at") == "embedding_output"):
        return "embedding output"
    return "token embedding"


def _percent(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


def _perturbation_rows(groups: dict, *, models: tuple, methods: dict) -> list[PerturbationRow]:
    rows = []
    for model in models:
        for method in methods[model]:
            group = groups[(model, method)]
            changed = mean_or_none([r.changed_share for r in group])
            noise = mean_or_none([r.noise_share for r in group])
            if changed is None and noise is None:
                continue
            base, _ = parse_method(method=method)
            paper_changed, kind = None, None
            if base in paper_values.WORDNET_METHODS and model in paper_values.WORDNET_REPLACED_SHARE_PERCENT:
                paper_changed, kind = paper_values.WORDNET_REPLACED_SHARE_PERCENT[model], "measured"
            elif method in paper_values.DESIGN_CHANGED_SHARE_PERCENT:
                paper_changed, kind = paper_values.DESIGN_CHANGED_SHARE_PERCENT[method], "by design"
            rows.append(PerturbationRow(
                model, method, len(group), _percent(changed), _percent(noise),
                paper_changed, kind, paper_values.NOISE_SHARE_PERCENT.get(method),
                space=perturbation_space(method=method, options=group[0].options),
                mtdnn_logged_share_percent=_percent(mean_or_none([r.mtdnn_logged_share for r in group])),
                paper_noise_measure=paper_values.NOISE_SHARE_MEASURE.get(method),
            ))
    return rows
