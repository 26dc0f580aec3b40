"""The README's first command: fine-tuning, MT-DNN's SMART and 1-1 on a shipped SNLI sample, offline.

A fresh machine has no ANLI training set, no GPU and maybe no network, yet the first thing a
user wants to see is the methods learning and what each costs. So this trains ``none``,
``smart_mtdnn`` and ``1-1`` (the packaged MiniLM, one epoch, the same pairs, seed and schedule
for each) on the SNLI sample shipped in ``experiments/data/snli_sample`` (experiments.snli_sample:
pairs of SNLI 1.0 *dev*, not the official protocol) and prints accuracy on its 1,000 held-out
SNLI *test* pairs, seconds per update and the ratio to ``smart_mtdnn``. When ``$ANLI_DIR``
(or ``--anli_dir``) holds ANLI's R1-R3 test files, the same SNLI-trained models are also
scored on them: zero-shot transfer, not ANLI training. Nothing is downloaded.

    python -m experiments.quickstart                       # 1,000 pairs: under 5 minutes on 2 cores
    python -m experiments.quickstart --train_examples 1600 # the head-to-head grid's seed-1 runs (7 minutes)
    python -m experiments.quickstart --methods none,2-2 --train_examples 500
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path

from experiments.grid_types import REPO_ROOT
from experiments.snli_sample import PARTS, SAMPLE_DIR
from mt_dnn.cli_train import main as train_main
from mt_dnn.errors import UserError

SNLI_YML = REPO_ROOT / "task_defs" / "snli.yml"
ANLI_YML = REPO_ROOT / "task_defs" / "anli.yml"
ROUNDS = ("r1", "r2", "r3")
ANLI_TO_SNLI = {"e": "entailment", "n": "neutral", "c": "contradiction"}
# experiments.head_to_head's settings (its first 1,600 SNLI dev pairs are the sample's first 1,600,
# its 1,000 test pairs the sample's held-out ones): with --train_examples 1600 each quickstart run is
# that grid's seed-1 run (measured: the same accuracies, 62.0 / 59.0 / 58.9, in 7 minutes); the
# default 1,000 pairs keep the three runs under 5 minutes on 2 cores (measured 4 min 51 s).
# Random batches: length-grouped ones pad less but learned less here (fine-tuning 56.0% after
# 1,500 length-grouped pairs, against 62.0% after 1,600 random ones).
TRAIN_SETTINGS = ("--epochs", "1", "--batch_size", "16", "--learning_rate", "1e-4", "--warmup", "0.1",
                  "--max_seq_len", "128", "--batching", "random", "--seed", "1")


def _anli_pairs(*, anli_dir: Path, per_round: int, out: Path) -> Path:
    """ANLI's test rounds rewritten with SNLI's field names, so that the SNLI head scores them."""
    from mt_dnn.data import read_examples
    from mt_dnn.task_def import load_task_defs

    task = load_task_defs(paths=[ANLI_YML])["anli"]
    lines = []
    for name in ROUNDS:
        examples = read_examples(path=anli_dir / task.splits[f"{name}_test"].path, task=task)[:per_round]
        lines += [json.dumps({"pairID": f"{name}:{ex.uid}", "sentence1": ex.premise, "sentence2": ex.hypothesis,
                              "gold_label": ANLI_TO_SNLI[task.labels[ex.label]]}) for ex in examples]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def _anli_accuracy(*, run: Path, pairs: Path) -> dict[str, float]:
    from mt_dnn.cli_predict import build_parser, predict

    output = run / "anli_zero_shot_predictions.jsonl"
    # "latest": the run evaluates no dev split, so it keeps no best-by-dev checkpoint.
    predict(build_parser().parse_args(["--run_dir", str(run), "--checkpoint", "latest", "--input", str(pairs),
                                       "--output", str(output)]))
    records = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines() if line]
    result = {}
    for name in (*ROUNDS, "all"):
        chosen = [r for r in records if name == "all" or r["uid"].startswith(f"{name}:")]
        result[name] = sum(r["prediction"] == r["gold"] for r in chosen) / len(chosen)
    return result


def _snli_result(run: Path) -> dict[str, float]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if line]
    epoch = next(r for r in reversed(records) if r["kind"] == "train_epoch")
    test = next(r for r in reversed(records) if r["kind"] == "eval" and r["split"] == "test")
    return {"accuracy": test["accuracy"], "spu": epoch["seconds_per_update"], "updates": epoch["updates"],
            "seconds": epoch["seconds"]}


def _table(rows: list[tuple[str, dict]], *, with_anli: bool) -> str:
    smart = dict(rows).get("smart_mtdnn")
    head = ["method", "SNLI held-out %"]
    head += [f"ANLI {r.upper()} %" for r in ROUNDS] + ["ANLI all %"] if with_anli else []
    head += ["s/update", "÷ smart_mtdnn", "updates", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, res in rows:
        cells = [method, f"{100 * res['accuracy']:.1f}"]
        if with_anli:
            cells += [f"{100 * res['anli'][r]:.1f}" for r in (*ROUNDS, "all")]
        ratio = f"{res['spu'] / smart['spu']:.2f}" if smart else "–"
        cells += [f"{res['spu']:.3f}", ratio, str(res["updates"]), f"{res['seconds']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m experiments.quickstart", description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="none,smart_mtdnn,1-1", help="comma-separated --perturbation names")
    parser.add_argument("--train_examples", type=int, default=1000,
                        help="the first N of the sample's 3,000 training pairs (default 1000: the three runs take "
                             "under 5 minutes on 2 cores; 1600: the head-to-head grid's seed-1 runs)")
    parser.add_argument("--eval_examples", type=int, default=1000, help="the first N of its 1,000 held-out pairs")
    parser.add_argument("--anli_dir", default=os.environ.get("ANLI_DIR"),
                        help="ANLI v1.0 folder for zero-shot scoring of R1-R3 test (default $ANLI_DIR; none: skipped)")
    parser.add_argument("--anli_examples", type=int, default=300,
                        help="the first N pairs of each ANLI test round (default 300; 1200: all of them)")
    parser.add_argument("--output_dir", default="runs/quickstart", help="one run folder per method goes here")
    args = parser.parse_args(argv)
    sizes = {part.file: part.count for part in PARTS}
    limits = {"train_examples": sizes["snli_train.jsonl"], "eval_examples": sizes["snli_test.jsonl"],
              "anli_examples": None}
    for flag, most in limits.items():
        value = getattr(args, flag)
        if value < 1 or (most is not None and value > most):
            parser.error(f"--{flag} {value}: expected a number of pairs from 1 to {most or 'the round size'}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    out = Path(args.output_dir)
    anli_dir = Path(args.anli_dir) if args.anli_dir else None
    if anli_dir and not all((anli_dir / f"R{i}" / "test.jsonl").is_file() for i in (1, 2, 3)):
        print(f"note: {anli_dir} holds no ANLI R1-R3 test.jsonl; ANLI is not scored")
        anli_dir = None
    try:
        pairs = (_anli_pairs(anli_dir=anli_dir, per_round=args.anli_examples, out=out / "anli_as_snli.jsonl")
                 if anli_dir else None)
    except UserError as exc:  # a malformed ANLI file: before any training
        print(f"error: {exc}", file=sys.stderr)
        return 2

    rows = []
    for method in methods:
        run = out / method
        print(f"\n=== {method}: training on {args.train_examples} SNLI sample pairs ===", flush=True)
        status = train_main([
            "--model", "packaged-minilm", "--task_def", str(SNLI_YML), "--data_dir", f"snli={SAMPLE_DIR}",
            "--train_datasets", "snli:train", "--test_datasets", "snli:test",
            "--max_train_examples", str(args.train_examples), "--max_eval_examples", str(args.eval_examples),
            *TRAIN_SETTINGS, "--perturbation", method, "--output_dir", str(run), "--overwrite",
            "--keep_checkpoints", "1",
        ])
        if status != 0:
            return status
        result = _snli_result(run)
        if pairs is not None:
            try:
                result["anli"] = _anli_accuracy(run=run, pairs=pairs)
            except UserError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
        rows.append((method, result))

    held_out = [json.loads(line)["gold_label"] for line in
                (SAMPLE_DIR / "snli_test.jsonl").read_text(encoding="utf-8").splitlines()[:args.eval_examples]]
    majority = Counter(held_out).most_common(1)[0][1] / len(held_out)
    print(f"\nPackaged MiniLM, 1 epoch, batch 16, lr 1e-4, seed 1, trained on the first {args.train_examples} pairs "
          f"of the shipped SNLI sample\n(pairs of SNLI 1.0 dev: not the official protocol); scored on {len(held_out)} "
          f"held-out SNLI test pairs\n(chance 33.3%, majority class {100 * majority:.1f}%)."
          + (f" ANLI: zero-shot transfer of the SNLI-trained models\nto the first {args.anli_examples} pairs (at most) "
             f"of each test round in {anli_dir} (no ANLI training)." if pairs else "") + "\n")
    print(_table(rows, with_anli=pairs is not None))
    print("\nSeconds per update are this machine's (other work running on it inflates them). "
          f"Runs, metrics and predictions: {out}/<method>/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
