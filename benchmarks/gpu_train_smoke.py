"""Every provider trained for about 50 updates through ``train.py``, and a stop + resume pair, on one device.

The GPU check's second half (benchmarks.gpu_check): the step benchmark times single steps, this
runs the real program end to end where users train, on what can travel to a lent GPU machine: a
small BERT with random weights built from a config (the packaged tokenizer's vocabulary), and the
ANLI R1 dev pairs as training data (the R1 test pairs as the dev split; ANLI's train sets are not
needed). Per provider it checks what a user would: the run finishes, every epoch's training loss
is finite and the last is below the first, the provider reports its figures (changed share, noise
share, passes); and for a run stopped at ``--stop_at_step`` and continued with ``--resume``, how far
its figures are from the uninterrupted run's (bit-exact on the CPU; on a GPU, kernels such as
atomics-based reductions need not be, so the difference is measured and reported, not asserted).

    python -m benchmarks.gpu_train_smoke --device cuda --amp bf16 --json out.json
    python -m benchmarks.gpu_train_smoke --smoke        # the same code path on the CPU, tiny
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO_ROOT = Path(__file__).resolve().parents[1]
# (hidden, layers, heads, ffn): small enough that 50 updates take seconds, deep enough to be a transformer.
MODEL_SIZES = {"small": (256, 4, 4, 1024), "tiny": (32, 2, 2, 64)}
TRAIN_SPLIT, DEV_SPLIT = "r1_dev_as_train", "r1_test_as_dev"


def build_random_model(*, folder: Path, size: str, tokenizer_name: str) -> Path:
    """A BERT with random weights (seed 0) and the packaged tokenizer, saved as a model folder train.py loads."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from mt_dnn.packaged_model import resolve_model_name

    hidden, layers, heads, ffn = MODEL_SIZES[size]
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_name(tokenizer_name))
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=ffn, max_position_embeddings=512,
                        pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_task_def(*, path: Path) -> Path:
    """task_defs/anli.yml with two splits: R1 dev to train on, R1 test to evaluate."""
    import yaml

    definitions = yaml.safe_load((REPO_ROOT / "task_defs" / "anli.yml").read_text(encoding="utf-8"))
    definitions["anli"]["splits"] = {TRAIN_SPLIT: {"path": "R1/dev.jsonl", "role": "train"},
                                     DEV_SPLIT: {"path": "R1/test.jsonl", "role": "dev"}}
    path.write_text("# written by benchmarks.gpu_train_smoke\n" + yaml.safe_dump(definitions, sort_keys=False),
                    encoding="utf-8")
    return path


def read_run(folder: Path) -> dict:
    """What the run folder says: per-epoch training loss, perturbation figures and passes, the last dev accuracy."""
    epochs, evals = [], []
    metrics = folder / "metrics.jsonl"
    for line in metrics.read_text(encoding="utf-8").splitlines() if metrics.is_file() else []:
        record = json.loads(line)
        if record.get("kind") == "train_epoch":
            epochs.append(record)
        elif record.get("kind") == "eval":
            evals.append(record)
    summary_path = folder / "run_summary.json"
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else {}
    return {
        "train_loss": [e["train_loss"] for e in epochs],
        "updates": epochs[-1]["global_step"] if epochs else 0,
        "perturbation": [e.get("perturbation") for e in epochs],
        "passes": ([epochs[-1].get("forward_passes_per_update"), epochs[-1].get("backward_passes_per_update")]
                   if epochs else None),
        "seconds_per_update": [e.get("seconds_per_update") for e in epochs],
        "dev_accuracy": evals[-1].get("accuracy") if evals else None,
        "finished": bool(summary.get("finished")),
    }


def verdict(*, method: str, run: dict, returncode: int) -> list[str]:
    """What is wrong with a finished run (empty: nothing)."""
    problems = []
    if returncode != 0:
        problems.append(f"exit {returncode}")
    losses = run["train_loss"]
    if not run["finished"]:
        problems.append("no finished run_summary.json")
    if len(losses) < 2 or not all(math.isfinite(x) for x in losses):
        problems.append(f"training losses not finite or too few: {losses}")
    elif not losses[-1] < losses[0]:
        problems.append(f"training loss did not fall: {losses[0]:.4f} -> {losses[-1]:.4f}")
    if method != "none":
        reports = [p for p in run["perturbation"] if p]
        if len(reports) != len(losses):
            problems.append("an epoch without the provider's figures")
        elif not all(math.isfinite(r.get("changed_share", math.nan)) and math.isfinite(r.get("noise_share", math.nan))
                     for r in reports):
            problems.append(f"provider figures not finite: {reports[-1]}")
    return problems


