"""Our training step against the tools people would otherwise use, on the same batches and the same network.

Six steps are timed, interleaved (one of each per round, on that round's batch, each round
starting at the next step, so load from other processes and position in the round hit them alike), each a whole update (forward passes, backward, AdamW):

- ``hand``: a minimal hand-written PyTorch step on our MultiTaskModel: forward, cross-entropy,
  backward, ``torch.optim.AdamW`` step (fused, as ours is where torch has the kernel);
- ``hand:again``: the same step on a second copy of the model: an A/A control, so that
  ``hand:again / hand`` shows how far apart two identical steps measure on this machine
  (the resolution against which the 3% target is read);
- ``none``: our ``run_training_step`` with ``--perturbation none`` on the same model (what
  train.py runs), with the project's AdamW;
- ``trainer``: ``transformers.Trainer.training_step`` + its optimizer's step, on the Hugging
  Face classifier holding the same weights (mt_dnn.hf_mapping);
- ``1-1`` against ``trainer:1-1``: our 1-1 step against ``PerturbationTrainer``'s.

It prints each step's median wall and CPU time and the ratios none/hand (target: within 3%),
none/trainer, 1-1/trainer:1-1 and the A/A control, by median, by minimum, by CPU time and as
the median of the rounds' own ratios with a 95% bootstrap interval (rounds resampled). No gradient
clipping anywhere (the hand-written loop has none), so the four do the same arithmetic.

    python -m benchmarks.bench_vs_tools                              # packaged MiniLM, CPU, real ANLI, batch 32
    python -m benchmarks.bench_vs_tools --random_init bert-base --device cuda --repeats 20
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.benchmark_cli import load_warning, run_and_report  # noqa: E402
from benchmarks.step_cost_setup import (  # noqa: E402
    RANDOM_INIT_SIZES, REPO_ROOT, benchmark_batches, benchmark_device, load_model,
)

STEPS = ("hand", "hand:again", "none", "trainer", "1-1", "trainer:1-1")
RATIOS = (("none", "hand", 1.03), ("hand:again", "hand", None), ("none", "trainer", None),
          ("1-1", "trainer:1-1", None))
BOOTSTRAP_RESAMPLES = 2000


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="packaged-minilm", help="model folder or hub name")
    parser.add_argument("--random_init", choices=sorted(RANDOM_INIT_SIZES), default=None,
                        help="instead of --model: an encoder of this size with random weights (no download)")
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the model's)")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_seq_len", type=int, default=512)
    parser.add_argument("--data", choices=("anli", "snli", "synthetic"), default="anli")
    parser.add_argument("--data_dir", type=Path, default=None, help="ANLI (or SNLI) folder")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache_dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    for flag in ("batch_size", "max_seq_len", "threads", "repeats"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag}: expected a whole number >= 1, got {getattr(args, flag)}")
    if args.warmup < 0:
        parser.error(f"--warmup: expected a whole number >= 0, got {args.warmup}")
    return args


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_steps(*, model, hf_model, tokenizer, task, device, cache_dir: Path, work_dir: Path) -> dict:
    """label -> a function(batch) running one whole update; each set-up outside the timed calls."""
    from transformers import Trainer, TrainingArguments

    from mt_dnn.trainer import build_optimizer  # the project's AdamW (weight-decay groups)
    from mt_dnn.training_step import run_training_step
    from noise_training.hf import PerturbationTrainer
    from noise_training.registry import build_provider, resolve_options

    special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)), device=device)
    ours_optimizer = build_optimizer(model, learning_rate=1e-5, weight_decay=0.01)
    fused = bool(ours_optimizer.param_groups[0].get("fused"))
    providers = {}
    for name in ("none", "1-1"):
        _, options = resolve_options(name=name, given={})
        providers[name] = build_provider(name=name, options=options, model=model, tokenizer=tokenizer,
                                         cache_dir=cache_dir)

    def hand_written():
        hand_model = copy.deepcopy(model)
        # the same AdamW kernel as ours (fused where torch has one), so that the ratio is our step's overhead
        hand_optimizer = torch.optim.AdamW(hand_model.parameters(), lr=1e-5, weight_decay=0.01, fused=fused)

        def step(batch):
            logits = hand_model(task=task.name, input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                token_type_ids=batch.get("token_type_ids"))
            torch.nn.functional.cross_entropy(logits, batch["labels"]).backward()
            hand_optimizer.step()
            hand_optimizer.zero_grad(set_to_none=True)
        return step

    def ours(name):
        def step(batch):
            run_training_step(model=model, forward_model=model, provider=providers[name], batch=batch, task=task,
                              adv_alpha=providers[name].options.get("adv_alpha", 0.0), special_ids=special_ids,
                              normaliser=float(batch["labels"].shape[0]))
            ours_optimizer.step()
            ours_optimizer.zero_grad(set_to_none=True)
        return step

    arguments = TrainingArguments(output_dir=str(work_dir), report_to="none", use_cpu=device.type == "cpu",
                                  max_grad_norm=0.0, learning_rate=1e-5, weight_decay=0.01, disable_tqdm=True)
    trainers = {"trainer": Trainer(model=hf_model, args=arguments),
                "trainer:1-1": PerturbationTrainer(model=copy.deepcopy(hf_model), args=arguments,
                                                   processing_class=tokenizer, perturbation="1-1",
                                                   cache_dir=cache_dir)}

    def hugging_face(label):
        trainer = trainers[label]
        trainer.create_optimizer()
        trainer.current_gradient_accumulation_steps = 1  # set by Trainer's own loop otherwise

        def step(batch):
            trainer.training_step(trainer.model, batch)
            trainer.optimizer.step()
            trainer.optimizer.zero_grad(set_to_none=True)
        return step

    return {"hand": hand_written(), "hand:again": hand_written(), "none": ours("none"), "trainer": hugging_face("trainer"), "1-1": ours("1-1"),
            "trainer:1-1": hugging_face("trainer:1-1")}


def run_benchmark(args: argparse.Namespace) -> dict:
    import tempfile

    from mt_dnn.hf_mapping import build_classifier
    from mt_dnn.run_setup import default_cache_dir
    from mt_dnn.task_def import load_task_defs

    device = benchmark_device(device_name=args.device, threads=args.threads)
    cache_dir = args.cache_dir or default_cache_dir()
    task = load_task_defs(paths=[REPO_ROOT / "task_defs" / "anli.yml"])["anli"]
    model, tokenizer, description = load_model(model_name=args.model, random_init=args.random_init,
                                               tokenizer_name=args.tokenizer, task=task)
    hf_model = build_classifier(model=model, task=task, tokenizer=tokenizer)  # the same weights, HF's modules
    model.to(device).train()
    hf_model.to(device).train()
    rounds = args.warmup + args.repeats
    batches, data_text = benchmark_batches(data=args.data, data_dir=args.data_dir, tokenizer=tokenizer, task=task,
                                           batch_size=args.batch_size, max_seq_len=args.max_seq_len, seed=args.seed,
                                           cache_dir=cache_dir, count=rounds)
    batches = [{k: v.to(device) for k, v in b.items()} for b in batches]
    with tempfile.TemporaryDirectory() as work_dir:
        steps = build_steps(model=model, hf_model=hf_model, tokenizer=tokenizer, task=task, device=device,
                            cache_dir=cache_dir, work_dir=Path(work_dir))
        wall = {label: [] for label in STEPS}
        cpu = {label: [] for label in STEPS}
        load_before = os.getloadavg()
        started = time.perf_counter()
        for index, batch in enumerate(batches):
            torch.manual_seed(args.seed + index)
            # each round starts at another step, so that no step always runs first (or after the same one)
            for label in STEPS[index % len(STEPS):] + STEPS[:index % len(STEPS)]:
                _sync(device)
                t0, c0 = time.perf_counter(), time.process_time()
                steps[label](dict(batch))
                _sync(device)
                if index >= args.warmup:
                    wall[label].append(time.perf_counter() - t0)
                    cpu[label].append(time.process_time() - c0)
            print(f"round {index + 1}/{rounds} done ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
        load_after = os.getloadavg()
    return {"model": description, "device": str(device), "threads": args.threads if device.type == "cpu" else None,
            "batch_size": args.batch_size, "data": data_text, "warmup": args.warmup, "repeats": args.repeats,
            "batch_widths": [int(b["attention_mask"].sum(1).max()) for b in batches],
            "load_average": [load_before[0], load_after[0]], "cpu_count": os.cpu_count(),
            "steps": {label: {"median_s": statistics.median(wall[label]), "min_s": min(wall[label]),
                              "cpu_median_s": statistics.median(cpu[label]), "wall_s": wall[label],
                              "cpu_s": cpu[label]} for label in STEPS}}


def paired_ratio(ours: list[float], theirs: list[float], *, seed: int = 0) -> tuple[float, float, float]:
    """The median of the rounds' own ratios and its 95% bootstrap interval (rounds resampled)."""
    import random

    ratios = [a / b for a, b in zip(ours, theirs)]
    draw = random.Random(seed)
    medians = sorted(statistics.median(draw.choices(ratios, k=len(ratios))) for _ in range(BOOTSTRAP_RESAMPLES))
    return (statistics.median(ratios), medians[int(0.025 * BOOTSTRAP_RESAMPLES)],
            medians[int(0.975 * BOOTSTRAP_RESAMPLES) - 1])


