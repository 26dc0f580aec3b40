"""Figure 3 of the paper: accuracy against SMART's perturbation size and against 1-1's noise_size.

Two sweeps, each cell a full training run (same flags and presets as experiments.table2):

- SMART's ascent step ``--adv_step_size`` over 1e-5 … 1e-1, for every model, with
  ``--perturbation smart_mtdnn``: SMART as MT-DNN's code runs it, what the paper swept. The x
  axis is not the step size but a size the runs measured. For ``smart_mtdnn`` it is the size
  MT-DNN's own code logs (mean |η·g / (max|noise + η·g| + ε)| over mean |embedding output|,
  percent), the figure the paper most plausibly plotted: it is the one near the paper's "SMART
  ≈ 0.003%", while the noise actually added is renormalised to ‖noise‖∞ ≈ 1 per token (about
  the embedding output's own size at any step). The table prints both. ``--smart_variants
  smart_mtdnn,smart`` sweeps the corrected ``smart`` too (x = ‖δ‖₂ / ‖token embedding‖₂).
  The default step (1e-5) is Table 2's run of each variant.
- 1-1's ``--noise_size`` over 0.0, 0.1, …, 1.0, for BERT-base (the paper's best: 0.5, which is
  Table 2's `1-1` run).

Sweep runs live in RUNS/<model>/smart_mtdnn@adv_step_size=<v>/ (and smart@... for the corrected
variant) and RUNS/<model>/1-1@noise_size=<v>/; the figure is drawn by experiments.plots into
RUNS/plots/figure3.png.

    python -m experiments.figure3 [--preset cpu] [--smart_step_sizes 1e-5,1e-3] [--noise_sizes 0,0.5,1]
        [--smart_variants smart_mtdnn,smart]
"""

from __future__ import annotations

import argparse
import logging
import sys

from experiments import grid, paper_values
from experiments.plots import SMART_SWEEP_X, noise_size_sweep_points, plot_figure3, smart_sweeps
from experiments.summarize import summarize
from experiments.table2 import notes_text

SMART_STEP_SIZES = "1e-5,1e-4,1e-3,1e-2,1e-1"
NOISE_SIZES = "0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1"
SMART_VARIANTS = paper_values.PAPER_SMART  # what the paper swept


def _floats(text: str, *, flag: str) -> list[float]:
    values = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            values.append(float(part))
        except ValueError:
            raise grid.GridError(f"{flag} {text}: {part!r} is not a number") from None
    if not values:
        raise grid.GridError(f"{flag} {text!r}: expected at least one value")
    return values


def smart_variants(text: str) -> list[str]:
    """'smart_mtdnn,smart' -> the SMART providers to sweep, each named once."""
    names = list(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    unknown = [n for n in names if n not in SMART_SWEEP_X]
    if unknown or not names:
        raise grid.GridError(f"--smart_variants {text!r}: expected a comma-separated list of "
                             f"{', '.join(SMART_SWEEP_X)}")
    return names


def sweep_methods(*, step_sizes: list[float], noise_sizes: list[float],
                  variants: tuple[str, ...] = (paper_values.PAPER_SMART,)) -> tuple[list[grid.Method], list[grid.Method]]:
    """(SMART methods, 1-1 methods); a value equal to the provider's default shares Table 2's folder."""
    smart = [grid.method(perturbation=variant, adv_step_size=v) for variant in variants for v in step_sizes]
    one_one = [grid.method(perturbation="1-1", noise_size=v) for v in noise_sizes]
    return smart, one_one


def render_sweeps(*, summary) -> str:
    lines = ["# Figure 3: accuracy against perturbation size", ""]
    percent = lambda value: "—" if value is None else f"{value:.3g}"
    for variant, model, points in smart_sweeps(summary=summary):
        measure, _, title = SMART_SWEEP_X[variant]
        lines += [f"## {title} (`{variant}`), {model}", "",
                  f"x = the {'MT-DNN-logged' if measure == 'mtdnn_logged' else 'applied'} size. Applied = "
                  "‖noise‖₂ / ‖what it is added to‖₂ ("
                  + ("the embedding block's output" if variant == paper_values.PAPER_SMART else "the token embedding")
                  + "); MT-DNN-logged = mean |η·g / (max|noise + η·g| + ε)| / mean |embedding output|.", "",
                  "| setting | x (%) | applied (%) | MT-DNN-logged (%) | n | dev All | test All |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {p.label} | {p.x:.3g} | {percent(p.applied_percent)} | {percent(p.logged_percent)} | {p.n} | "
                  f"{p.dev_mean:.2f} | {p.test_mean:.2f} |" for p in points]
        lines.append("")
    for model, points in noise_size_sweep_points(summary=summary).items():
        lines += [f"## 1-1 noise_size, {model}", "", "| noise_size | n | dev All | test All |", "|---|---|---|---|"]
        lines += [f"| {p.x:g} | {p.n} | {p.dev_mean:.2f} | {p.test_mean:.2f} |" for p in points]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.figure3", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smart_step_sizes", default=SMART_STEP_SIZES,
                        help=f"SMART --adv_step_size values (default {SMART_STEP_SIZES})")
    parser.add_argument("--smart_variants", default=SMART_VARIANTS,
                        help="SMART providers whose step size is swept, comma-separated: smart_mtdnn (MT-DNN's "
                             f"code, what the paper swept) and/or smart (corrected) (default {SMART_VARIANTS})")
    parser.add_argument("--noise_sizes", default=NOISE_SIZES, help=f"1-1 --noise_size values (default {NOISE_SIZES})")
    parser.add_argument("--noise_models", default=None,
                        help="models of the noise_size sweep, comma-separated tags (default: the first model, "
                             "BERT-base in the paper)")
    grid.add_grid_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        request = grid.resolve_request(args)
        smart, one_one = sweep_methods(step_sizes=_floats(args.smart_step_sizes, flag="--smart_step_sizes"),
                                       noise_sizes=_floats(args.noise_sizes, flag="--noise_sizes"),
                                       variants=tuple(smart_variants(args.smart_variants)))
        by_tag = {model.tag: model for model in request.models}
        noise_tags = [t.strip() for t in (args.noise_models or request.models[0].tag).split(",") if t.strip()]
        unknown = [t for t in noise_tags if t not in by_tag]
        if unknown:
            raise grid.GridError(f"--noise_models {args.noise_models}: {', '.join(unknown)} not among the "
                                 f"--models ({', '.join(by_tag)})")
        cells = grid.build_cells(models=request.models, methods=smart, seeds=request.seeds)
        cells += grid.build_cells(models=[by_tag[t] for t in noise_tags], methods=one_one, seeds=request.seeds)
        status = grid.execute(request=request, cells=cells)
        if request.dry_run or status == 130:
            return status
        summary = summarize(runs=grid.grid_runs(runs_dir=request.settings.runs_dir, cells=cells))
        text = notes_text(request.settings) + render_sweeps(summary=summary)
        print(text)
        grid.write_text_atomic(request.settings.runs_dir / "tables" / "figure3.md", text)
        for png in plot_figure3(summary=summary, out_dir=request.settings.runs_dir / "plots"):
            print(f"wrote {png}", file=sys.stderr)
        return status
    except grid.GridError as exc:
        print(f"python -m experiments.figure3: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
