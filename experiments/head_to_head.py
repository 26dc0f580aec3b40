"""The head-to-head on real data at CPU scale: every method against fine-tuning and both SMARTs.

No GPU is at hand, so the question users ask first -- does noise toward similar words match
SMART's accuracy at less cost? -- is answered on CPU with the packaged MiniLM, in two suites of
the same code (one entry point, resumable like every grid):

``--suite snli`` (the default; docs/results/snli_cpu.md): every registered method x seeds,
trained on (a fixed prefix of) SNLI **dev** and scored on a fixed prefix of SNLI **test**. This
is not the official SNLI protocol (train on train, select on dev); every table says so. Phases:

1. train: the grid of runs (experiments.grid's runner: finished runs are skipped,
   interrupted ones resumed), RUNS/packaged-minilm/<method>/seed<k>/;
2. robust: each finished run scored again on the same test pairs with words substituted
   (WordNet synonyms; nearest vocabulary neighbours at a fixed rate), the same substituted
   set for every method (mt_dnn.substitution), written to RUN/robust_eval.json;
3. report: the Markdown table and the plot (experiments.head_to_head_report), written to
   RUNS/tables/head_to_head.md and RUNS/plots/head_to_head.png.

``--suite glue`` (docs/results/glue_cpu_plan.md, docs/results/glue_cpu.md): RTE, MRPC, CoLA,
STS-B, SST-2 (GLUE train, a fixed number of updates, final weights, the whole GLUE dev set) and
SNLI as above, the ten methods of the question, paired seeds; phases train (each finished run
then scored on AdvGLUE, its small files copied to --results_runs, its checkpoints deleted:
experiments.glue_suite), advglue, report (experiments.glue_report: the plan's equivalence
verdicts). ``--pilot`` first: it sizes the grid (experiments.glue_pilot).

    python -m experiments.head_to_head                    # the SNLI grid (about 2 hours on 2 cores)
    python -m experiments.head_to_head --seeds 1 --methods none,1-1 --max_train_examples 64
    python -m experiments.head_to_head --suite glue --pilot          # sizes the GLUE grid
    python -m experiments.head_to_head --suite glue --updates U --seeds 1-N --results_runs docs/results/glue_cpu_runs
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
    parser.add_argument("--suite", choices=("snli", "glue"), default="snli",
                        help="snli: the SNLI grid (docs/results/snli_cpu.md); glue: five GLUE tasks and SNLI with "
                             "AdvGLUE and equivalence verdicts (docs/results/glue_cpu_plan.md)")
    parser.add_argument("--data_dir", action=GivenOnce, default=os.environ.get("SNLI_DIR") or DEFAULT_SNLI_DIR,
                        help="SNLI folder with snli_dev.jsonl and snli_test.jsonl (default $SNLI_DIR, else data/snli)")
    parser.add_argument("--output", action=GivenOnce, default=None,
                        help="the runs folder (default $REPRO_RUNS, else runs/snli_cpu; glue suite: runs/glue_cpu)")
    parser.add_argument("--methods", default=None,
                        help="comma-separated methods (default: snli every registered provider; glue "
                             "none,smart_mtdnn,smart,1-1,1-2,2-1,wordnet_0.5,r3f,1-1_random,neftune)")
    parser.add_argument("--seeds", default=None, help="e.g. 1-5 (default: snli 1,2,3; glue 1-5); paired across methods")
    parser.add_argument("--max_train_examples", type=positive_int, default=None,
                        help=f"training pairs per run (snli, default {defaults.max_train_examples}); glue: a cap on "
                             "each task's training subset (default: --updates x --batch_size)")
    parser.add_argument("--max_eval_examples", type=positive_int, default=None,
                        help=f"test pairs scored (snli only, default {defaults.max_eval_examples})")
    parser.add_argument("--learning_rate", type=_positive_float, default=defaults.learning_rate)
    parser.add_argument("--batch_size", type=positive_int, default=defaults.batch_size)
    parser.add_argument("--model", default=defaults.model, help="encoder (default: the packaged MiniLM)")
    parser.add_argument("--phases", default=None,
                        help="which phases to run (snli: train,robust,report; glue: train,advglue,report)")
    parser.add_argument("--quiet", action="store_true", help="training output only in each run's train.log")
    parser.add_argument("--results_doc", default=None,
                        help="also write the report here with the command, date, machine and commit "
                             "(the committed ones: docs/results/snli_cpu.md, docs/results/glue_cpu.md)")
    glue = parser.add_argument_group("glue suite")
    glue.add_argument("--tasks", default="rte,mrpc,cola,stsb,sst2,snli", help="which of rte,mrpc,cola,stsb,sst2,snli")
    glue.add_argument("--glue_dir", action=GivenOnce, default=os.environ.get("GLUE_DIR") or "data/glue",
                      help="GLUE folder with <TASK>/{train,dev}.tsv (default $GLUE_DIR, else data/glue)")
    glue.add_argument("--advglue_dir", action=GivenOnce, default=os.environ.get("ADVGLUE_DIR") or "data/advglue",
                      help="AdvGLUE folder with dev.json (default $ADVGLUE_DIR, else data/advglue)")
    glue.add_argument("--snli_output", action=GivenOnce, default="runs/snli_cpu",
                      help="the SNLI suite's runs folder, whose runs the glue suite's SNLI task uses and extends")
    glue.add_argument("--updates", type=positive_int, default=100,
                      help="updates per run, every GLUE task and method (the pilot recommends it)")
    glue.add_argument("--amp", choices=("none", "bf16"), default="none", help="train.py --amp for the GLUE runs")
    glue.add_argument("--batching", choices=("random", "length_grouped"), default="random",
                      help="train.py --batching for the GLUE runs")
    glue.add_argument("--results_runs", default=None,
                      help="copy each finished run's small files here as it finishes (to commit), e.g. "
                           "docs/results/glue_cpu_runs")
    glue.add_argument("--step_cost", action="append", default=[], metavar="TASK=JSON",
                      help="an interleaved step-cost benchmark of a task (bench_step_cost --data glue:TASK --json); "
                           "the report's cost ratios for that task come from it")
    glue.add_argument("--pilot", action="store_true",
                      help="run the pilot that sizes the grid instead of the grid (glue suite)")
    glue.add_argument("--pilot_task", default="rte", help="the pilot's task (default rte)")
    glue.add_argument("--pilot_lengths", default="50,150", help="the two (or more) lengths in updates (default 50,150)")
    glue.add_argument("--pilot_seeds", default="1-4", help="the pilot's paired seeds (default 1-4)")
    glue.add_argument("--budget_hours", type=_positive_float, default=8.0,
                      help="the whole grid's budget on this machine, for the pilot's recommendation (default 8)")
    glue.add_argument("--step_cost_ratios", default=None,
                      help="bench_step_cost JSON giving the pilot the cost ratios of the methods it does not run "
                           "(default docs/results/step_cost_snli_cpu.json)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except GridError as exc:  # a bad flag, or a runs folder made with other settings (found by the grid)
        print(f"head_to_head: error: {exc}", file=sys.stderr)
        return 2


def _main(argv: list[str] | None) -> int:
    args = parse_args(argv)
    if args.suite == "glue":
        return _glue_main(args, argv)
    if args.pilot:
        raise GridError("--pilot: the pilot sizes the glue suite; give --suite glue")
    defaults = HeadToHeadSettings()
    chosen = HeadToHeadSettings(seeds=parse_seeds(args.seeds) if args.seeds else defaults.seeds,
                                max_train_examples=args.max_train_examples or defaults.max_train_examples,
                                max_eval_examples=args.max_eval_examples or defaults.max_eval_examples,
                                learning_rate=args.learning_rate, batch_size=args.batch_size, model=args.model)
    data_dir = Path(args.data_dir).resolve()
    if not (data_dir / "snli_test.jsonl").is_file() or not (data_dir / "snli_dev.jsonl").is_file():
        raise GridError(f"--data_dir {args.data_dir}: expected snli_dev.jsonl and snli_test.jsonl there "
                        "(set $SNLI_DIR; see task_defs/snli.yml)")
    phases = _phases(args.phases or "train,robust,report", allowed=("train", "robust", "report"))
    methods = parse_methods(args.methods or every_method())
    runs_dir = Path(args.output or os.environ.get("REPRO_RUNS") or "runs/snli_cpu")
    settings = grid_settings(runs_dir=runs_dir, data_dir=data_dir, chosen=chosen)
    cells = build_cells(models=(ModelSetting(chosen.model, chosen.batch_size),), methods=methods,
                        seeds=chosen.seeds)
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


def _phases(text: str, *, allowed: tuple[str, ...]) -> list[str]:
    phases = [p.strip() for p in text.split(",") if p.strip()]
    unknown = sorted(set(phases) - set(allowed))
    if unknown:
        raise GridError(f"--phases {text}: unknown phase {unknown[0]!r} ({', '.join(allowed)})")
    return phases


def _step_cost_paths(items: list[str]) -> dict[str, Path]:
    from experiments.glue_tasks import parse_tasks

    out = {}
    for item in items:
        task, sep, path = item.partition("=")
        if not sep or not path:
            raise GridError(f"--step_cost {item}: expected TASK=JSON, e.g. rte=runs/step_cost_rte.json")
        (name,) = parse_tasks(task)
        if not Path(path).is_file():
            raise GridError(f"--step_cost {item}: no such file")
        out[name] = Path(path)
    return out


def _glue_main(args, argv) -> int:
    """--suite glue: the pilot, or the grid's phases."""
    from experiments.glue_suite import (
        DEFAULT_METHODS, GlueSettings, advglue_phase, check_glue_dir, glue_grid, snli_grid, train_phase,
    )
    from experiments.glue_tasks import parse_tasks, train_size

    if args.max_eval_examples is not None:
        raise GridError("--max_eval_examples: the glue suite scores the whole dev set (snli suite only)")
    tasks = parse_tasks(args.tasks)
    glue_dir = Path(args.glue_dir).resolve()
    check_glue_dir(glue_dir, [t for t in tasks if t != "snli"] + ([args.pilot_task] if args.pilot else []))
    snli_dir = Path(args.data_dir).resolve()
    if "snli" in tasks and not ((snli_dir / "snli_test.jsonl").is_file() and (snli_dir / "snli_dev.jsonl").is_file()):
        raise GridError(f"--data_dir {args.data_dir}: expected snli_dev.jsonl and snli_test.jsonl there for the SNLI "
                        "task (set $SNLI_DIR), or leave snli out of --tasks")
    advglue_dir = Path(args.advglue_dir).resolve()
    chosen = GlueSettings(model=args.model, batch_size=args.batch_size, learning_rate=args.learning_rate,
                          updates=args.updates, max_train_examples=args.max_train_examples,
                          seeds=parse_seeds(args.seeds) if args.seeds else GlueSettings().seeds,
                          amp=args.amp, batching=args.batching)
    methods = parse_methods(args.methods or DEFAULT_METHODS)
    runs_dir = Path(args.output or os.environ.get("REPRO_RUNS") or "runs/glue_cpu")
    snli_runs = Path(args.snli_output)
    if args.pilot:
        from experiments.glue_pilot import pilot
        from experiments.glue_tasks import parse_tasks as _tasks

        (task,) = _tasks(args.pilot_task, allowed=("rte", "mrpc", "cola", "stsb", "sst2"))
        try:
            lengths = tuple(sorted({int(x) for x in args.pilot_lengths.split(",") if x.strip()}))
        except ValueError:
            raise GridError(f"--pilot_lengths {args.pilot_lengths}: expected whole numbers of updates, e.g. 50,150") from None
        if len(lengths) < 2 or min(lengths) < 1:
            raise GridError(f"--pilot_lengths {args.pilot_lengths}: expected two or more lengths >= 1")
        seeds = parse_seeds(args.pilot_seeds)
        if len(seeds) < 2:
            raise GridError(f"--pilot_seeds {args.pilot_seeds}: a seed sd needs at least 2 seeds")
        ratios = Path(args.step_cost_ratios) if args.step_cost_ratios else None
        if ratios is not None and not ratios.is_file():
            raise GridError(f"--step_cost_ratios {ratios}: no such file")
        from experiments.glue_pilot import DEFAULT_STEP_COST

        import shlex

        tail = [("--tasks", args.tasks, "rte,mrpc,cola,stsb,sst2,snli"), ("--methods", args.methods, None),
                ("--model", args.model, HeadToHeadSettings().model), ("--batch_size", args.batch_size, 16),
                ("--learning_rate", args.learning_rate, HeadToHeadSettings().learning_rate),
                ("--max_train_examples", args.max_train_examples, None), ("--amp", args.amp, "none"),
                ("--batching", args.batching, "random")]
        command_tail = "".join(f" {flag} {shlex.quote(str(value))}" for flag, value, default in tail
                               if value is not None and value != default)
        command_tail += " --results_runs docs/results/glue_cpu_runs --results_doc docs/results/glue_cpu.md"
        return pilot(task=task, lengths=lengths, seeds=seeds, chosen=chosen, glue_dir=glue_dir,
                     runs_dir=runs_dir / "pilot", grid_tasks=tasks, grid_methods=methods,
                     snli_dir=snli_dir if "snli" in tasks else None, snli_runs=snli_runs,
                     budget_hours=args.budget_hours, step_cost_json=ratios or DEFAULT_STEP_COST, echo=not args.quiet,
                     command_tail=command_tail)
    phases = _phases(args.phases or "train,advglue,report", allowed=("train", "advglue", "report"))
    step_cost = _step_cost_paths(args.step_cost)
    if ("train" in phases or "advglue" in phases) and not (advglue_dir / "dev.json").is_file():
        raise GridError(f"--advglue_dir {args.advglue_dir}: no dev.json (AdvGLUE's dev set; set $ADVGLUE_DIR)")
    grids = []
    for task in tasks:
        if task == "snli":
            grids.append(snli_grid(runs_dir=snli_runs, snli_dir=snli_dir, seeds=chosen.seeds, methods=methods,
                                   model=chosen.model))
        else:
            grids.append(glue_grid(task=task, runs_dir=runs_dir, glue_dir=glue_dir, chosen=chosen, methods=methods,
                                   train_size=train_size(task=task, data_dir=glue_dir)))
    results_runs = Path(args.results_runs) if args.results_runs else None
    status = 0
    if "train" in phases:
        status = train_phase(grids=grids, advglue_dir=advglue_dir, results_runs=results_runs, echo=not args.quiet,
                             snli_chosen=HeadToHeadSettings(seeds=chosen.seeds, model=chosen.model))
        if status == 130:
            return 130
    if "advglue" in phases:
        status = max(status, advglue_phase(grids=grids, advglue_dir=advglue_dir, results_runs=results_runs))
    if "report" in phases:
        from experiments.glue_report import read_step_cost, report
        from experiments.head_to_head_report import provenance

        settings_lines = [
            f"- model {chosen.model}, batch {chosen.batch_size}, lr {chosen.learning_rate:g}, warm-up "
            f"{chosen.warmup:g}, max_seq_len {chosen.max_seq_len}, amp {chosen.amp}, batching {chosen.batching}; "
            f"seeds {','.join(map(str, chosen.seeds))} (paired); methods {', '.join(m.folder for m in methods)}",
        ] + [f"- {grid.task}: {grid.updates} updates ({grid.epochs} epoch(s) over the first {grid.subset} training "
             "examples), final weights, " + ("1,000 SNLI test pairs (trained on SNLI dev: not the official protocol)"
                                             if grid.task == "snli" else "the whole GLUE dev set")
             for grid in grids]
        try:
            costs = read_step_cost(step_cost)
        except ValueError as exc:
            raise GridError(str(exc)) from None
        results_doc = Path(args.results_doc) if args.results_doc else None
        header = provenance(argv=argv, runs_dir=runs_dir) if results_doc else ""
        status = max(status, report(grids=grids, out_dir=runs_dir, results_doc=results_doc, header=header,
                                    settings_lines=settings_lines, step_cost=costs))
    return status


if __name__ == "__main__":
    sys.exit(main())
