"""The offline default job: a short CPU run of the packaged MiniLM on ANLI, then a results table.

It trains each method for one short epoch and evaluates on the three rounds' test sets.
When the ANLI training files are absent (only the dev/test release is at hand), it trains
on the R1 *dev* set instead and says so loudly: the numbers then show the pipeline
working, not a result. Usage: ``python -m experiments.quickstart [--methods none,1-1]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from mt_dnn.cli_train import main as train_main
from mt_dnn.datasets import DEFAULT_ANLI_DIR

ROUNDS = ("r1", "r2", "r3")


def _anli_dir(given: str | None) -> Path:
    folder = Path(given or os.environ.get("ANLI_DIR") or DEFAULT_ANLI_DIR)
    if not all((folder / f"R{i}" / "test.jsonl").is_file() for i in (1, 2, 3)):
        from mt_dnn import anli_download

        print(f"ANLI not found in {folder}; downloading the official archive")
        if anli_download.main(["download-anli", "--data_dir", str(folder)]) != 0:
            raise SystemExit(1)
    return folder


def _table(rows: list[tuple[str, dict]]) -> str:
    header = "| method | " + " | ".join(f"test {r.upper()}" for r in ROUNDS) + " | test All | s/update |"
    lines = [header, "|" + "---|" * (len(ROUNDS) + 3)]
    for method, result in rows:
        cells = [f"{100 * result[r]:.1f}" if r in result else "–" for r in ROUNDS]
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {100 * result['all']:.1f} | {result['spu']:.2f} |")
    return "\n".join(lines)


def _results(run: Path) -> dict:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    last = max(r["epoch"] for r in records)
    out = {r["split"].split("_")[0]: r["accuracy"] for r in records
           if r["kind"] == "eval" and r["epoch"] == last and r["role"] == "test"}
    out["all"] = next(r["accuracy"] for r in records if r["kind"] == "eval_pooled" and r["role"] == "test")
    out["spu"] = next(r["seconds_per_update"] for r in records if r["kind"] == "train_epoch")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=None, help="ANLI folder (default: $ANLI_DIR, else data/anli_v1.0)")
    parser.add_argument("--methods", default="none,1-1", help="comma-separated --perturbation names")
    parser.add_argument("--train_examples", type=int, default=256, help="training examples per split")
    parser.add_argument("--eval_examples", type=int, default=200, help="test examples per round")
    parser.add_argument("--output_dir", default="runs/quickstart")
    args = parser.parse_args(argv)

    data_dir = _anli_dir(args.data_dir)
    has_train = all((data_dir / f"R{i}" / "train.jsonl").is_file() for i in (1, 2, 3))
    train = "anli" if has_train else "anli:r1_dev"
    if not has_train:
        print("=" * 78 + "\nNOTE: no ANLI training files in " + str(data_dir) + ": training on the R1 DEV split\n"
              "instead (the release at hand has dev/test only). The table shows the pipeline\n"
              "working on real data; it is not a result comparable to the paper.\n" + "=" * 78)
    rows = []
    for method in [m for m in args.methods.split(",") if m]:
        run = Path(args.output_dir) / method
        status = train_main([
            "--model", "packaged-minilm", "--data_dir", str(data_dir), "--train_datasets", train,
            "--test_datasets", ",".join(f"anli:{r}_test" for r in ROUNDS),
            "--max_train_examples", str(args.train_examples), "--max_eval_examples", str(args.eval_examples),
            "--epochs", "1", "--batch_size", "16", "--max_seq_len", "256", "--learning_rate", "5e-5",
            "--perturbation", method, "--output_dir", str(run), "--overwrite", "--seed", "1",
        ])
        if status != 0:
            return status
        rows.append((method, _results(run)))
    print(f"\nPackaged MiniLM, 1 epoch on {args.train_examples} examples of {train}, "
          f"{args.eval_examples} test examples per round (accuracy %):\n")
    print(_table(rows))
    print(f"\nRuns, metrics and predictions: {args.output_dir}/<method>/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
