"""Does today's code reproduce committed runs exactly? Compare a rerun's records with the committed ones.

The GLUE suite extends the committed SNLI grid (docs/results/snli_cpu_runs/) with new methods and
seeds instead of rerunning it, which is only sound if today's code trains those cells to the same
numbers. Rerun one old cell into a scratch folder, then compare: every train_epoch loss and every
eval accuracy/loss of each (method, seed) present in both trees must be identical (the grid fixes
seeds and data order; on the same machine and library versions a CPU run is deterministic).

    python -m experiments.head_to_head --suite snli --phases train --methods none --seeds 1 \\
        --output /tmp/snli_rerun --quiet
    python -m experiments.rerun_check --committed docs/results/snli_cpu_runs --rerun /tmp/snli_rerun/packaged-minilm
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

COMPARED = {"train_epoch": ("train_loss", "updates"), "eval": ("accuracy", "loss", "examples")}


def records(run_dir: Path) -> list[tuple]:
    out = []
    for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        keys = COMPARED.get(record.get("kind"))
        if keys:
            out.append((record["kind"], record.get("epoch"), record.get("split"),
                        tuple((k, record.get(k)) for k in keys)))
    return out


def compare(*, committed: Path, rerun: Path) -> tuple[list[str], list[str]]:
    """(cells identical, differences): over the method/seed<k> folders both trees hold, finished in the rerun."""
    same, different = [], []
    for summary in sorted(Path(rerun).glob("*/seed*/run_summary.json")):
        cell = summary.parent.relative_to(rerun)
        old = Path(committed) / cell
        if not (old / "metrics.jsonl").is_file() or not json.loads(summary.read_text()).get("finished"):
            continue
        mine, theirs = records(summary.parent), records(old)
        if mine == theirs:
            same.append(str(cell))
        else:
            first = next((f"{a} != {b}" for a, b in zip(mine, theirs) if a != b), f"{len(mine)} vs {len(theirs)} records")
            different.append(f"{cell}: {first}")
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
        print(f"identical: {cell}")
    for line in different:
        print(f"DIFFERENT: {line}")
    if not same and not different:
        print("error: no finished rerun cell has a committed counterpart", file=sys.stderr)
        return 2
    return 1 if different else 0


if __name__ == "__main__":
    sys.exit(main())
