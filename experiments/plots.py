"""Draw the paper's result figures from run folders, with the spread over seeds.

- figure3.png: accuracy against SMART's perturbation size (x = a measured size, %, log scale;
  one panel per SMART variant and model with sweep runs), and against 1-1's noise_size
  (`1-1@noise_size=...` sweep runs), as in the paper's Figure 3. For `smart_mtdnn@...` (what
  the paper swept) x is the size MT-DNN's own code logs, the figure the paper most plausibly
  plotted (its default-step value is the one near the paper's ≈0.003%; the noise it adds is
  ≈ the embedding's own size at every step); for the corrected `smart@...`, ‖δ‖₂ / ‖token
  embedding‖₂.
- tables23_test_all.png: test accuracy (All) per method, mean with a std-over-seeds error bar,
  one panel per model, the paper's Tables 2/3 values as markers.

    python -m experiments.plots RUNS --out DIR

Numbers come from experiments.summarize (same reported-epoch rule). A figure whose runs are
absent is skipped with a log line. Figure 2 (the PCA plot) is drawn elsewhere.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from experiments import paper_values
from experiments.summarize import Summary, load_runs, method_label, parse_method, summarize

LOG = logging.getLogger(__name__)

# Fixed sizes (no tight bbox) so every PNG is exactly panels × PANEL_WIDTH_IN × DPI wide.
DPI = 100
FIGURE_HEIGHT_IN = 4.0
PANEL_WIDTH_IN = 5.0
BAR_PANEL_WIDTH_IN = 7.0

FIGURE3_NAME = "figure3.png"
BARS_NAME = "tables23_test_all.png"


@dataclass(frozen=True)
class SweepPoint:
    method: str
    x: float
    n: int
    dev_mean: float
    dev_std: float | None
    test_mean: float
    test_std: float | None
    label: str  # the swept setting, written beside the point
    # SMART points: both measured sizes (percent), whichever x is.
    applied_percent: float | None = None
    logged_percent: float | None = None


# SMART variant -> (which measured size is x, the axis label, its panel title).
SMART_SWEEP_X: dict[str, tuple[str, str, str]] = {
    paper_values.PAPER_SMART: ("mtdnn_logged", "MT-DNN-logged size: mean|η·g/(max|noise+η·g|+ε)| / mean|embedding output| (%)",
                               "+SMART (MT-DNN's code, the paper's)"),
    paper_values.CORRECTED_SMART: ("applied", "‖δ‖₂ / ‖token embedding‖₂ (%)", "+SMART (corrected)"),
}


def _point(summary: Summary, model: str, method: str, x: float, *, option: str, **sizes) -> SweepPoint:
    dev = summary.cells[(model, method, "dev", "All")]
    test = summary.cells[(model, method, "test", "All")]
    value = summary.options.get((model, method), {}).get(option)
    label = f"{option}={value:g}" if isinstance(value, (int, float)) else method
    return SweepPoint(method, x, test.n, dev.mean, dev.std, test.mean, test.std, f"{label} (n={test.n})", **sizes)


def _has_sweep(summary: Summary, model: str, base: str) -> bool:
    return any(parse_method(method=m)[0] == base and "@" in m for m in summary.methods.get(model, ()))


def smart_sweep_points(*, summary: Summary, variant: str = paper_values.PAPER_SMART) -> dict[str, list[SweepPoint]]:
    """model -> runs of one SMART variant (plain and `<variant>@...`), x = its measured size (SMART_SWEEP_X)."""
    if variant not in SMART_SWEEP_X:
        raise ValueError(f"SMART variant {variant!r}: expected one of {', '.join(SMART_SWEEP_X)}")
    measure = SMART_SWEEP_X[variant][0]
    rows = {(r.model, r.method): r for r in summary.perturbation_rows}
    points: dict[str, list[SweepPoint]] = {}
    for model in summary.models:
        if not _has_sweep(summary, model, variant):
            continue
        for method in summary.methods[model]:
            if parse_method(method=method)[0] != variant:
                continue
            row = rows.get((model, method))
            applied = row.noise_share_percent if row else None
            logged = row.mtdnn_logged_share_percent if row else None
            x = logged if measure == "mtdnn_logged" else applied
            if x is None or x <= 0:
                LOG.info("figure 3: %s %s has no positive measured %s size; left out", model, method, measure)
                continue
            points.setdefault(model, []).append(_point(summary, model, method, x, option="adv_step_size",
                                                       applied_percent=applied, logged_percent=logged))
    return {model: sorted(found, key=lambda p: p.x) for model, found in points.items()}


def smart_sweeps(*, summary: Summary) -> list[tuple[str, str, list[SweepPoint]]]:
    """(variant, model, points) for every SMART variant and model with sweep runs, the paper's first."""
    return [(variant, model, points) for variant in SMART_SWEEP_X
            for model, points in smart_sweep_points(summary=summary, variant=variant).items()]


