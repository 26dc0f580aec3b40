"""Data-side costs: tokenising and caching ANLI, and what padding costs an epoch.

Three figures on the real ANLI dev and test files (R1-R3, 6,400 pairs):

1. Tokenising and caching all six files from scratch (pairs per second), then a second load
   that reads the cache (pairs per second).
2. An epoch of those pairs (batch 32) with dynamic padding (each batch padded to its longest
   pair, what training does), with length-grouped batching (``--batching length_grouped``:
   pairs of similar length share a batch) and padded to ``--max_seq_len``: tokens computed
   (padding included) and epoch time. The epoch time is composed from measured steps: a
   plain fine-tuning step (forward + backward + AdamW) is timed at several padded widths,
   a quadratic in the width is fitted, and every batch of each epoch plan is priced with it
   (the widths are timed interleaved and the minimum kept, so load from other processes
   does not bend the fit). A few real batches of each plan are timed too, to check the fit.

    python -m benchmarks.bench_data                          # packaged MiniLM, CPU
    python -m benchmarks.bench_data --tokenize_only
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from mt_dnn.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[1]
PADDING_MODES = ("dynamic", "length_grouped", "max_seq_len")


def tokenize_throughput(*, tokenizer, task, data_dir: Path, max_seq_len: int, cache_dir: Path) -> dict:
    """Seconds and pairs/s to tokenise + cache every dev/test file, then to load them from the cache."""
    from benchmarks.bench_step_cost import ANLI_EVAL_FILES
    from mt_dnn.features import load_tokenized_split

    def load_all():
        started = time.perf_counter()
        splits = [load_tokenized_split(path=data_dir / name, task=task, split=name.replace("/", "_")[:-6],
                                       tokenizer=tokenizer, max_seq_len=max_seq_len, cache_dir=cache_dir)
                  for name in ANLI_EVAL_FILES]
        return time.perf_counter() - started, splits

    cold, splits = load_all()
    cached_files = sorted(p.name for p in cache_dir.glob("*.npz"))
    warm, again = load_all()
    pairs = sum(len(s) for s in splits)
    same = all(np.array_equal(a.input_ids, b.input_ids) and np.array_equal(a.offsets, b.offsets)
               for a, b in zip(splits, again))
    return {"pairs": pairs, "tokenize_s": cold, "tokenize_pairs_per_s": pairs / cold, "cache_read_s": warm,
            "cache_read_pairs_per_s": pairs / warm, "cache_files": len(cached_files), "cache_identical": same}


def epoch_plans(*, data, batch_size: int, seed: int, max_seq_len: int) -> dict[str, list[tuple[np.ndarray, int]]]:
    """(example indices, padded width) of every batch of one epoch, for each padding mode."""
    from mt_dnn.batching import plan_epoch

    lengths = data.lengths()
    plans = {}
    for mode in PADDING_MODES:
        batching = "length_grouped" if mode == "length_grouped" else "random"
        plan = plan_epoch(train_data={data.task: data}, batch_size=batch_size, seed=seed, epoch=0, mode=batching)
        plans[mode] = [(b.indices, max_seq_len if mode == "max_seq_len" else int(lengths[b.indices].max()))
                       for b in plan]
    return plans


def padded_batch(*, data, indices: np.ndarray, width: int, pad_token_id: int) -> dict[str, torch.Tensor]:
    """The pairs of ``indices``, each cut to at most ``width`` tokens, padded to exactly ``width``."""
    rows = len(indices)
    input_ids = np.full((rows, width), pad_token_id, dtype=np.int64)
    token_type_ids = np.zeros((rows, width), dtype=np.int64)
    attention_mask = np.zeros((rows, width), dtype=np.int64)
    for row, index in enumerate(indices):
        start = data.offsets[index]
        length = min(width, int(data.offsets[index + 1] - start))
        input_ids[row, :length] = data.input_ids[start : start + length]
        token_type_ids[row, :length] = data.token_type_ids[start : start + length]
        attention_mask[row, :length] = 1
    return {"input_ids": torch.from_numpy(input_ids), "token_type_ids": torch.from_numpy(token_type_ids),
            "attention_mask": torch.from_numpy(attention_mask),
            "labels": torch.from_numpy(data.labels[indices].astype(np.int64))}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="packaged-minilm")
    parser.add_argument("--data_dir", type=Path, default=None, help="ANLI v1.0 folder (default $ANLI_DIR or data/anli_v1.0)")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_seq_len", type=int, default=512, help="train.py's default")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads (default: all cores)")
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 96, 160, 256, 512],
                        help="padded widths at which a step is timed for the fit (max_seq_len is always added)")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per width (the minimum is kept)")
    parser.add_argument("--check_batches", type=int, default=2, help="real batches of each plan timed to check the fit")
    parser.add_argument("--tokenize_only", action="store_true", help="only the tokenisation/cache figures")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for flag in ("batch_size", "max_seq_len", "threads", "repeats"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag}: expected a whole number >= 1, got {getattr(args, flag)}")
    return args


def main(argv=None) -> int:
    from benchmarks.benchmark_cli import run_and_report

    return run_and_report(argv=argv, parse_args=parse_args, run_benchmark=run, render="\n".join)


def run(args) -> list[str]:
    from transformers import AutoTokenizer

    from benchmarks.bench_step_cost import Method, TimedProvider, anli_examples, default_anli_dir, run_step
    from mt_dnn.model import build_model
    from mt_dnn.packaged_model import resolve_model_name
    from mt_dnn.task_def import load_task_defs
    from mt_dnn.trainer import build_optimizer
    from noise_training.registry import build_provider, resolve_options

    torch.set_num_threads(args.threads)
    data_dir = args.data_dir or default_anli_dir()
    if not (data_dir / "R1" / "dev.jsonl").is_file():
        raise UserError(f"--data_dir {data_dir}: no R1/dev.jsonl (set $ANLI_DIR)")
    task = load_task_defs(paths=[REPO_ROOT / "task_defs" / "anli.yml"])["anli"]
    model_path = resolve_model_name(args.model)
    tokenizer = AutoTokenizer.from_pretrained(model_path)

    scratch = Path(tempfile.mkdtemp(prefix="bench_data_"))
    try:
        tok = tokenize_throughput(tokenizer=tokenizer, task=task, data_dir=data_dir, max_seq_len=args.max_seq_len,
                                  cache_dir=scratch / "tokens")
        data = anli_examples(tokenizer=tokenizer, task=task, data_dir=data_dir, max_seq_len=args.max_seq_len,
                             cache_dir=scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    lines = [
        f"tokenizer: {model_path} | threads: {args.threads} | TOKENIZERS_PARALLELISM="
        f"{os.environ.get('TOKENIZERS_PARALLELISM', 'unset')}",
        f"tokenise + cache {tok['pairs']} ANLI dev/test pairs: {tok['tokenize_s']:.2f} s = "
        f"{tok['tokenize_pairs_per_s']:.0f} pairs/s ({tok['cache_files']} cache files)",
        f"second load, from the cache: {tok['cache_read_s']:.3f} s = {tok['cache_read_pairs_per_s']:.0f} pairs/s "
        f"({tok['tokenize_s'] / tok['cache_read_s']:.0f}x faster; identical arrays: {tok['cache_identical']})",
    ]
    if args.tokenize_only:
        return lines

    lengths = data.lengths()
    plans = epoch_plans(data=data, batch_size=args.batch_size, seed=args.seed, max_seq_len=args.max_seq_len)
    real_tokens = int(lengths.sum())
    device = torch.device(args.device)
    model = build_model(model_name=model_path, tasks={"anli": task}, tokenizer=tokenizer).to(device).train()
    spec, options = resolve_options(name="none", given={})
    provider = TimedProvider(build_provider(name=spec.name, options=options, model=model, tokenizer=tokenizer,
                                             cache_dir=None), device=device)
    optimizer = build_optimizer(model, learning_rate=1e-5, weight_decay=0.01)
    special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)), device=device)
    common = dict(method=Method(label="none", provider="none", fuse=True), provider=provider, model=model,
                  step_model=model, optimizer=optimizer, task=task, special_ids=special_ids,
                  autocast=contextlib.nullcontext, scaler=None, device=device)
    rng = np.random.default_rng(args.seed)

    def timed(indices: np.ndarray, width: int) -> float:
        batch = padded_batch(data=data, indices=indices, width=width, pad_token_id=tokenizer.pad_token_id)
        seconds, _, _ = run_step(batch={k: v.to(device) for k, v in batch.items()}, **common)
        return seconds

    def random_rows() -> np.ndarray:
        return rng.choice(len(data), size=args.batch_size, replace=False)

    timed(random_rows(), 128)  # warm-up
    widths = sorted(set(args.widths) | {args.max_seq_len})
    # Widths interleaved round by round, and the least-disturbed (minimum) time kept: other
    # processes' load only ever adds time, and it should not bend the fit toward one width.
    samples: dict[int, list[float]] = {w: [] for w in widths}
    for _ in range(args.repeats):
        for w in widths:
            samples[w].append(timed(random_rows(), w))
    measured = {w: min(values) for w, values in samples.items()}
    # step(width) ~ a + b w + c w^2 for a full batch; a smaller last batch scales with its rows.
    coef = np.polyfit(np.array(widths, dtype=float), np.array([measured[w] for w in widths]), deg=2)
    price = lambda rows, width: float(np.polyval(coef, width)) * rows / args.batch_size  # noqa: E731

    lines += ["", f"step (forward + backward + AdamW, batch {args.batch_size}) by padded width, min of {args.repeats}:",
              "  " + " | ".join(f"{w}: {measured[w]:.2f} s" for w in widths)]
    header = f"{'padding':<16}{'batches':>8}{'mean width':>11}{'tokens':>10}{'real %':>8}{'epoch s':>9}{'vs dynamic':>11}"
    lines += ["", f"one epoch of the {len(data)} pairs:", header, "-" * len(header)]
    epoch_s = {mode: sum(price(len(indices), width) for indices, width in plan) for mode, plan in plans.items()}
    for mode, plan in plans.items():
        tokens = sum(len(indices) * width for indices, width in plan)
        lines.append(f"{mode:<16}{len(plan):>8}{np.mean([w for _, w in plan]):>11.1f}{tokens:>10}"
                     f"{100 * real_tokens / tokens:>8.1f}{epoch_s[mode]:>9.0f}{epoch_s[mode] / epoch_s['dynamic']:>11.2f}")
    lines.append(f"padded to max_seq_len / dynamic: {epoch_s['max_seq_len'] / epoch_s['dynamic']:.2f}x epoch time; "
                 f"length_grouped / dynamic: {epoch_s['length_grouped'] / epoch_s['dynamic']:.2f}x")
    if args.check_batches:
        lines.append("fit check (real batches of each plan, measured vs priced):")
        for mode in ("dynamic", "length_grouped"):
            for indices, width in plans[mode][: args.check_batches]:
                seconds = min(timed(indices, width) for _ in range(2))
                lines.append(f"  {mode:<15} width {width:>3}: {seconds:.2f} s measured (min of 2), "
                             f"{price(len(indices), width):.2f} s priced")
    return lines


if __name__ == "__main__":
    sys.exit(main())
