"""What each provider does to real inputs: tokens changed, noise size, time per step.

On the packaged MiniLM (or any ``--model``) and real ANLI batches, every provider runs
the real training step (``run_training_step``: step 1, perturbation, step 2, backward;
no optimiser update, so every provider sees the same weights and batches) and this prints,
per provider, the share of perturbable tokens changed, the noise's L2 norm as a share of
the input it is added to (the token embedding, the paper's measure; for ``smart_mtdnn`` the
embedding block's output), for ``smart_mtdnn`` also the size MT-DNN's own code logs, and the
median seconds per step, beside the paper's figures. Usage:
``python -m experiments.perturbation_stats --data_dir $ANLI_DIR --split r1_dev``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mt_dnn.batching import collate
from mt_dnn.datasets import DEFAULT_ANLI_DIR, SplitRef, load_splits, resolve_data_dirs
from mt_dnn.model import build_model
from mt_dnn.packaged_model import resolve_model_name
from mt_dnn.run_setup import default_cache_dir, load_tokenizer
from mt_dnn.task_def import load_task_defs
from mt_dnn.training_step import run_training_step
from noise_training.registry import build_provider, provider_names, resolve_options

REPO = Path(__file__).resolve().parent.parent
# The paper's SMART is smart_mtdnn; its ≈0.003% sits beside the size MT-DNN's code logs, the nearer of its two.
PAPER = {"smart_mtdnn": "≈0.003 (vs MT-DNN-logged)", "1-1": "≈30", "wordnet_0.5": "≈70"}
PAPER_CHANGED = {"wordnet_1.0": "≈30 (BERT)", "wordnet_0.5": "≈30 (BERT)"}


def measure(*, model_name: str, data_dir: Path, split: str, batches: int, batch_size: int, max_seq_len: int,
            providers: list[str], seed: int, threads: int | None) -> list[dict]:
    if threads:
        torch.set_num_threads(threads)
    tasks = load_task_defs(paths=[REPO / "task_defs" / "anli.yml"])
    task = tasks["anli"]
    path = resolve_model_name(model_name)
    tokenizer = load_tokenizer(path)
    ref = SplitRef(task="anli", split=split)
    data = load_splits(refs=[ref], tasks=tasks, data_dirs=resolve_data_dirs(values=[str(data_dir)], tasks=tasks),
                       tokenizer=tokenizer, max_seq_len=max_seq_len, cache_dir=default_cache_dir() / "tokens")[ref]
    order = np.random.default_rng(seed).permutation(len(data))
    chosen = [order[i * batch_size:(i + 1) * batch_size] for i in range(batches)]
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)))
    model = build_model(model_name=path, tasks={"anli": task}, tokenizer=tokenizer)
    model.train()
    rows = []
    for name in providers:
        spec, options = resolve_options(name=name, given={})
        provider = build_provider(name=spec.name, options=options, model=model, tokenizer=tokenizer,
                                  cache_dir=default_cache_dir())
        torch.manual_seed(seed)
        stats, seconds = [], []
        for i, indices in enumerate([chosen[0]] + chosen):  # the first batch warms up, not counted
            batch = collate(data, indices, pad_token_id=tokenizer.pad_token_id or 0)
            started = time.perf_counter()
            outcome = run_training_step(model=model, forward_model=model, provider=provider, batch=batch, task=task,
                                        adv_alpha=options.get("adv_alpha", 0.0), special_ids=special,
                                        normaliser=float(len(indices)))
            model.zero_grad(set_to_none=True)
            if i:
                seconds.append(time.perf_counter() - started)
                stats.append(outcome.stats)
        row = {"provider": spec.name, "seconds_per_step": statistics.median(seconds),
               "forwards": outcome.forwards, "backwards": outcome.backwards}
        if stats and stats[0]:
            changed = sum(s["changed_tokens"] for s in stats)
            row["changed_share"] = changed / sum(s["perturbable_tokens"] for s in stats)
            # mean over changed tokens of |delta|/|E|: weight each batch's mean by its changed count
            row["noise_share"] = sum(s["noise_share"] * s["changed_tokens"] for s in stats) / max(changed, 1)
            if "mtdnn_logged_share" in stats[0]:  # a per-batch figure over all positions: a plain mean
                row["mtdnn_logged_share"] = statistics.mean(s["mtdnn_logged_share"] for s in stats)
        rows.append(row)
        print(_format_row(row), flush=True)
    return rows


def _format_row(row: dict) -> str:
    name = row["provider"]
    changed = f"{100 * row['changed_share']:.1f}" if "changed_share" in row else "–"
    noise = f"{100 * row['noise_share']:.3g}" if "noise_share" in row else "–"
    logged = f"{100 * row['mtdnn_logged_share']:.3g}" if "mtdnn_logged_share" in row else "–"
    added_to = "embedding output" if name == "smart_mtdnn" else "token embedding"
    return (f"| {name} | {changed} | {PAPER_CHANGED.get(name, '–')} | {added_to} | {noise} | {logged} | "
            f"{PAPER.get(name, '–')} | {row['seconds_per_step']:.3f} | {row['forwards']}+{row['backwards']} |")


HEADER = ("| provider | tokens changed % | paper | added to | noise / input L2 % | MT-DNN-logged % | paper "
          "| s/step (median) | fwd+bwd |\n"
          "|---|---|---|---|---|---|---|---|---|")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="packaged-minilm")
    parser.add_argument("--data_dir", default=os.environ.get("ANLI_DIR") or DEFAULT_ANLI_DIR)
    parser.add_argument("--split", default="r1_dev")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_seq_len", type=int, default=512)
    parser.add_argument("--providers", default=",".join(provider_names()))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    print(f"model {args.model}, ANLI {args.split}, {args.batches} batches of {args.batch_size} "
          f"(+1 warm-up), torch threads {torch.get_num_threads() if not args.threads else args.threads}\n")
    print(HEADER)
    measure(model_name=args.model, data_dir=Path(args.data_dir), split=args.split, batches=args.batches,
            batch_size=args.batch_size, max_seq_len=args.max_seq_len,
            providers=[p for p in args.providers.split(",") if p], seed=args.seed, threads=args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
