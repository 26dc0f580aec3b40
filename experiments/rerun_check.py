"""Does today's code reproduce committed runs exactly? Compare a rerun's records with the committed ones.

The GLUE suite extends the committed SNLI grid (docs/results/snli_cpu_runs/) with new methods and
seeds instead of rerunning it, which is only sound if today's code trains those cells to the same
numbers. Rerun one old cell into a scratch folder, then compare: every reported figure (each
evaluation's accuracy and metrics, examples, updates) of each (method, seed) present in both trees
must be identical; the losses are printed as the largest relative difference, since a library
update moves them in the 7th digit without changing a figure (seen: transformers 5.24 -> 5.25).

    python -m experiments.head_to_head --suite snli --phases train --methods none --seeds 1 \\
        --output /tmp/snli_rerun --quiet
    python -m experiments.rerun_check --committed docs/results/snli_cpu_runs --rerun /tmp/snli_rerun/packaged-minilm
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# What the tables report (compared exactly) and what only drifts with library versions (losses: printed).
FIGURES = {"train_epoch": ("updates", "examples"), "eval": ("accuracy", "examples", "metrics")}
LOSSES = {"train_epoch": "train_loss", "eval": "loss"}


def records(run_dir: Path) -> list[tuple]:
    out = []
    for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        kind = record.get("kind")
        if kind in FIGURES:
            figures = tuple((k, record.get(k)) for k in FIGURES[kind] if not (k == "metrics" and k not in record))
            out.append(((kind, record.get("epoch"), record.get("split")), figures, record.get(LOSSES[kind])))
    return out


def _without_missing_metrics(figures: tuple, other: tuple) -> tuple:
    """Older runs wrote no eval 'metrics' (accuracy only): compare what both have."""
    keys = {k for k, _ in other}
    return tuple((k, v) for k, v in figures if k in keys)


def compare(*, committed: Path, rerun: Path) -> tuple[list[str], list[str]]:
    """(cells whose reported figures are identical, with the largest relative loss drift; cells that differ)."""
    same, different = [], []
    for summary in sorted(Path(rerun).glob("*/seed*/run_summary.json")):
        cell = summary.parent.relative_to(rerun)
        old = Path(committed) / cell
        if not (old / "metrics.jsonl").is_file() or not json.loads(summary.read_text()).get("finished"):
            continue
        mine, theirs = records(summary.parent), records(old)
        problem, drift = None, 0.0
        if [m[0] for m in mine] != [t[0] for t in theirs]:
            problem = f"records {[m[0] for m in mine]} != {[t[0] for t in theirs]}"
        for (where, figures, loss), (_, their_figures, their_loss) in zip(mine, theirs):
            a, b = _without_missing_metrics(figures, their_figures), _without_missing_metrics(their_figures, figures)
            if problem is None and a != b:
                problem = f"{where}: {a} != {b}"
            if loss is not None and their_loss:
                drift = max(drift, abs(loss - their_loss) / abs(their_loss))
        if problem is None:
            same.append(f"{cell} (losses: largest relative difference {drift:.1e})")
        else:
            different.append(f"{cell}: {problem}")
    return same, different


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.rerun_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--committed", required=True, help="the committed runs: <method>/seed<k>/ folders")
    parser.add_argument("--rerun", required=True, help="the rerun's <method>/seed<k>/ folders (RUNS/<model_tag>)")
    args = parser.parse_args(argv)
    for flag, folder in (("--committed", args.committed), ("--rerun", args.rerun)):
        if not Path(folder).is_dir():
            print(f"error: {flag} {folder}: not a folder", file=sys.stderr)
            return 2
    same, different = compare(committed=Path(args.committed), rerun=Path(args.rerun))
    for cell in same:
        print(f"same figures: {cell}")
    for line in different:
        print(f"DIFFERENT: {line}")
    if not same and not different:
        print("error: no finished rerun cell has a committed counterpart", file=sys.stderr)
        return 2
    return 1 if different else 0


if __name__ == "__main__":
    sys.exit(main())
