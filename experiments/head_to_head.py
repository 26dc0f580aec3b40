"""The head-to-head on real data at CPU scale: every method against fine-tuning and both SMARTs.

No ANLI training set is available offline and no GPU is at hand, so the question users ask
first -- does noise toward similar words match SMART's accuracy at less cost? -- is answered
here on SNLI 1.0 with the packaged MiniLM: every registered method x seeds, trained on (a
fixed prefix of) SNLI **dev** and scored on a fixed prefix of SNLI **test**. This is not the
official SNLI protocol (train on train, select on dev); every table says so.

Three phases, each resumable (run the same command again after an interruption):

1. train: the grid of runs (experiments.grid's runner: finished runs are skipped,
   interrupted ones resumed), RUNS/packaged-minilm/<method>/seed<k>/;
2. robust: each finished run scored again on the same test pairs with words substituted
   (WordNet synonyms; nearest vocabulary neighbours at a fixed rate), the same substituted
   set for every method (mt_dnn.substitution), written to RUN/robust_eval.json;
3. report: the Markdown table and the plot (experiments.head_to_head_report), written to
   RUNS/tables/head_to_head.md and RUNS/plots/head_to_head.png.

    python -m experiments.head_to_head                    # the full grid (about 2 hours on 2 cores)
    python -m experiments.head_to_head --seeds 1 --methods none,1-1 --max_train_examples 64
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from experiments.grid_cli import GivenOnce, parse_seeds
from experiments.grid_launch import run_grid
from experiments.grid_types import REPO_ROOT, GridError, GridSettings, ModelSetting, build_cells, parse_methods

SNLI_TASK_DEF = REPO_ROOT / "task_defs" / "snli.yml"
DEFAULT_SNLI_DIR = "data/snli"
PROTOCOL = ("trained on a fixed prefix of SNLI 1.0 dev, scored on a fixed prefix of SNLI 1.0 test: "
            "NOT the official protocol (train on train, select on dev), which needs the training set")


@dataclass(frozen=True)
class HeadToHeadSettings:
    """The CPU grid's settings, chosen by measurement (docs/results/snli_cpu.md says how)."""

    model: str = "packaged-minilm"
    batch_size: int = 16
    learning_rate: float = 1e-4
    warmup: float = 0.1
    epochs: int = 1
    max_seq_len: int = 128
    # 1,600 training pairs (100 updates) and 1,000 test pairs: 11 methods x 3 seeds in about 90 minutes
    # on 2 loaded cores (3,000 + 2,000 measured at 49 minutes per seed: too slow for the session)
    max_train_examples: int = 1600
    max_eval_examples: int = 1000
    seeds: tuple[int, ...] = (1, 2, 3)
    substitution_rate: float = 0.15
    substitution_seed: int = 0


def every_method() -> str:
    from noise_training.registry import provider_names

    return ",".join(provider_names())


def grid_settings(*, runs_dir: Path, data_dir: Path, chosen: HeadToHeadSettings) -> GridSettings:
    return GridSettings(
        runs_dir=runs_dir, data_dir=data_dir, train_datasets="snli:dev", test_datasets="snli:test",
        epochs=chosen.epochs, learning_rate=chosen.learning_rate, warmup=chosen.warmup,
        max_seq_len=chosen.max_seq_len, max_train_examples=chosen.max_train_examples,
        max_eval_examples=chosen.max_eval_examples, extra_train_args=("--task_def", str(SNLI_TASK_DEF)),
        # The robust phase scores each run's final weights again: keep them (there is no dev split,
        # hence no best.pt, and the grid otherwise prunes the step checkpoints of a finished run).
        keep_step_checkpoints=True, notes=(PROTOCOL,),
    )


