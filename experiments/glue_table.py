"""A table of GLUE runs: each task's own dev metrics at the run's selected epoch.

The paper's tables (``experiments.summarize``) are ANLI's: accuracy per round. GLUE tasks
are scored by different metrics (MCC for CoLA, Pearson/Spearman for STS-B, accuracy and F1
for MRPC), so this prints, for every finished run folder under RUNS, each evaluated task's
metrics on its pooled dev splits at the epoch the run selected (``run_summary.json``'s
``best_epoch``: the first metric of each task, averaged over tasks), the first metric marked
``*``; a multi-task run gets one row per task and its selection score.

    python -m experiments.glue_table RUNS
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _records(path: Path) -> list[dict]:
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise ValueError(f"{path}:{number}: not a JSON record") from None
    return records


def run_rows(*, run_dir: Path, root: Path) -> list[dict]:
    """One row per evaluated task of a finished run, at its selected epoch; [] for an unfinished run."""
    summary_path = run_dir / "run_summary.json"
    if not summary_path.is_file():
        return []
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    config = json.loads((run_dir / "run_config.json").read_text(encoding="utf-8"))
    if not summary.get("finished") or summary.get("best_epoch") is None:
        return []
    epoch = summary["best_epoch"]
    rows = []
    for record in _records(run_dir / "metrics.jsonl"):
        if record.get("kind") != "eval_pooled" or record.get("role") != "dev" or record.get("epoch") != epoch:
            continue
        # records of runs before the task kinds hold accuracy only
        metrics = record.get("metrics") or {"accuracy": record["accuracy"]}
        first = record.get("metric", "accuracy")
        rows.append({"run": str(run_dir.relative_to(root)) or ".", "method": config.get("perturbation", "?"),
                     "task": record["task"], "epoch": epoch, "metrics": metrics, "first": first,
                     "examples": record.get("examples"), "selection": summary.get("best_dev_score",
                                                                                  summary.get("best_dev_accuracy"))})
    return rows


def render(rows: list[dict]) -> str:
    lines = ["| run | method | task | epoch | dev metrics (* picks the epoch) | examples | selection score |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        shown = " · ".join(f"{name} {100 * value:.2f}{'*' if name == row['first'] else ''}"
                           for name, value in [(row["first"], row["metrics"][row["first"]])] +
                           sorted((k, v) for k, v in row["metrics"].items() if k != row["first"]))
        lines.append(f"| {row['run']} | {row['method']} | {row['task']} | {row['epoch']} | {shown} | "
                     f"{row['examples']} | {100 * row['selection']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.glue_table", description=__doc__.splitlines()[0])
    parser.add_argument("runs", help="a folder of run folders (each holding run_config.json), or one run folder")
    args = parser.parse_args(argv)
    root = Path(args.runs)
    if not root.is_dir():
        print(f"error: {root}: not a folder", file=sys.stderr)
        return 2
    rows = []
    try:
        for config in sorted(root.rglob("run_config.json")):
            rows += run_rows(run_dir=config.parent, root=root)
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not rows:
        print(f"error: {root}: no finished run with a dev evaluation", file=sys.stderr)
        return 2
    sys.stdout.write(render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
