"""SMART's sizes on a real model and real data: the step per token, and the perturbation's share.

Two measurements the SMART baseline's faithfulness rests on, on the packaged MiniLM and real
ANLI pairs, in training mode (dropout on, as in training; the same seed for every variant).
In eval mode the float32 gradient of a KL between predictions that differ by a 1e-5 nudge is
at the rounding floor on MiniLM (measured: a step of 0 on most tokens); in training mode the
clean and perturbed passes draw different dropout masks, which is what the gradient sees:

- the corrected ``smart``'s per-token step ‖δ_after − δ₀‖∞ / η at batch 8, 16 and 32, with
  the ascent loss summed over the examples (what ``smart`` does) and averaged over them (what
  it did before): with the mean, ε = 1e-6 swamps a gradient 1/B as large;
- the size of each SMART's perturbation: ‖δ‖₂ / ‖E‖₂ per token as added (token embeddings
  for ``smart``, the embedding block's output for ``smart_mtdnn``) and, for ``smart_mtdnn``,
  the figure MT-DNN's own code logs (mean|η·g/(max|noise + η·g| + ε)| over mean|embed|),
  against the paper's "SMART ≈ 0.003%".

    python -m experiments.smart_step_sizes --data_dir $ANLI_DIR
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch


def _batches(tokenizer, path: Path, sizes, max_seq_len: int = 256):
    pairs = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[: max(sizes)]]
    for size in sizes:
        chosen = pairs[:size]
        batch = dict(tokenizer([p["context"] for p in chosen], [p["hypothesis"] for p in chosen], padding=True,
                               truncation=True, max_length=max_seq_len, return_tensors="pt"))
        batch["labels"] = torch.tensor(["enc".index(p["label"]) for p in chosen])
        yield size, batch


def main(argv: list[str] | None = None) -> int:
    from transformers import AutoTokenizer

    from mt_dnn.model import build_model
    from mt_dnn.packaged_model import resolve_model_name
    from mt_dnn.task_def import load_task_defs
    from mt_dnn.training_step import run_training_step
    from noise_training.registry import build_provider, resolve_options

    parser = argparse.ArgumentParser(prog="python -m experiments.smart_step_sizes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", required=True, help="ANLI v1.0 folder")
    parser.add_argument("--model", default="packaged-minilm")
    parser.add_argument("--cache_dir", default="/tmp/smart-step-sizes")
    args = parser.parse_args(argv)
    path = Path(args.data_dir) / "R1" / "dev.jsonl"
    if not path.is_file():
        print(f"smart_step_sizes: error: --data_dir {args.data_dir}: no R1/dev.jsonl", file=sys.stderr)
        return 2
    repo = Path(__file__).resolve().parents[1]
    task = load_task_defs(paths=[repo / "task_defs" / "anli.yml"])["anli"]
    name = resolve_model_name(args.model)
    tokenizer = AutoTokenizer.from_pretrained(name)
    model = build_model(model_name=name, tasks={"anli": task}, tokenizer=tokenizer).train()
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)))

    def provider(method, **given):
        spec, options = resolve_options(name=method, given=given)
        return build_provider(name=spec.name, options=options, model=model, tokenizer=tokenizer,
                              cache_dir=args.cache_dir)

    print("| batch | ascent loss | median ‖step‖∞/η per token | 10th percentile |\n|---|---|---|---|")
    sizes = {}
    for size, batch in _batches(tokenizer, path, (8, 16, 32)):
        for reduction in ("batchmean", "sum"):
            smart = provider("smart")
            captured = {}
            original = smart.perturb

            def perturb(ctx, original=original, reduction=reduction, captured=captured):
                adv_loss = ctx.adv_loss
                ctx.adv_loss = lambda clean, adv, reduction_=reduction, **_: adv_loss(clean, adv, reduction=reduction_)
                torch.manual_seed(0)
                noise = torch.randn_like(ctx.token_embeddings) * smart.noise_var
                smart.initial_noise = lambda like: noise
                result = original(ctx)
                captured["step"] = (result.delta - noise * ctx.perturbable_mask.unsqueeze(-1)).abs().amax(-1)
                captured["mask"] = ctx.perturbable_mask
                return result

            smart.perturb = perturb
            torch.manual_seed(1)  # the same dropout masks for both ascent losses
            outcome = run_training_step(model=model, forward_model=model, provider=smart, batch=batch, task=task,
                                        adv_alpha=1.0, special_ids=special, normaliser=float(size))
            model.zero_grad(set_to_none=True)
            ratio = (captured["step"][captured["mask"]] / smart.step_size).tolist()
            ratio.sort()
            label = "mean (before)" if reduction == "batchmean" else "sum (now)"
            print(f"| {size} | {label} | {statistics.median(ratio):.3f} | {ratio[len(ratio) // 10]:.3f} |")
            if reduction == "sum":
                sizes[("smart", size)] = outcome.stats
        mtdnn = provider("smart_mtdnn")
        outcome = run_training_step(model=model, forward_model=model, provider=mtdnn, batch=batch, task=task,
                                    adv_alpha=1.0, special_ids=special, normaliser=float(size))
        model.zero_grad(set_to_none=True)
        sizes[("smart_mtdnn", size)] = outcome.stats
    print("\n| provider | batch | applied ‖δ‖₂/‖E‖₂ % | MT-DNN-logged size % | paper |\n|---|---|---|---|---|")
    for (method, size), stats in sizes.items():
        logged = stats.get("mtdnn_logged_share")
        print(f"| {method} | {size} | {100 * stats['noise_share']:.4g} | "
              f"{'—' if logged is None else f'{100 * logged:.4g}'} | ≈0.003 |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