def noise_size_sweep_points(*, summary: Summary) -> dict[str, list[SweepPoint]]:
    """model -> 1-1 runs (plain and `1-1@noise_size=...`), x = noise_size from the run options."""
    points: dict[str, list[SweepPoint]] = {}
    for model in summary.models:
        if not _has_sweep(summary, model, "1-1"):
            continue
        for method in summary.methods[model]:
            if parse_method(method=method)[0] != "1-1":
                continue
            value = summary.options.get((model, method), {}).get("noise_size")
            try:
                x = float(value)
            except (TypeError, ValueError):
                LOG.info("figure 3: %s %s has no noise_size in perturbation_options; left out", model, method)
                continue
            points.setdefault(model, []).append(_point(summary, model, method, x, option="noise_size"))
    return {model: sorted(found, key=lambda p: p.x) for model, found in points.items()}


def _save(figure: Figure, path: Path) -> Path:
    """Write the PNG atomically: a reader never sees half an image."""
    FigureCanvasAgg(figure)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as handle:
        figure.savefig(handle, format="png", dpi=DPI)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


def _model_title(model: str) -> str:
    return paper_values.MODEL_LABELS.get(model, model)


def _draw_sweep(axes, points: list[SweepPoint], *, label_prefix: str = "", annotate: bool = False) -> None:
    xs = [p.x for p in points]
    axes.errorbar(xs, [p.test_mean for p in points], yerr=[p.test_std or 0.0 for p in points],
                  marker="o", capsize=3, label=f"{label_prefix}test (mean ± std over seeds)")
    axes.errorbar(xs, [p.dev_mean for p in points], yerr=[p.dev_std or 0.0 for p in points],
                  marker="s", linestyle="--", capsize=3, label=f"{label_prefix}dev")
    if annotate:
        for point in points:
            axes.annotate(point.label, (point.x, point.test_mean), textcoords="offset points", xytext=(4, 6),
                          fontsize=7)


def plot_figure3(*, summary: Summary, out_dir: Path | str) -> list[Path]:
    """Figure 3 as one PNG: SMART panels (one per variant and model) then the 1-1 noise_size panel."""
    smart = smart_sweeps(summary=summary)
    noise_size = noise_size_sweep_points(summary=summary)
    if not smart and not noise_size:
        LOG.info("skipping %s: no smart_mtdnn@..., smart@... or 1-1@... sweep runs", FIGURE3_NAME)
        return []
    panels = len(smart) + (1 if noise_size else 0)
    figure = Figure(figsize=(panels * PANEL_WIDTH_IN, FIGURE_HEIGHT_IN), dpi=DPI, layout="constrained")
    all_axes = figure.subplots(1, panels, squeeze=False)[0]
    for axes, (variant, model, points) in zip(all_axes, smart):
        _, x_label, title = SMART_SWEEP_X[variant]
        _draw_sweep(axes, points, annotate=True)
        axes.set_xscale("log")
        axes.margins(x=0.25)  # room for the setting written beside the outermost points
        paper_noise = paper_values.NOISE_SHARE_PERCENT.get(variant)
        if paper_noise is not None:  # only the SMART the paper ran has the paper's figure
            axes.axvline(paper_noise, color="grey", linestyle=":", label=f"paper SMART ≈ {paper_noise}%")
        axes.set_xlabel(x_label, fontsize=8)
        axes.set_ylabel("accuracy, All (%)")
        axes.set_title(f"{title}, {_model_title(model)}", fontsize=10)
        axes.legend(fontsize=8)
    if noise_size:
        axes = all_axes[-1]
        several = len(noise_size) > 1
        for model, points in noise_size.items():
            _draw_sweep(axes, points, label_prefix=f"{_model_title(model)} " if several else "")
        axes.axvline(0.5, color="grey", linestyle=":", label="paper's best (0.5)")
        axes.set_xlabel("noise_size (share of the way to the nearest word)")
        axes.set_ylabel("accuracy, All (%)")
        models = ", ".join(_model_title(m) for m in noise_size)
        axes.set_title(f"Method 1-1 noise_size, {models}")
        axes.legend()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [_save(figure, out_dir / FIGURE3_NAME)]


