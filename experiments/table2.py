"""Table 2 of the paper: fine-tuning, SMART and the similar-word methods 1-1, 1-2, 2-1, 2-2, 2-3.

Two SMART rows: "+SMART" is ``smart_mtdnn`` (SMART as MT-DNN's code runs it, what the paper ran;
the paper's +SMART values are printed beside it) and "+SMART (corrected)" is ``smart`` (the
algorithm as the SMART paper writes it; no paper value). Trains the grid (each method × BERT-base uncased and RoBERTa-large × 6 seeds; finished runs are
skipped, interrupted ones resumed), then prints dev/test accuracy "All" (pooled over A1-A3)
as mean ± std over seeds beside the paper's value, with the significance, training-time and
perturbation-size tables of experiments.summarize. Written to RUNS/tables/table2.md; the
bar plot of test accuracy goes to RUNS/plots/tables23_test_all.png.

    python -m experiments.table2                          # the paper's grid (GPU)
    python -m experiments.table2 --preset cpu             # the same grid on the packaged MiniLM, minutes
    python -m experiments.table2 --dry_run --gpus 2       # the torchrun commands, nothing run
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from experiments import grid, paper_values
from experiments.summarize import Summary, method_label, render_markdown, summarize

# smart_mtdnn is the paper's +SMART; smart, the corrected algorithm, is a row of ours beside it.
METHODS = ("none", "smart_mtdnn", "smart", "1-1", "1-2", "2-1", "2-2", "2-3")
# Every method of Tables 2 and 3 (Table 4 breaks these down per round).
TABLE23_METHODS = METHODS + ("wordnet_1.0", "1-1_1.0", "wordnet_0.5")


def _cell_text(summary: Summary, model: str, method: str, role: str) -> str:
    cell = summary.cells.get((model, method, role, "All"))
    paper = paper_values.paper_accuracy(model=model, method=method, role=role, round_name="All")
    paper_text = f" ({paper:.1f})" if paper is not None else ""
    if cell is None:
        return "—" + paper_text
    spread = "n/a" if cell.std is None else f"{cell.std:.2f}"
    return f"{cell.mean:.2f} ± {spread}{paper_text}"


def render_all_table(*, summary: Summary, title: str, methods: tuple[str, ...], models: tuple[str, ...]) -> str:
    """The paper's Tables 2/3 layout: one row per method, dev and test "All" per model."""
    header = ["method"]
    for model in models:
        label = paper_values.MODEL_LABELS.get(model, model)
        header += [f"{label} n", f"{label} dev All", f"{label} test All"]
    lines = [f"# {title}", "",
             "Accuracy (%), pooled over A1+A2+A3; mean ± sample std over seeds, the paper's value (mean of "
             f"{paper_values.SEEDS_PER_CELL} seeds) in parentheses; each run at its best pooled-dev epoch.", "",
             paper_values.SMART_LEGEND, "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in methods:
        row = [method_label(method=method)]
        for model in models:
            cell = summary.cells.get((model, method, "test", "All"))
            row += [str(cell.n if cell else 0), _cell_text(summary, model, method, "dev"),
                    _cell_text(summary, model, method, "test")]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def details(*, summary: Summary) -> str:
    """experiments.summarize's report from its significance section on (the per-round tables are Table 4)."""
    text = render_markdown(summary=summary)
    start = text.find("\n## Significance")
    return text[start + 1:] if start >= 0 else text


def notes_text(settings: grid.GridSettings) -> str:
    return "".join(f"> NOTE: {note}\n\n" for note in settings.notes)


def draw_bars(*, request: grid.GridRequest) -> list[Path]:
    """tables23_test_all.png from every Table 2/3 run of the requested models and seeds."""
    from experiments.plots import plot_table_bars

    methods = [grid.method(perturbation=name) for name in TABLE23_METHODS]
    cells = grid.build_cells(models=request.models, methods=methods, seeds=request.seeds)
    runs = grid.grid_runs(runs_dir=request.settings.runs_dir, cells=cells)
    if not any(run.problem is None for run in runs):
        return []
    return plot_table_bars(summary=summarize(runs=runs), out_dir=request.settings.runs_dir / "plots")


def run_table(*, argv: list[str] | None, prog: str, description: str, default_methods: tuple[str, ...],
              title: str, out_name: str, render) -> int:
    """Shared by tables 2-4: parse, run the grid, render, write RUNS/tables/<out_name>, draw the bars."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=",".join(default_methods),
                        help="comma-separated method folders: a --perturbation name, optionally @option=value "
                             f"(e.g. smart_mtdnn@adv_step_size=1e-3); default {','.join(default_methods)}")
    grid.add_grid_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        request = grid.resolve_request(args)
        methods = grid.parse_methods(args.methods)
        cells = grid.build_cells(models=request.models, methods=methods, seeds=request.seeds)
        status = grid.execute(request=request, cells=cells)
        if request.dry_run or status == 130:
            return status
        runs = grid.grid_runs(runs_dir=request.settings.runs_dir, cells=cells)
        summary = summarize(runs=runs)
        models = tuple(model.tag for model in request.models)
        text = notes_text(request.settings) + render(summary=summary, title=title,
                                                     methods=tuple(m.folder for m in methods), models=models)
        print(text)
        path = grid.write_text_atomic(request.settings.runs_dir / "tables" / out_name, text)
        print(f"wrote {path}", file=sys.stderr)
        for png in draw_bars(request=request):
            print(f"wrote {png}", file=sys.stderr)
        return status
    except grid.GridError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2


def render_table2(*, summary: Summary, title: str, methods: tuple[str, ...], models: tuple[str, ...]) -> str:
    return render_all_table(summary=summary, title=title, methods=methods, models=models) + "\n" + details(summary=summary)


def main(argv: list[str] | None = None) -> int:
    return run_table(argv=argv, prog="python -m experiments.table2", description=__doc__, default_methods=METHODS,
                     title="Table 2: fine-tuning, SMART and noise toward similar words (ANLI, All)",
                     out_name="table2.md", render=render_table2)


if __name__ == "__main__":
    sys.exit(main())
