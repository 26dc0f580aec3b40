"""The project on a GPU in one short run: every method's step cost at the paper's model sizes, then training.

Nothing here has a download or a dataset a lent GPU machine lacks. Three phases, each written
to ``--json_dir`` as it finishes, so that a run cut short still leaves what it measured:

1. the step-cost benchmark (``bench_step_cost``) on random-init encoders the size of BERT-base
   (batch 32) and RoBERTa-large (batch 16), on real ANLI dev/test batches when ``$ANLI_DIR``
   holds them: every registered method plus ``1-1:two_pass``, in bf16 autocast and in float32
   (TF32 matmuls, as training enables): seconds per update, ratios to ``none`` and to
   ``smart_mtdnn``, examples per second, CUDA peak memory of a step;
2. ``gpu_train_smoke``: every provider trained for about 50 updates through ``train.py`` (a small
   random-init BERT, bf16), with a ``--stop_at_step`` + ``--resume`` pair;
3. if the time budget allows, ``torch.compile`` for ``none``, ``smart_mtdnn`` and ``1-1`` (BERT-base, bf16).

It ends with one table (method x size x precision) that a note can quote. A method whose
resources are missing (WordNet without nltk and no cached synonym table) is reported as skipped.

    python -m benchmarks.gpu_check --json_dir out/      # or: bash benchmarks/gpu_check.sh out/
    python -m benchmarks.gpu_check --smoke --json_dir /tmp/gpu_smoke   # the same code on the CPU, tiny
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_step_cost import default_anli_dir, parse_args as step_args, render, run_benchmark
from mt_dnn.errors import UserError
from noise_training.errors import ProviderError

# (random-init size, batch size): the paper's two models at the batch sizes it trains them with.
RUNS = (("bert-base", 32), ("roberta-large", 16))
PRECISIONS = ("bf16", "none")  # "none": float32 weights and activations, TF32 matmuls
COMPILED_METHODS = ("none", "smart_mtdnn", "1-1")
REFERENCE = "smart_mtdnn"  # MT-DNN's SMART as its code runs it: the method the paper compares with


def _write(json_dir: Path | None, name: str, result: dict) -> None:
    if json_dir is not None:
        from mt_dnn.run_files import atomic_write_json

        atomic_write_json(json_dir / name, result)


def step_cost(*, size: str, batch_size: int, amp: str, device: str, data: str, methods: list[str], warmup: int,
              repeats: int, compile_model: bool, cache_dir: Path | None, tokenizer: str | None) -> dict:
    flags = ["--random_init", size, "--batch_size", str(batch_size), "--device", device, "--amp", amp,
             "--data", data, "--warmup", str(warmup), "--repeats", str(repeats), "--methods", *methods]
    if compile_model:
        flags.append("--compile")
    if cache_dir is not None:
        flags += ["--cache_dir", str(cache_dir)]
    if tokenizer is not None:
        flags += ["--tokenizer", tokenizer]
    return run_benchmark(step_args(flags))


def _registry_order(label: str) -> tuple[int, str]:
    """Listing order: the registry's (the paper's tables first), variants such as NAME:two_pass after."""
    from noise_training.registry import provider_names

    names = provider_names()
    return (names.index(label) if label in names else len(names), label)


def summary_table(results: dict[str, dict]) -> str:
    """One row per (method, size, precision): seconds per update, ratios, examples per second, peak memory."""
    header = (f"{'method':<14}{'size':<15}{'prec':<6}{'s/update':>9}{'/none':>7}{'/' + REFERENCE:>13}"
              f"{'ex/s':>8}{'F+B':>6}{'peak MB':>9}")
    lines = [header, "-" * len(header)]
    for label, result in results.items():
        methods = result["methods"]
        none = methods.get("none", {}).get("median_s")
        ref = methods.get(REFERENCE, {}).get("median_s")
        size, precision = label.split("|")
        for method, m in sorted(methods.items(), key=lambda item: _registry_order(item[0])):
            med = m["median_s"]
            peak = f"{m['peak_mb']:.0f}" if m.get("peak_mb") is not None else "n/a"
            lines.append(f"{method:<14}{size:<15}{precision:<6}{med:>9.4f}"
                         f"{(med / none if none else float('nan')):>7.2f}{(med / ref if ref else float('nan')):>13.2f}"
                         f"{result['batch_size'] / med:>8.0f}{m['forwards']:>3}+{m['backwards']:<2}{peak:>9}")
        for method, reason in result.get("skipped", {}).items():
            lines.append(f"{method:<14}{size:<15}{precision:<6}  skipped: {reason}")
    return "\n".join(lines)


# The paper's grid (README, "Hardware and time"): runs per seed by method, the models they train,
# 6 seeds, and the updates of one run (ANLI A1+A2+A3 train, 6 epochs, at each model's batch size).
UPDATES_PER_RUN = {"bert-base": 30_540, "roberta-large": 61_080}
PAPER_SEEDS = 6


def paper_grid() -> tuple[tuple[str, dict[str, int], tuple[str, ...]], ...]:
    from experiments.table2 import METHODS as TABLE2

    both = tuple(UPDATES_PER_RUN)
    return (
        (f"Table 2 ({len(TABLE2)} methods)", {m: 1 for m in TABLE2}, both),
        ("Table 3 (3 new methods)", {"wordnet_1.0": 1, "1-1_1.0": 1, "wordnet_0.5": 1}, both),
        ("Figure 3, SMART sweep (4 new step sizes)", {"smart_mtdnn": 4}, both),
        ("Figure 3, 1-1 noise_size sweep (10 new sizes)", {"1-1": 10}, ("bert-base",)),
    )


def grid_hours_table(results: dict[str, dict]) -> str:
    """GPU-hours of the paper's grid at the measured seconds per update (step time only: data loading,
    evaluation and checkpoints come on top)."""
    precisions = sorted({label.split("|")[1] for label in results if "+" not in label})
    lines = ["the paper's grid at these step times (GPU-hours, 6 seeds; step time only):",
             f"{'grid':<48}" + "".join(f"{size + ' ' + p:>22}" for size in UPDATES_PER_RUN for p in precisions)]
    totals = {}
    for name, runs, models in paper_grid():
        cells = []
        for size in UPDATES_PER_RUN:
            for precision in precisions:
                methods = results.get(f"{size}|{precision}", {}).get("methods", {})
                if size not in models:
                    cells.append(f"{'-':>22}")
                    continue
                if not all(m in methods for m in runs):
                    cells.append(f"{'n/a':>22}")
                    continue
                hours = sum(count * methods[m]["median_s"] for m, count in runs.items()) * PAPER_SEEDS \
                    * UPDATES_PER_RUN[size] / 3600
                totals[(size, precision)] = totals.get((size, precision), 0.0) + hours
                cells.append(f"{hours:>22.1f}")
        lines.append(f"{name:<48}" + "".join(cells))
    lines.append(f"{'all':<48}" + "".join(f"{totals.get((s, p), float('nan')):>22.1f}"
                                          for s in UPDATES_PER_RUN for p in precisions))
    return "\n".join(lines)


def _summary(results: dict[str, dict], *, json_dir: Path | None) -> None:
    """Print the table so far and keep it in summary.txt: a run cut short still leaves it."""
    table = summary_table(results) + "\n\n" + grid_hours_table(results)
    print(table, "\n", flush=True)
    if json_dir is not None:
        from noise_training.atomic_files import atomic_write_bytes

        atomic_write_bytes(json_dir / "summary.txt", (table + "\n").encode("utf-8"))


def compile_phase(run: tuple[str, int], *, amp: str, device: str, data: str, warmup: int, repeats: int,
                  cache_dir: Path | None, tokenizer: str | None, json_dir: Path | None,
                  timeout_s: float) -> tuple[str, dict] | None:
    """``torch.compile`` for COMPILED_METHODS, in a child process with a deadline: compiling can take
    minutes, and the figures measured before it must not be lost to it."""
    import subprocess
    import tempfile

    size, batch_size = run
    out = (json_dir or Path(tempfile.mkdtemp())) / f"step_cost_{size}_{amp}_compile.json"
    argv = [sys.executable, "-m", "benchmarks.bench_step_cost", "--random_init", size, "--batch_size",
            str(batch_size), "--device", device, "--amp", amp, "--data", data, "--warmup", str(warmup),
            "--repeats", str(repeats), "--compile", "--json", str(out), "--methods", *COMPILED_METHODS]
    if cache_dir is not None:
        argv += ["--cache_dir", str(cache_dir)]
    if tokenizer is not None:
        argv += ["--tokenizer", tokenizer]
    try:
        subprocess.run(argv, cwd=Path(__file__).resolve().parents[1], timeout=timeout_s, check=True)
    except subprocess.TimeoutExpired:
        print(f"torch.compile phase cut at its deadline ({timeout_s:.0f} s)", flush=True)
        return None
    except subprocess.CalledProcessError as exc:
        print(f"torch.compile phase failed (exit {exc.returncode})", flush=True)
        return None
    return f"{size}|{'fp32' if amp == 'none' else amp}+compile", json.loads(out.read_text(encoding="utf-8"))


def load_results(folders: list[Path]) -> dict[str, dict]:
    """The step_cost_<size>_<amp>[_compile].json files of earlier runs, keyed as main() keys them."""
    results: dict[str, dict] = {}
    for folder in folders:
        for path in sorted(folder.glob("step_cost_*.json")):
            result = json.loads(path.read_text(encoding="utf-8"))
            size = next(s for s in (*UPDATES_PER_RUN, "tiny") if path.stem.startswith(f"step_cost_{s}_"))
            label = f"{size}|{'fp32' if result['amp'] == 'none' else result['amp']}"
            results[label + ("+compile" if result.get("compile") else "")] = result
    return dict(sorted(results.items(), key=lambda item: (item[0].split("|")[0] != "bert-base", item[0])))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precisions", nargs="+", choices=("none", "bf16", "fp16"), default=list(PRECISIONS))
    parser.add_argument("--methods", nargs="+", default=None,
                        help="methods to time and train (default: every registered one, and 1-1:two_pass for timing)")
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--budget_s", type=float, default=480.0,
                        help="the whole check's deadline: the torch.compile phase gets what is left of it")
    parser.add_argument("--skip_training", action="store_true", help="only the step-cost phases")
    parser.add_argument("--cache_dir", type=Path, default=None, help="token/neighbour/synonym caches (a cached "
                        "synonym table lets the WordNet methods run where nltk is missing)")
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the packaged MiniLM's BERT "
                        "uncased vocabulary; a copy of its tokenizer files where the package is not installed)")
    parser.add_argument("--work_dir", type=Path, default=Path("/tmp/gpu_check_work"),
                        help="the training phase's model, run folders and logs (kept out of --json_dir)")
    parser.add_argument("--from_json", type=Path, nargs="+", default=None, metavar="DIR",
                        help="print the tables from the step_cost_*.json of earlier runs (a later folder's "
                             "figures replace an earlier one's for the same size and precision); runs nothing")
    parser.add_argument("--smoke", action="store_true", help="tiny encoder on the CPU: checks this script, no GPU")
    parser.add_argument("--json_dir", type=Path, default=None, help="write each phase's figures as JSON here")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    from benchmarks.gpu_train_smoke import main as train_smoke_main
    from noise_training.registry import provider_names

    args = parse_args(argv)
    if args.from_json:
        print(summary_table(loaded := load_results(args.from_json)) + "\n\n" + grid_hours_table(loaded))
        return 0
    runs = (("tiny", 8),) if args.smoke else RUNS
    precisions = ("none",) if args.smoke else tuple(args.precisions)
    device = "cpu" if args.smoke else args.device
    data = "anli" if (default_anli_dir() / "R1" / "dev.jsonl").is_file() else "synthetic"
    methods = args.methods or [*provider_names(), "1-1:two_pass"]
    warmup, repeats = (0, 1) if args.smoke else (args.warmup, args.repeats)
    started = time.perf_counter()
    results: dict[str, dict] = {}
    exit_code = 0
    try:
        for size, batch_size in runs:
            for amp in precisions:
                result = step_cost(size=size, batch_size=batch_size, amp=amp, device=device, data=data,
                                   methods=methods, warmup=warmup, repeats=repeats, compile_model=False,
                                   cache_dir=args.cache_dir, tokenizer=args.tokenizer)
                results[f"{size}|{'fp32' if amp == 'none' else amp}"] = result
                print(render(result), "\n", flush=True)
                _write(args.json_dir, f"step_cost_{size}_{amp}.json", result)
        if not args.skip_training:
            train_argv = ["--work_dir", str(args.work_dir), "--device", device]
            if args.json_dir is not None:
                train_argv += ["--json", str(args.json_dir / "train_smoke.json")]
            if args.cache_dir is not None:
                train_argv += ["--cache_dir", str(args.cache_dir)]
            if args.tokenizer is not None:
                train_argv += ["--tokenizer", args.tokenizer]
            if args.smoke:
                train_argv.append("--smoke")
            if args.methods:
                train_argv += ["--methods", *[m for m in args.methods if ":" not in m]]
            exit_code = train_smoke_main(train_argv)
            print(flush=True)
        _summary(results, json_dir=args.json_dir)
        remaining = args.budget_s - (time.perf_counter() - started)
        if remaining > 30:
            compiled = compile_phase(runs[0], amp=precisions[0], device=device, data=data, warmup=warmup + 1,
                                     repeats=repeats, cache_dir=args.cache_dir, tokenizer=args.tokenizer,
                                     json_dir=args.json_dir, timeout_s=remaining)
            if compiled is not None:
                results[compiled[0]] = compiled[1]
                _summary(results, json_dir=args.json_dir)
        else:
            print(f"torch.compile phase skipped: {time.perf_counter() - started:.0f} s gone of the "
                  f"{args.budget_s:.0f} s budget")
    except (UserError, ProviderError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"gpu_check finished in {time.perf_counter() - started:.0f} s")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
