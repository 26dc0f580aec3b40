"""What one training step of each method costs, on the same batches and the same model.

The paper's practical claim is speed: similar-word noise needs one extra forward pass where
SMART needs two forwards and a backward (the paper: about 23% less training time). This
benchmark times whole training steps (``run_training_step``: the forward passes, the
provider, the backward; plus the AdamW update) of every method on the same batches. The
methods run interleaved, one step each per round, so load from other processes hits them
alike; after the warm-up rounds it prints each method's median step time relative to
``none`` and to ``smart``, examples per second, the time the provider spends building its
perturbation, and the peak memory of one step.

    python -m benchmarks.bench_step_cost                       # packaged MiniLM, CPU, real ANLI, batch 32
    python -m benchmarks.bench_step_cost --methods none smart 1-1 1-1:two_pass --repeats 3
    python -m benchmarks.bench_step_cost --random_init bert-base --device cuda --amp bf16

A method written ``NAME:two_pass`` runs a provider that could fuse steps 1 and 2 into one
pass over [clean; perturbed] the straightforward way instead (step 1, perturb, step 2), to
measure what the fused pass saves.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from mt_dnn.errors import UserError  # noqa: E402
from noise_training.errors import ProviderError  # noqa: E402

# Model and batches, the timing of one step and the command-line ending live in their own modules.
from benchmarks.benchmark_cli import load_warning, run_and_report  # noqa: E402
from benchmarks.step_cost_setup import (  # noqa: E402
    ANLI_EVAL_FILES, GLUE_BENCH_TASKS, RANDOM_INIT_SIZES, REPO_ROOT, anli_examples, benchmark_batches,
    benchmark_device, benchmark_task, default_anli_dir, load_model,
)
from benchmarks.step_cost_timing import (  # noqa: E402
    TWO_PASS, Method, PeakMemory, TimedProvider, Timing, overhead_outside_encoder, parse_methods, run_step,
)

# Also the names bench_data and gpu_check import from here.
__all__ = [
    "ANLI_EVAL_FILES", "DEFAULT_METHODS", "Method", "TimedProvider", "anli_examples", "default_anli_dir", "main",
    "parse_args", "render", "run_benchmark", "run_step",
]

# smart_mtdnn and the controls (r3f, 1-1_random, neftune): their step times beside none's and SMART's
DEFAULT_METHODS = ("none", "smart_mtdnn", "smart", "1-1", "1-1:two_pass", "1-2", "2-1", "2-2", "2-3", "wordnet_0.5",
                   "r3f", "1-1_random", "neftune")
TARGETS = (("1-1", "smart", 0.70), ("2-2", "smart", 0.90))
PROVIDER_SHARE_TARGET = 0.03  # a provider's own work, as a share of a 1-1 step


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="packaged-minilm", help="model folder or hub name (default: the packaged MiniLM)")
    parser.add_argument("--random_init", choices=sorted(RANDOM_INIT_SIZES), default=None,
                        help="instead of --model: an encoder of this size with random weights (no download)")
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the model's; for "
                        "--random_init the packaged MiniLM's BERT uncased vocabulary)")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS),
                        help=f"methods to time (NAME or NAME:{TWO_PASS}); default: {' '.join(DEFAULT_METHODS)}")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_seq_len", type=int, default=512, help="pairs are cut to this many tokens (train.py's default)")
    parser.add_argument("--data", choices=("anli", "snli", "synthetic") + tuple(f"glue:{t}" for t in GLUE_BENCH_TASKS),
                        default="anli", metavar="{anli,snli,synthetic,glue:TASK}",
                        help="anli: random batches of the real ANLI dev/test pairs; snli: of the SNLI test pairs "
                             "($SNLI_DIR/snli_test.jsonl, the head-to-head's batches); glue:TASK (rte, mrpc, cola, "
                             "stsb, sst2): of that GLUE task's training examples ($GLUE_DIR; the GLUE head-to-head's "
                             "lengths, the task's own head and loss); synthetic: random words, ANLI-like lengths")
    parser.add_argument("--data_dir", type=Path, default=None,
                        help="ANLI v1.0 folder (default $ANLI_DIR or data/anli_v1.0); for glue:TASK the GLUE folder "
                             "(default $GLUE_DIR)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (dynamic shapes)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads (default: all cores)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds; each method's median is reported")
    parser.add_argument("--no_memory", action="store_true", help="skip the extra round that measures peak memory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache_dir", type=Path, default=None, help="token/neighbour/synonym caches "
                        "(default $MT_DNN_CACHE or ~/.cache/mt-dnn-noise)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    for flag in ("batch_size", "max_seq_len", "threads", "repeats"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag}: expected a whole number >= 1, got {getattr(args, flag)}")
    if args.warmup < 0:
        parser.error(f"--warmup: expected a whole number >= 0, got {args.warmup}")
    return args


def run_benchmark(args: argparse.Namespace) -> dict:
    from mt_dnn.precision import autocast_factory, grad_scaler
    from mt_dnn.run_setup import default_cache_dir
    from noise_training.registry import build_provider, resolve_options

    device = benchmark_device(device_name=args.device, threads=args.threads)
    cache_dir = args.cache_dir or default_cache_dir()
    methods = parse_methods(args.methods)
    task = benchmark_task(data=args.data)

    model, tokenizer, description = load_model(model_name=args.model, random_init=args.random_init,
                                               tokenizer_name=args.tokenizer, task=task)
    model.to(device).train()  # dropout on, as in training
    rounds = args.warmup + args.repeats
    batches, data_text = benchmark_batches(data=args.data, data_dir=args.data_dir, tokenizer=tokenizer, task=task,
                                           batch_size=args.batch_size, max_seq_len=args.max_seq_len, seed=args.seed,
                                           cache_dir=cache_dir, count=rounds)
    batches = [{k: v.to(device) for k, v in b.items()} for b in batches]
    special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)), device=device)

    providers, skipped = {}, {}
    for method in methods:
        spec, options = resolve_options(name=method.provider, given={})
        try:
            provider = build_provider(name=spec.name, options=options, model=model, tokenizer=tokenizer,
                                      cache_dir=cache_dir)
        except (UserError, ProviderError) as exc:  # e.g. no WordNet on this machine: time the others
            skipped[method.label] = str(exc)
            continue
        providers[method.label] = TimedProvider(provider, device=device)
    methods = [m for m in methods if m.label in providers]

    from mt_dnn.trainer import build_optimizer

    optimizer = build_optimizer(model, learning_rate=1e-5, weight_decay=0.01)
    autocast = autocast_factory(amp=args.amp, device=device)
    scaler = grad_scaler(amp=args.amp, device=device)
    step_model = torch.compile(model, dynamic=True) if args.compile else model
    timings = {m.label: Timing() for m in methods}
    common = dict(model=model, step_model=step_model, optimizer=optimizer, task=task, special_ids=special_ids,
                  autocast=autocast, scaler=scaler, device=device)
    # On a GPU the first step at a new batch shape pays a one-off cost (measured on an H200 in
    # bf16: ~0.15 s, whatever the model size), which would land on whichever method meets a
    # round's width first (none at B x L, the first fused method at 2B x L). Every timed batch
    # goes through every method once, untimed, before the rounds.
    prewarm = device.type == "cuda"
    if prewarm:
        for batch in batches[args.warmup:]:
            for method in methods:
                run_step(method=method, provider=providers[method.label], batch=batch, **common)
    load_before = os.getloadavg()
    started = time.perf_counter()
    for round_index in range(rounds):
        torch.manual_seed(args.seed + round_index)
        for method in methods:
            timed = providers[method.label]
            timed.last = 0.0
            seconds, cpu_seconds, outcome = run_step(method=method, provider=timed, batch=batches[round_index],
                                                     **common)
            if round_index >= args.warmup:
                record = timings[method.label]
                record.steps.append(seconds)
                record.cpu.append(cpu_seconds)
                record.perturb.append(timed.last)
                record.forwards, record.backwards = outcome.forwards, outcome.backwards
        print(f"round {round_index + 1}/{rounds} done ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    load_after = os.getloadavg()

    if not args.no_memory:
        tracker = PeakMemory(device)
        for method in methods:
            with tracker.measure(timings[method.label]):
                run_step(method=method, provider=providers[method.label], batch=batches[0], **common)
    overhead = overhead_outside_encoder(providers=providers, batch=batches[0], model=model,
                                        special_ids=special_ids, device=device)

    widths = [int(b["attention_mask"].sum(1).max()) for b in batches]
    return {
        "model": description, "device": str(device), "amp": args.amp, "compile": args.compile,
        "threads": args.threads if device.type == "cpu" else None, "batch_size": args.batch_size,
        "max_seq_len": args.max_seq_len, "data": data_text, "batch_widths": widths,
        "warmup": args.warmup, "repeats": args.repeats, "shape_prewarm": prewarm, "load_average": [load_before[0], load_after[0]],
        "cpu_count": os.cpu_count(), "skipped": skipped,
        "methods": {label: {
            "median_s": statistics.median(t.steps), "min_s": min(t.steps), "steps_s": t.steps,
            "cpu_median_s": statistics.median(t.cpu),
            "perturb_median_s": statistics.median(t.perturb), "forwards": t.forwards, "backwards": t.backwards,
            "peak_mb": t.peak_mb,
        } for label, t in timings.items()},
        "overhead_outside_encoder_s": overhead,
    }


def render(result: dict) -> str:
    methods = result["methods"]
    lines = [
        f"model: {result['model']} | device: {result['device']} | amp: {result['amp']} | compile: {result['compile']}"
        + (f" | threads: {result['threads']}" if result["threads"] else ""),
        f"data: {result['data']} | batch {result['batch_size']} | padded widths {result['batch_widths']}",
        f"timed: median of {result['repeats']} interleaved rounds after {result['warmup']} warm-up; "
        f"a step = forwards + provider + backward + AdamW update",
    ]
    none = methods.get("none", {}).get("median_s")
    smart = methods.get("smart", {}).get("median_s")
    mtdnn = methods.get("smart_mtdnn", {}).get("median_s")
    header = (f"{'method':<14}{'median s':>9}{'min s':>8}{'cpu s':>8}{'/none':>7}{'/smart':>8}{'/mtdnn':>8}"
              f"{'ex/s':>8}{'F+B':>6}{'perturb ms':>11}{'% step':>7}{'peak MB':>9}")
    lines += ["", header, "-" * len(header)]
    for label, m in methods.items():
        med = m["median_s"]
        rel_none = f"{med / none:.2f}" if none else "-"
        rel_smart = f"{med / smart:.2f}" if smart else "-"
        rel_mtdnn = f"{med / mtdnn:.2f}" if mtdnn else "-"
        peak = f"{m['peak_mb']:.0f}" if m["peak_mb"] is not None else "n/a"
        share = 100 * m["perturb_median_s"] / med
        lines.append(f"{label:<14}{med:>9.3f}{m['min_s']:>8.3f}{m['cpu_median_s']:>8.2f}{rel_none:>7}{rel_smart:>8}"
                     f"{rel_mtdnn:>8}{result['batch_size'] / med:>8.1f}{m['forwards']:>3}+{m['backwards']:<2}"
                     f"{1000 * m['perturb_median_s']:>11.1f}{share:>7.1f}{peak:>9}")
    lines.append("/mtdnn: ratio to smart_mtdnn (MT-DNN's SMART as its code runs it). "
                 "perturb ms: time inside provider.perturb (table look-ups, sampling, selection); for smart it "
                 "includes SMART's own ascent forward + backward. cpu s: process CPU time of the step (all threads).")
    for label, reason in result["skipped"].items():
        lines.append(f"{label}: skipped ({reason})")
    if result["overhead_outside_encoder_s"]:
        lines += ["", "per-step work outside the encoder (median of 20, first batch):"]
        for label, parts in result["overhead_outside_encoder_s"].items():
            lines.append(f"  {label:<14} mask {1000 * parts['mask']:.2f} ms | perturb {1000 * parts['perturb']:.2f} ms"
                         f" | stats {1000 * parts['stats']:.2f} ms")
    lines += ["", "targets:"]
    for method, reference, limit in TARGETS:
        if method in methods and reference in methods:
            ratio = methods[method]["median_s"] / methods[reference]["median_s"]
            verdict = "met" if ratio <= limit else "NOT met"
            by_min = methods[method]["min_s"] / methods[reference]["min_s"]
            by_cpu = methods[method]["cpu_median_s"] / methods[reference]["cpu_median_s"]
            lines.append(f"  {method} / {reference} = {ratio:.3f} (target <= {limit:.2f}): {verdict}"
                         f"   [by min: {by_min:.3f}, by cpu time: {by_cpu:.3f}]")
    if "1-1" in methods:
        share = methods["1-1"]["perturb_median_s"] / methods["1-1"]["median_s"]
        verdict = "met" if share <= PROVIDER_SHARE_TARGET else "NOT met"
        lines.append(f"  1-1 provider time / 1-1 step = {100 * share:.2f}% (target <= "
                     f"{100 * PROVIDER_SHARE_TARGET:.0f}%): {verdict}")
    if "1-1" in methods and "1-1:two_pass" in methods:
        gain = methods["1-1"]["median_s"] / methods["1-1:two_pass"]["median_s"]
        lines.append(f"  fused 1-1 / two-pass 1-1 = {gain:.3f}")
    lines += load_warning(result, consequence="medians are inflated (min s is the cleaner figure)")
    return "\n".join(lines)


def main(argv=None) -> int:
    return run_and_report(argv=argv, parse_args=parse_args, run_benchmark=run_benchmark, render=render)


if __name__ == "__main__":
    sys.exit(main())
