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
import sys
from pathlib import Path

# The public names the table and figure scripts import from here; each lives in the module of its job.
from experiments.run_loading import Run, load_runs, model_tag, parse_method, reported_epoch
from experiments.seed_statistics import (
    REFERENCES, CellStats, Comparison, MissingRun, PerturbationRow, Summary, TimeRow, compare_seeds, summarize,
)
from experiments.table_csv import write_csv, write_text_atomic
from experiments.table_rendering import method_label, render_markdown

__all__ = [
    "REFERENCES", "CellStats", "Comparison", "MissingRun", "PerturbationRow", "Run", "Summary", "TimeRow",
    "compare_seeds", "load_runs", "main", "method_label", "model_tag", "parse_method", "render_markdown",
    "reported_epoch", "summarize", "write_csv", "write_text_atomic",
]


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
            write_text_atomic(args.out / "summary.md", text + "\n")
    if output_format in ("csv", "both"):
        for path in write_csv(summary=summary, out_dir=args.out):
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
