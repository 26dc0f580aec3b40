"""Figure 3 of the paper: accuracy against SMART's perturbation size and against 1-1's noise_size.

Two sweeps, each cell a full training run (same flags and presets as experiments.table2):

- SMART's ascent step ``--adv_step_size`` over 1e-5 … 1e-1, for every model. The x axis is not
  the step size but what the runs measured: ‖perturbation‖₂ / ‖token embedding‖₂ in percent
  (the paper: SMART ≈ 0.003%). The provider's default step (1e-5) is Table 2's `smart` run.
- 1-1's ``--noise_size`` over 0.0, 0.1, …, 1.0, for BERT-base (the paper's best: 0.5, which is
  Table 2's `1-1` run).

Sweep runs live in RUNS/<model>/smart@adv_step_size=<v>/ and RUNS/<model>/1-1@noise_size=<v>/;
the figure is drawn by experiments.plots into RUNS/plots/figure3.png.

    python -m experiments.figure3 [--preset cpu] [--smart_step_sizes 1e-5,1e-3] [--noise_sizes 0,0.5,1]
"""

from __future__ import annotations

import argparse
import logging
import sys

from experiments import grid
from experiments.plots import noise_size_sweep_points, plot_figure3, smart_sweep_points
from experiments.summarize import summarize
from experiments.table2 import notes_text

SMART_STEP_SIZES = "1e-5,1e-4,1e-3,1e-2,1e-1"
NOISE_SIZES = "0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1"


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


def sweep_methods(*, step_sizes: list[float], noise_sizes: list[float]) -> tuple[list[grid.Method], list[grid.Method]]:
    """(SMART methods, 1-1 methods); a value equal to the provider's default shares Table 2's folder."""
    smart = [grid.method(perturbation="smart", adv_step_size=v) for v in step_sizes]
    one_one = [grid.method(perturbation="1-1", noise_size=v) for v in noise_sizes]
    return smart, one_one


def render_sweeps(*, summary) -> str:
    lines = ["# Figure 3: accuracy against perturbation size", ""]
    for model, points in smart_sweep_points(summary=summary).items():
        lines += [f"## SMART, {model}", "", "| setting | measured perturbation / embedding (%) | n | dev All | test All |",
                  "|---|---|---|---|---|"]
        lines += [f"| {p.label} | {p.x:.3g} | {p.n} | {p.dev_mean:.2f} | {p.test_mean:.2f} |" for p in points]
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
                                       noise_sizes=_floats(args.noise_sizes, flag="--noise_sizes"))
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