def plot_table_bars(*, summary: Summary, out_dir: Path | str) -> list[Path]:
    """Tables 2/3 test All per method: bars = mean, error bars = std over seeds, ◆ = paper."""
    models = [m for m in summary.models if any("@" not in method for method in summary.methods[m])]
    if not models:
        LOG.info("skipping %s: no finished runs of the table methods", BARS_NAME)
        return []
    figure = Figure(figsize=(len(models) * BAR_PANEL_WIDTH_IN, FIGURE_HEIGHT_IN), dpi=DPI, layout="constrained")
    for axes, model in zip(figure.subplots(1, len(models), squeeze=False)[0], models):
        methods = [m for m in summary.methods[model] if "@" not in m]
        cells = [summary.cells[(model, m, "test", "All")] for m in methods]
        positions = list(range(len(methods)))
        axes.bar(positions, [c.mean for c in cells], yerr=[c.std or 0.0 for c in cells], capsize=4,
                 color="tab:blue", alpha=0.8, label="this reproduction (mean ± std)")
        paper = [(i, paper_values.paper_accuracy(model=model, method=m, role="test", round_name="All"))
                 for i, m in enumerate(methods)]
        paper = [(i, v) for i, v in paper if v is not None]
        if paper:
            axes.scatter([i for i, _ in paper], [v for _, v in paper], marker="D", color="black", zorder=3,
                         label=f"paper (mean of {paper_values.SEEDS_PER_CELL} seeds)")
        low = min([c.mean - (c.std or 0.0) for c in cells] + [v for _, v in paper])
        high = max([c.mean + (c.std or 0.0) for c in cells] + [v for _, v in paper])
        # Differences are tenths of a point: bars from 0 would hide them.
        axes.set_ylim(low - 1.0, high + 1.0)
        axes.set_xticks(positions, [f"{method_label(method=m)} (n={c.n})" for m, c in zip(methods, cells)],
                        rotation=30, ha="right", rotation_mode="anchor", fontsize=8)
        axes.set_ylabel("test accuracy, All (%)")
        axes.set_title(f"Tables 2/3, {_model_title(model)}")
        axes.legend(fontsize=8)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [_save(figure, out_dir / BARS_NAME)]


def make_plots(*, runs_dir: Path | str, out_dir: Path | str, task: str = "anli") -> list[Path]:
    """Every figure this module draws; returns the PNGs written."""
    summary = summarize(runs=load_runs(runs_dir=runs_dir, task=task))
    return plot_figure3(summary=summary, out_dir=out_dir) + plot_table_bars(summary=summary, out_dir=out_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.plots", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, help="folder holding run folders (RUNS/<model_tag>/<method>/seed<k>/)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNG files")
    parser.add_argument("--task", default="anli", help="task whose r1_/r2_/r3_ splits are plotted (default anli)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="plots: %(message)s")
    try:
        written = make_plots(runs_dir=args.runs, out_dir=args.out, task=args.task)
    except ValueError as exc:
        print(f"plots: error: {exc}", file=sys.stderr)
        return 1
    for path in written:
        LOG.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
