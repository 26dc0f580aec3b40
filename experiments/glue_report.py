"""The GLUE head-to-head's analysis: docs/results/glue_cpu_plan.md applied to the grid's run folders.

Reads every cell's run folder (its final evaluation, seconds per update and advglue_eval.json),
and writes the results document (a verdict paragraph first, then per task: mean ± sd per method,
paired differences to ``none`` and ``smart_mtdnn`` with 95% intervals and the plan's verdicts;
pooled over tasks; AdvGLUE; cost), a long CSV (one row per run) and two plots: each task's figure
(clean and AdvGLUE) against seconds per update with seed error bars, and a forest plot of every
method's pooled difference to ``smart_mtdnn`` with its interval and the equivalence margin.
The statistics are experiments.equivalence's; the verdict paragraph is generated from them.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from experiments.equivalence import ALPHA, MARGIN, Decision, decide, paired, pooled
from experiments.glue_tasks import TASKS, final_evaluation
from experiments.table_csv import write_text_atomic

REFERENCES = ("smart_mtdnn", "none")
REFERENCE_LABELS = {"smart_mtdnn": "MT-DNN's SMART (smart_mtdnn)", "none": "fine-tuning (none)"}
PROPOSED = ("1-1", "1-2", "2-1", "wordnet_0.5")


@dataclass
class MethodTask:
    """Per-seed figures of one method on one task."""

    figure: dict[int, float] = field(default_factory=dict)
    metrics: dict[int, dict] = field(default_factory=dict)
    seconds_per_update: dict[int, float] = field(default_factory=dict)
    adv: dict[str, dict[int, float]] = field(default_factory=dict)  # AdvGLUE set -> seed -> accuracy (points)


@dataclass
class GridResults:
    tasks: list[str]
    methods: list[str]
    cells: dict[tuple[str, str], MethodTask]  # (task, method)
    adv_labels: dict[str, str]
    missing: list[str]


def _role(task: str) -> str:
    return "test" if task == "snli" else "dev"


def load_results(*, grids) -> GridResults:
    """Every finished run of the task grids (experiments.glue_suite.TaskGrid), read into per-seed figures."""
    from experiments.advglue_eval import ADV_SETS, read_advglue

    cells: dict[tuple[str, str], MethodTask] = {}
    methods: list[str] = []
    missing: list[str] = []
    adv_labels = {adv.name: adv.label for sets in ADV_SETS.values() for adv in sets}
    for grid in grids:
        spec = TASKS[grid.task]
        for cell in grid.cells:
            if cell.method.folder not in methods:
                methods.append(cell.method.folder)
            run_dir = cell.run_dir(grid.settings.runs_dir)
            try:
                summary = json.loads((run_dir / "run_summary.json").read_text(encoding="utf-8"))
                record = final_evaluation(run_dir, role=_role(grid.task))
            except (OSError, ValueError):
                summary, record = {}, None
            if not summary.get("finished") or record is None:
                missing.append(f"{grid.task}/{cell.method.folder}/seed{cell.seed}")
                continue
            entry = cells.setdefault((grid.task, cell.method.folder), MethodTask())
            entry.figure[cell.seed] = spec.figure(record["metrics"])
            entry.metrics[cell.seed] = record["metrics"]
            if summary.get("seconds_per_update") is not None:
                entry.seconds_per_update[cell.seed] = float(summary["seconds_per_update"])
            for name, result in read_advglue(run_dir).items():
                entry.adv.setdefault(name, {})[cell.seed] = 100.0 * float(result["accuracy"])
    return GridResults(tasks=[g.task for g in grids], methods=methods, cells=cells, adv_labels=adv_labels,
                       missing=missing)


# ------------------------------------------------------------------ the plan's comparisons


def decisions(results: GridResults, *, margin: float = MARGIN) -> dict[tuple, Decision]:
    """Every verdict of the plan: per reference, the pooled family (primary) and the per-task family."""
    out: dict[tuple, Decision] = {}
    for reference in REFERENCES:
        per_task, pooled_family = {}, {}
        for method in results.methods:
            if method == reference:
                continue
            comparisons = []
            for task in results.tasks:
                mine, theirs = results.cells.get((task, method)), results.cells.get((task, reference))
                if mine is None or theirs is None:
                    continue
                comparison = paired(values=mine.figure, reference=theirs.figure)
                per_task[(method, reference, task)] = comparison
                comparisons.append(comparison)
            if len(comparisons) == len(results.tasks):  # a method missing a task has no pooled comparison
                pooled_family[(method, reference, "pooled")] = pooled(per_task=comparisons)
        out.update(decide(comparisons=pooled_family, margin=margin))
        out.update(decide(comparisons=per_task, margin=margin))
    return out


# ------------------------------------------------------------------ rendering


def _mean_sd(values) -> str:
    values = list(values)
    if not values:
        return "—"
    spread = f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.2f}{spread}"


def _interval(decision: Decision) -> str:
    comparison = decision.comparison
    if comparison.n == 0:
        return "—"
    ci = comparison.interval(level=0.95)
    if ci is None:
        return f"{comparison.mean:+.2f} (1 seed)"
    return f"{comparison.mean:+.2f} [{ci[0]:+.2f}, {ci[1]:+.2f}]"


def _p(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def cost_ratios(results: GridResults, *, step_cost: dict[str, dict] | None = None) -> dict[str, dict[str, tuple[float, str]]]:
    """task -> method -> (seconds per update, source): the task's interleaved benchmark if given, else the runs' median."""
    out: dict[str, dict[str, tuple[float, str]]] = {}
    for task in results.tasks:
        bench = (step_cost or {}).get(task)
        for method in results.methods:
            if bench and method in bench.get("methods", {}):
                out.setdefault(task, {})[method] = (float(bench["methods"][method]["median_s"]), "benchmark")
                continue
            entry = results.cells.get((task, method))
            if entry and entry.seconds_per_update:
                out.setdefault(task, {})[method] = (statistics.median(entry.seconds_per_update.values()), "runs")
    return out


def _ratio(costs: dict[str, tuple[float, str]], method: str, reference: str) -> float | None:
    if method not in costs or reference not in costs or not costs[reference][0]:
        return None
    return costs[method][0] / costs[reference][0]


def pooled_cost_ratio(costs, method: str, reference: str) -> float | None:
    """Geometric mean over tasks of the per-task ratio of seconds per update."""
    import math

    ratios = [r for r in (_ratio(c, method, reference) for c in costs.values()) if r]
    return math.exp(statistics.mean(math.log(r) for r in ratios)) if ratios else None


def verdict_paragraph(results: GridResults, found: dict[tuple, Decision], costs) -> str:
    parts = []
    for method in results.methods:
        if method in REFERENCES:
            continue
        kind = ("proposed method" if method in PROPOSED else
                "SMART as its paper writes it" if method == "smart" else "control")
        pieces = []
        for reference in REFERENCES:
            decision = found.get((method, reference, "pooled"))
            if decision is None:
                pieces.append(f"no pooled comparison with {reference} ("
                              + ("not in this grid" if reference not in results.methods else "a task is missing") + ")")
                continue
            pieces.append(f"**{decision.verdict}** against {reference} (pooled difference {_interval(decision)} points [95% CI], "
                          f"Holm-adjusted p_TOST {_p(decision.p_tost_adjusted)})")
        ratio, against = pooled_cost_ratio(costs, method, "smart_mtdnn"), "smart_mtdnn"
        if ratio is None:
            ratio, against = pooled_cost_ratio(costs, method, "none"), "none"
        cost = f"at {ratio:.2f}x {against}'s seconds per update" if ratio else "cost not measured"
        adv = []
        for name, label in results.adv_labels.items():
            task = next((t for t in results.tasks if name in results.cells.get((t, method), MethodTask()).adv), None)
            if task is None:
                continue
            versus = []
            for reference in REFERENCES:
                other = results.cells.get((task, reference))
                if other is None or name not in other.adv:
                    continue
                comparison = paired(values=results.cells[(task, method)].adv[name], reference=other.adv[name])
                if comparison.n:
                    versus.append(f"{comparison.mean:+.1f} vs {reference}")
            if versus:
                adv.append(f"{label} {', '.join(versus)}")
        adv_text = ("; AdvGLUE accuracy (points, descriptive): " + "; ".join(adv)) if adv else ""
        parts.append(f"`{method}` ({kind}): {'; '.join(pieces)}; {cost}{adv_text}.")
    if not parts:
        return "No method besides the references has finished runs yet.\n"
    head = (f"Verdicts (docs/results/glue_cpu_plan.md: margin ±{MARGIN:g} point, TOST at {ALPHA:g}, Holm over the "
            f"methods for each reference; pooled over {len(results.tasks)} task(s): {', '.join(TASKS[t].label for t in results.tasks)}). ")
    return head + " ".join(parts) + "\n"


def render(results: GridResults, found: dict[tuple, Decision], costs, *, settings_lines: list[str]) -> str:
    lines = ["## Verdict", "", verdict_paragraph(results, found, costs), "## Settings", ""] + settings_lines + [""]
    lines += ["## Pooled over tasks (primary family: Holm over the methods, per reference)", "",
              "Per seed, the mean over tasks of the paired differences; 95% t-interval over seeds.", "",
              "| method | vs " + " | verdict | vs ".join(REFERENCES) + " | verdict |", "|---|---|---|---|---|"]
    for method in results.methods:
        row = [method]
        for reference in REFERENCES:
            decision = found.get((method, reference, "pooled"))
            row += ["—", "—"] if decision is None else [_interval(decision), decision.verdict]
        lines.append("| " + " | ".join(row) + " |")
    for task in results.tasks:
        spec = TASKS[task]
        lines += ["", f"## {spec.label} (figure: {spec.figure_name}; {', '.join(spec.shown)} shown)", "",
                  "| method | seeds | figure | " + " | ".join(spec.shown) + " | vs smart_mtdnn [95% CI] | p_TOST adj | verdict "
                  "| vs none [95% CI] | p_TOST adj | verdict |",
                  "|---|---|---|" + "---|" * len(spec.shown) + "---|---|---|---|---|---|"]
        for method in results.methods:
            entry = results.cells.get((task, method))
            if entry is None:
                continue
            row = [method, str(len(entry.figure)), _mean_sd(entry.figure.values())]
            row += [_mean_sd(100 * float(m[name]) for m in entry.metrics.values()) for name in spec.shown]
            for reference in REFERENCES:
                decision = found.get((method, reference, task))
                row += (["—", "—", "—"] if decision is None else
                        [_interval(decision), _p(decision.p_tost_adjusted), decision.verdict])
            lines.append("| " + " | ".join(row) + " |")
    lines += ["", "## AdvGLUE (descriptive: no verdict; differences unadjusted)", "",
              "Accuracy % on the AdvGLUE dev sets with the final weights, beside the clean figure; paired difference "
              "to each reference with its 95% CI.", "",
              "| set | method | clean | AdvGLUE | vs smart_mtdnn [95% CI] | vs none [95% CI] |", "|---|---|---|---|---|---|"]
    for task in results.tasks:
        for name, label in results.adv_labels.items():
            for method in results.methods:
                entry = results.cells.get((task, method))
                if entry is None or name not in entry.adv:
                    continue
                row = [label, method, _mean_sd(entry.figure.values()), _mean_sd(entry.adv[name].values())]
                for reference in REFERENCES:
                    other = results.cells.get((task, reference))
                    if other is None or name not in other.adv or reference == method:
                        row.append("—")
                        continue
                    comparison = paired(values=entry.adv[name], reference=other.adv[name])
                    ci = comparison.interval()
                    row.append(f"{comparison.mean:+.2f}" + (f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else ""))
                lines.append("| " + " | ".join(row) + " |")
    lines += ["", "## Cost (seconds per update)", "",
              "Source per task: `benchmark` = an interleaved step-cost benchmark on the task's sequence lengths "
              "(benchmarks/bench_step_cost.py --data glue:TASK); `runs` = the median of the grid's own runs (a shared "
              "machine: noisy).", "",
              "| task | method | s/update | source | ÷ none | ÷ smart_mtdnn |", "|---|---|---|---|---|---|"]
    for task, per_method in costs.items():
        for method, (seconds, source) in per_method.items():
            ratios = [_ratio(per_method, method, ref) for ref in ("none", "smart_mtdnn")]
            lines.append(f"| {TASKS[task].label} | {method} | {seconds:.3f} | {source} | "
                         + " | ".join("—" if r is None else f"{r:.2f}" for r in ratios) + " |")
    if results.missing:
        lines += ["", f"Not finished (not in any figure): {len(results.missing)} runs: "
                  + ", ".join(results.missing[:30]) + (" ..." if len(results.missing) > 30 else "")]
    return "\n".join(lines) + "\n"


def render_csv(results: GridResults) -> str:
    adv_names = list(results.adv_labels)
    rows = ["task,method,seed,figure,metrics,seconds_per_update," + ",".join(adv_names)]
    for (task, method), entry in results.cells.items():
        for seed in sorted(entry.figure):
            metrics = ";".join(f"{k}={100 * float(v):.4f}" for k, v in sorted(entry.metrics[seed].items()))
            adv = [entry.adv.get(name, {}).get(seed) for name in adv_names]
            spu = entry.seconds_per_update.get(seed)
            rows.append(",".join([task, method, str(seed), f"{entry.figure[seed]:.4f}", metrics,
                                  "" if spu is None else f"{spu:.4f}"]
                                 + ["" if v is None else f"{v:.4f}" for v in adv]))
    return "\n".join(rows) + "\n"


def plot_cost_figure(results: GridResults, costs, *, out: Path) -> Path:
    """Per task (and per AdvGLUE set), the figure against seconds per update, seed sd as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(task, None) for task in results.tasks]
    panels += [(task, name) for task in results.tasks for name in results.adv_labels
               if any(name in results.cells.get((task, m), MethodTask()).adv for m in results.methods)]
    columns = min(4, len(panels)) or 1
    rows = -(-len(panels) // columns) or 1
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False)
    for index, (task, adv) in enumerate(panels):
        axis = axes[index // columns][index % columns]
        for method in results.methods:
            entry = results.cells.get((task, method))
            cost = costs.get(task, {}).get(method)
            values = list((entry.adv.get(adv, {}) if adv else entry.figure).values()) if entry else []
            if not values or cost is None:
                continue
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            axis.errorbar([cost[0]], [statistics.mean(values)], yerr=[sd], fmt="o", capsize=3, label=method)
            axis.annotate(method, (cost[0], statistics.mean(values)), fontsize=7, xytext=(3, 3),
                          textcoords="offset points")
        axis.set_title(results.adv_labels[adv] if adv else f"{TASKS[task].label} ({TASKS[task].figure_name})", fontsize=9)
        axis.set_xlabel("seconds per update")
        axis.set_ylabel("AdvGLUE accuracy %" if adv else "figure (points)")
    for index in range(len(panels), rows * columns):
        axes[index // columns][index % columns].axis("off")
    return _save(figure, plt, out)


def _save(figure, plt, out: Path) -> Path:
    """Write the figure to ``out`` through a temporary file, so a half-drawn PNG never stands."""
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(out.name + ".tmp.png")
    figure.savefig(temporary, dpi=110)
    plt.close(figure)
    temporary.replace(out)
    return out


def plot_forest(results: GridResults, found: dict[tuple, Decision], *, reference: str = "smart_mtdnn", out: Path) -> Path:
    """Every method's pooled difference to the reference, its 95% (thin) and 90% (thick) interval, the margin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(m, found[(m, reference, "pooled")]) for m in results.methods if (m, reference, "pooled") in found]
    figure, axis = plt.subplots(figsize=(6.5, 0.45 * max(len(rows), 1) + 1.4))
    for y, (method, decision) in enumerate(reversed(rows)):
        comparison = decision.comparison
        if comparison.n == 0:
            continue
        for level, width in ((0.95, 1.2), (0.90, 3.5)):
            ci = comparison.interval(level=level)
            if ci:
                axis.plot(ci, [y, y], color="black", linewidth=width)
        axis.plot([comparison.mean], [y], "o", color="tab:blue")
        axis.annotate(decision.verdict, (comparison.mean, y), xytext=(0, 6), textcoords="offset points", fontsize=7,
                      ha="center")
    axis.axvspan(-MARGIN, MARGIN, color="tab:green", alpha=0.12)
    axis.axvline(0, color="grey", linewidth=0.8)
    axis.set_yticks(range(len(rows)), [m for m, _ in reversed(rows)])
    axis.set_xlabel(f"pooled difference to {reference} (points; 95% thin, 90% thick)")
    axis.set_title(f"shaded: the equivalence margin ±{MARGIN:g} (docs/results/glue_cpu_plan.md)", fontsize=8)
    return _save(figure, plt, out)


def read_step_cost(paths: dict[str, Path]) -> dict[str, dict]:
    out = {}
    for task, path in paths.items():
        try:
            out[task] = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"--step_cost {task}={path}: cannot read a bench_step_cost JSON ({exc})") from None
    return out


def report(*, grids, out_dir: Path, results_doc: Path | None, header: str, settings_lines: list[str],
           step_cost: dict[str, dict] | None = None) -> int:
    """Write OUT/tables/glue_cpu.md (+ .csv) and OUT/plots/, and the results document when asked; print the text."""
    results = load_results(grids=grids)
    if not results.cells:
        print("report: no finished runs yet")
        return 1
    found = decisions(results)
    costs = cost_ratios(results, step_cost=step_cost)
    text = render(results, found, costs, settings_lines=settings_lines)
    title = "# Head-to-head on GLUE and SNLI (CPU scale)\n\n"
    out_dir = Path(out_dir)
    write_text_atomic(out_dir / "tables" / "glue_cpu.md", title + text)
    write_text_atomic(out_dir / "tables" / "glue_cpu.csv", render_csv(results))
    plot_cost_figure(results, costs, out=out_dir / "plots" / "glue_cpu_cost.png")
    plot_forest(results, found, out=out_dir / "plots" / "glue_cpu_forest.png")
    if results_doc is not None:
        doc = Path(results_doc)
        write_text_atomic(doc, title + header + text)
        write_text_atomic(doc.with_suffix(".csv"), render_csv(results))
        plot_cost_figure(results, costs, out=doc.with_name(doc.stem + "_cost.png"))
        plot_forest(results, found, out=doc.with_name(doc.stem + "_forest.png"))
    print(text)
    print(f"wrote {out_dir / 'tables' / 'glue_cpu.md'}, glue_cpu.csv and {out_dir / 'plots'}/glue_cpu_{{cost,forest}}.png"
          + (f"; and {results_doc}" if results_doc else ""))
    return 0