class _OneLineParser(argparse.ArgumentParser):
    """A bad flag is one line (``head_to_head: error: --flag: ...``) and exit 2, without the usage."""

    def error(self, message: str):
        raise GridError(message.removeprefix("argument "))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from mt_dnn.cli_train import _positive_float, positive_int

    defaults = HeadToHeadSettings()
    parser = _OneLineParser(prog="python -m experiments.head_to_head", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", action=GivenOnce, default=os.environ.get("SNLI_DIR") or DEFAULT_SNLI_DIR,
                        help="SNLI folder with snli_dev.jsonl and snli_test.jsonl (default $SNLI_DIR, else data/snli)")
    parser.add_argument("--output", action=GivenOnce, default=os.environ.get("REPRO_RUNS") or "runs/snli_cpu",
                        help="the runs folder")
    parser.add_argument("--methods", default=None, help="comma-separated methods (default: every registered provider)")
    parser.add_argument("--seeds", default=",".join(map(str, defaults.seeds)))
    parser.add_argument("--max_train_examples", type=positive_int, default=defaults.max_train_examples,
                        help="training pairs per run (>= 1)")
    parser.add_argument("--max_eval_examples", type=positive_int, default=defaults.max_eval_examples,
                        help="test pairs scored (>= 1)")
    parser.add_argument("--learning_rate", type=_positive_float, default=defaults.learning_rate)
    parser.add_argument("--batch_size", type=positive_int, default=defaults.batch_size)
    parser.add_argument("--model", default=defaults.model, help="encoder (default: the packaged MiniLM)")
    parser.add_argument("--phases", default="train,robust,report", help="which of train,robust,report to run")
    parser.add_argument("--quiet", action="store_true", help="training output only in each run's train.log")
    parser.add_argument("--results_doc", default=None,
                        help="also write the report here with the command, date, machine and commit "
                             "(the committed one is docs/results/snli_cpu.md)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except GridError as exc:  # a bad flag, or a runs folder made with other settings (found by the grid)
        print(f"head_to_head: error: {exc}", file=sys.stderr)
        return 2


def _main(argv: list[str] | None) -> int:
    args = parse_args(argv)
    try:
        chosen = HeadToHeadSettings(seeds=parse_seeds(args.seeds), max_train_examples=args.max_train_examples,
                                    max_eval_examples=args.max_eval_examples, learning_rate=args.learning_rate,
                                    batch_size=args.batch_size, model=args.model)
        data_dir = Path(args.data_dir).resolve()
        if not (data_dir / "snli_test.jsonl").is_file() or not (data_dir / "snli_dev.jsonl").is_file():
            raise GridError(f"--data_dir {args.data_dir}: expected snli_dev.jsonl and snli_test.jsonl there "
                            "(set $SNLI_DIR; see task_defs/snli.yml)")
        phases = [p.strip() for p in args.phases.split(",") if p.strip()]
        unknown = sorted(set(phases) - {"train", "robust", "report"})
        if unknown:
            raise GridError(f"--phases {args.phases}: unknown phase {unknown[0]!r} (train, robust, report)")
        methods = parse_methods(args.methods or every_method())
        runs_dir = Path(args.output)
        settings = grid_settings(runs_dir=runs_dir, data_dir=data_dir, chosen=chosen)
        cells = build_cells(models=(ModelSetting(chosen.model, chosen.batch_size),), methods=methods,
                            seeds=chosen.seeds)
    except GridError as exc:
        print(f"head_to_head: error: {exc}", file=sys.stderr)
        return 2
    status = 0
    if "train" in phases:
        report = run_grid(cells=cells, settings=settings, echo=not args.quiet)
        if report.interrupted:
            return 130
        status = 1 if report.failed else 0
    if "robust" in phases:
        from experiments.head_to_head_robust import robust_phase

        status = max(status, robust_phase(cells=cells, settings=settings, chosen=chosen))
    if "report" in phases:
        from experiments.head_to_head_report import report_phase

        status = max(status, report_phase(cells=cells, settings=settings, chosen=chosen, protocol=PROTOCOL,
                                          results_doc=args.results_doc, argv=argv))
    return status


if __name__ == "__main__":
    sys.exit(main())