def _train(argv: list[str], *, log: Path, env: dict) -> int:
    with open(log, "ab") as handle:
        handle.write(f"$ train.py {' '.join(argv)}\n".encode())
        handle.flush()
        return subprocess.run([sys.executable, str(REPO_ROOT / "train.py"), *argv], cwd=REPO_ROOT, env=env,
                              stdout=handle, stderr=subprocess.STDOUT).returncode


def run_method(*, method: str, common: list[str], work: Path, env: dict, stop_at: int | None) -> dict:
    """The uninterrupted run, and (with ``stop_at``) the stopped-and-resumed pair, of one provider."""
    started = time.perf_counter()
    log = work / "logs" / f"{method}.log"
    full = work / "runs" / method / "full"
    code = _train([*common, "--perturbation", method, "--output_dir", str(full)], log=log, env=env)
    result = {"method": method, "full": read_run(full), "returncode": code}
    result["problems"] = verdict(method=method, run=result["full"], returncode=code)
    if stop_at is not None and code == 0:
        pair = work / "runs" / method / "resumed"
        first = _train([*common, "--perturbation", method, "--output_dir", str(pair), "--stop_at_step", str(stop_at)],
                       log=log, env=env)
        second = _train([*common, "--perturbation", method, "--output_dir", str(pair), "--resume"], log=log, env=env)
        resumed = read_run(pair)
        result["resumed"] = resumed
        if first != 0 or second != 0 or not resumed["finished"]:
            result["problems"].append(f"stop/resume pair failed (exit {first}, {second})")
        elif len(resumed["train_loss"]) == len(result["full"]["train_loss"]):
            result["resume_max_loss_diff"] = max(abs(a - b) for a, b in
                                                 zip(resumed["train_loss"], result["full"]["train_loss"]))
            result["resume_dev_accuracy_diff"] = abs(resumed["dev_accuracy"] - result["full"]["dev_accuracy"])
        else:
            result["problems"].append("the resumed run has another number of epochs")
    result["wall_s"] = time.perf_counter() - started
    result["log"] = str(log)
    return result