def render(result: dict) -> str:
    steps = result["steps"]
    lines = [f"model: {result['model']} | device: {result['device']}"
             + (f" | threads: {result['threads']}" if result["threads"] else ""),
             f"data: {result['data']} | batch {result['batch_size']} | padded widths {result['batch_widths']}",
             f"timed: {result['repeats']} interleaved rounds after {result['warmup']} warm-up; a step = one update",
             "", f"{'step':<14}{'median s':>10}{'min s':>9}{'cpu s':>9}", "-" * 42]
    for label, figures in steps.items():
        lines.append(f"{label:<14}{figures['median_s']:>10.4f}{figures['min_s']:>9.4f}{figures['cpu_median_s']:>9.3f}")
    lines += ["", "ratios (ours / theirs): by median, by min, by CPU time, and the median of the rounds' own ratios",
              "(paired: both steps ran on that round's batch, so batch widths cancel) with its 95% bootstrap interval"]
    for ours, theirs, target in RATIOS:
        if ours not in steps or theirs not in steps:  # a JSON file written before the step existed
            continue
        by = {key: steps[ours][key] / steps[theirs][key] for key in ("median_s", "min_s", "cpu_median_s")}
        paired, low, high = paired_ratio(steps[ours]["wall_s"], steps[theirs]["wall_s"])
        verdict = "" if target is None else (
            f"   target <= {target:.2f}: {'met' if paired <= target else 'NOT met'}"
            + (" (interval inside)" if high <= target else " (interval crosses it)" if low <= target else ""))
        lines.append(f"  {ours:>10} / {theirs:<12} {by['median_s']:.3f}  {by['min_s']:.3f}  {by['cpu_median_s']:.3f}"
                     f"  {paired:.3f} [{low:.3f}, {high:.3f}]" + verdict)
    lines += load_warning(result, consequence="the figures are not a measurement")
    return "\n".join(lines)


def main(argv=None) -> int:
    return run_and_report(argv=argv, parse_args=parse_args, run_benchmark=run_benchmark, render=render)


if __name__ == "__main__":
    sys.exit(main())