def run_smoke(*, methods: list[str], device: str, amp: str, size: str, data_dir: Path, work: Path, epochs: int,
              train_examples: int, batch_size: int, learning_rate: float, resume_methods: list[str],
              parallel: int, cache_dir: Path, tokenizer: str = "packaged-minilm") -> dict:
    work.mkdir(parents=True, exist_ok=True)
    (work / "logs").mkdir(exist_ok=True)
    model = build_random_model(folder=work / "model", size=size, tokenizer_name=tokenizer)
    task_def = write_task_def(path=work / "anli_gpu_check.yml")
    updates_per_epoch = math.ceil(train_examples / batch_size)
    common = ["--model", str(model), "--task_def", str(task_def), "--data_dir", str(data_dir),
              "--train_datasets", f"anli:{TRAIN_SPLIT}", "--test_datasets", f"anli:{DEV_SPLIT}",
              "--max_train_examples", str(train_examples), "--max_eval_examples", str(train_examples),
              "--epochs", str(epochs), "--batch_size", str(batch_size), "--learning_rate", str(learning_rate),
              "--max_seq_len", "128", "--device", device, "--amp", amp, "--cache_dir", str(cache_dir),
              "--no_progress", "--no_export", "--save_predictions", "none", "--seed", "1"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    stop_at = updates_per_epoch * epochs // 2
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
        futures = {method: pool.submit(run_method, method=method, common=common, work=work, env=env,
                                       stop_at=stop_at if method in resume_methods else None)
                   for method in methods}
        results = {method: future.result() for method, future in futures.items()}
    return {"device": device, "amp": amp, "model": f"random-init BERT {size} {MODEL_SIZES[size]}",
            "data": f"{train_examples} ANLI R1 dev pairs to train, as many R1 test pairs as dev",
            "epochs": epochs, "updates": updates_per_epoch * epochs, "stop_at_step": stop_at,
            "batch_size": batch_size, "learning_rate": learning_rate, "parallel_runs": parallel,
            "wall_s": time.perf_counter() - started, "methods": results}


def render(result: dict) -> str:
    lines = [f"training smoke: {result['model']} | {result['device']} {result['amp']} | {result['data']} | "
             f"{result['updates']} updates, stop at {result['stop_at_step']} + resume | {result['wall_s']:.0f} s",
             f"{'method':<14}{'loss first':>11}{'loss last':>10}{'changed':>9}{'noise':>8}{'F+B':>6}{'s/upd':>8}"
             f"{'resume Δloss':>13}{'Δacc':>7}  outcome"]
    for method, r in result["methods"].items():
        full = r["full"]
        losses = full["train_loss"] or [math.nan]
        report = (full["perturbation"] or [None])[-1] or {}
        passes = full["passes"] or [None, None]
        spu = [s for s in full["seconds_per_update"] if s] or [math.nan]
        diff = r.get("resume_max_loss_diff")
        acc = r.get("resume_dev_accuracy_diff")
        lines.append(f"{method:<14}{losses[0]:>11.4f}{losses[-1]:>10.4f}"
                     f"{report.get('changed_share', math.nan):>9.3f}{report.get('noise_share', math.nan):>8.3f}"
                     f"{passes[0] or 0:>3.0f}+{passes[1] or 0:<2.0f}{min(spu):>8.3f}"
                     f"{'-' if diff is None else f'{diff:.2e}':>13}{'-' if acc is None else f'{acc:.3f}':>7}  "
                     f"{'ok' if not r['problems'] else '; '.join(r['problems'])}")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    from noise_training.registry import provider_names

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--amp", choices=("none", "bf16", "fp16"), default="bf16")
    parser.add_argument("--methods", nargs="+", default=provider_names())
    parser.add_argument("--resume_methods", nargs="*", default=None,
                        help="providers that also get the stop + resume pair (default: all of --methods)")
    parser.add_argument("--data_dir", type=Path, default=None, help="ANLI v1.0 folder (default $ANLI_DIR)")
    parser.add_argument("--tokenizer", default="packaged-minilm", help="tokenizer folder whose vocabulary the model "
                        "gets (default: the packaged MiniLM's BERT uncased one)")
    parser.add_argument("--work_dir", type=Path, required=True, help="model, run folders and logs go here")
    parser.add_argument("--cache_dir", type=Path, default=None, help="token/neighbour/synonym caches (default: "
                        "WORK_DIR/cache)")
    parser.add_argument("--parallel", type=int, default=min(8, os.cpu_count() or 1), help="train.py processes at once")
    parser.add_argument("--smoke", action="store_true", help="tiny model, 2 epochs of 4 updates, on the CPU")
    parser.add_argument("--json", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    from benchmarks.step_cost_setup import default_anli_dir

    args = parse_args(argv)
    data_dir = args.data_dir or default_anli_dir()
    if not (data_dir / "R1" / "dev.jsonl").is_file():
        print(f"error: --data_dir {data_dir}: no R1/dev.jsonl (set $ANLI_DIR)", file=sys.stderr)
        return 2
    shape = dict(size="tiny", epochs=2, train_examples=32, batch_size=8, learning_rate=1e-3) if args.smoke else \
        dict(size="small", epochs=6, train_examples=256, batch_size=32, learning_rate=3e-4)
    result = run_smoke(methods=args.methods, device="cpu" if args.smoke else args.device,
                       amp="none" if args.smoke else args.amp, data_dir=data_dir, work=args.work_dir,
                       resume_methods=args.methods if args.resume_methods is None else args.resume_methods,
                       parallel=args.parallel, tokenizer=args.tokenizer, cache_dir=args.cache_dir or args.work_dir / "cache", **shape)
    print(render(result))
    if args.json is not None:
        from mt_dnn.run_files import atomic_write_json

        atomic_write_json(args.json, result)
    return 0 if all(not r["problems"] for r in result["methods"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
