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
import contextlib
import ctypes
import gc
import os
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from mt_dnn.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_METHODS = ("none", "smart", "1-1", "1-1:two_pass", "1-2", "2-1", "2-2", "2-3", "wordnet_0.5")
TWO_PASS = "two_pass"
# Encoders built from a config with random weights: the step costs of the paper's models
# (BERT-base, RoBERTa-large) without a download. "tiny" is for smoke tests of this script.
RANDOM_INIT_SIZES = {
    "bert-base": {"arch": "bert", "hidden": 768, "layers": 12, "heads": 12, "ffn": 3072},
    "roberta-large": {"arch": "roberta", "hidden": 1024, "layers": 24, "heads": 16, "ffn": 4096},
    "tiny": {"arch": "bert", "hidden": 64, "layers": 2, "heads": 2, "ffn": 128},
}
ANLI_EVAL_FILES = tuple(f"R{r}/{s}.jsonl" for r in (1, 2, 3) for s in ("dev", "test"))
TARGETS = (("1-1", "smart", 0.70), ("2-2", "smart", 0.90))
PROVIDER_SHARE_TARGET = 0.03  # a provider's own work, as a share of a 1-1 step


@dataclass(frozen=True)
class Method:
    label: str  # as printed: "1-1" or "1-1:two_pass"
    provider: str
    fuse: bool


@dataclass
class Timing:
    steps: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    perturb: list[float] = field(default_factory=list)
    forwards: int = 0
    backwards: int = 0
    peak_mb: float | None = None


def parse_methods(values: list[str]) -> list[Method]:
    from noise_training.registry import get_spec

    methods = []
    for value in values:
        name, _, variant = value.partition(":")
        if variant not in ("", TWO_PASS):
            raise UserError(f"--methods {value}: expected NAME or NAME:{TWO_PASS}")
        try:
            get_spec(name)
        except UserError as exc:  # say which flag, keep the registry's list of choices
            raise UserError(f"--methods {value}: {str(exc).split(': ', 1)[-1]}") from None
        methods.append(Method(label=value, provider=name, fuse=variant != TWO_PASS))
    return methods


def default_anli_dir() -> Path:
    """$ANLI_DIR, else data/anli_v1.0, else the shared copy beside the checkout."""
    for candidate in (os.environ.get("ANLI_DIR"), "data/anli_v1.0", REPO_ROOT.parent / "shared/data/anli_v1.0"):
        if candidate and (Path(candidate) / "R1" / "dev.jsonl").is_file():
            return Path(candidate)
    return Path(os.environ.get("ANLI_DIR") or "data/anli_v1.0")


# ----------------------------------------------------------------------------- model and data


def load_model(*, model_name: str, random_init: str | None, tokenizer_name: str | None, task):
    """(MultiTaskModel, tokenizer, description) for a named/packaged model or a random-init size."""
    from transformers import AutoModel, AutoTokenizer, BertConfig, RobertaConfig

    from mt_dnn.model import MultiTaskModel, build_model
    from mt_dnn.packaged_model import resolve_model_name

    if random_init is None:
        path = resolve_model_name(model_name)
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_name or path)
        return build_model(model_name=path, tasks={task.name: task}, tokenizer=tokenizer), tokenizer, model_name
    size = RANDOM_INIT_SIZES[random_init]
    # The BERT uncased vocabulary (the packaged MiniLM's): BERT-base's own, and for the
    # RoBERTa-sized encoder a stand-in for its 50k BPE vocabulary (only the embedding table's
    # row count differs; the step cost is in the layers).
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_name or resolve_model_name("packaged-minilm"))
    common = dict(vocab_size=len(tokenizer), hidden_size=size["hidden"], num_hidden_layers=size["layers"],
                  num_attention_heads=size["heads"], intermediate_size=size["ffn"],
                  pad_token_id=tokenizer.pad_token_id)
    if size["arch"] == "roberta":
        config = RobertaConfig(max_position_embeddings=514, type_vocab_size=1, **common)
    else:
        config = BertConfig(max_position_embeddings=512, type_vocab_size=2, **common)
    torch.manual_seed(0)
    encoder = AutoModel.from_config(config)
    description = (f"random-init {random_init} ({size['arch']}, {size['layers']} layers, hidden {size['hidden']}, "
                   f"vocab {len(tokenizer)})")
    return MultiTaskModel(encoder=encoder, tasks={task.name: task}), tokenizer, description


def anli_examples(*, tokenizer, task, data_dir: Path, max_seq_len: int, cache_dir: Path):
    """All ANLI dev and test pairs (R1-R3), tokenised (and cached), as one table."""
    from mt_dnn.batching import concat_splits
    from mt_dnn.features import load_tokenized_split

    splits = [
        load_tokenized_split(path=data_dir / name, task=task, split=name.replace("/", "_").removesuffix(".jsonl"),
                             tokenizer=tokenizer, max_seq_len=max_seq_len, cache_dir=cache_dir / "tokens")
        for name in ANLI_EVAL_FILES
    ]
    return concat_splits(splits, task=task.name)


def anli_batches(*, data, batch_size: int, count: int, seed: int, pad_token_id: int) -> list[dict]:
    """``count`` random batches of real pairs, padded to their longest pair (as training does)."""
    from mt_dnn.batching import collate

    rng = np.random.default_rng(seed)
    if len(data) < batch_size:
        raise UserError(f"--batch_size {batch_size}: only {len(data)} ANLI pairs available")
    return [collate(data, rng.choice(len(data), size=batch_size, replace=False), pad_token_id=pad_token_id)
            for _ in range(count)]


def synthetic_batches(*, tokenizer, batch_size: int, count: int, seed: int, max_seq_len: int) -> list[dict]:
    """Random whole-word ids with ANLI-like lengths (dev: median 90, 99th percentile 133), for machines without ANLI."""
    rng = np.random.default_rng(seed)
    vocab = tokenizer.get_vocab()
    special = set(tokenizer.all_special_ids)
    words = np.array(sorted(i for t, i in vocab.items() if t.isalpha() and t.isascii() and i not in special))
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    pad_id = tokenizer.pad_token_id
    batches = []
    for _ in range(count):
        lengths = np.clip(rng.normal(92, 20, size=batch_size).round().astype(int), 24, max_seq_len)
        width = int(lengths.max())
        input_ids = np.full((batch_size, width), pad_id, dtype=np.int64)
        token_type_ids = np.zeros((batch_size, width), dtype=np.int64)
        attention_mask = np.zeros((batch_size, width), dtype=np.int64)
        for row, length in enumerate(lengths):
            body = rng.choice(words, size=length - 3)
            split = int(length * 0.7)
            ids = [cls_id, *body[: split - 2], sep_id, *body[split - 2 :], sep_id]
            input_ids[row, :length] = ids
            token_type_ids[row, split:length] = 1
            attention_mask[row, :length] = 1
        batches.append({"input_ids": torch.from_numpy(input_ids), "token_type_ids": torch.from_numpy(token_type_ids),
                        "attention_mask": torch.from_numpy(attention_mask),
                        "labels": torch.from_numpy(rng.integers(0, 3, size=batch_size))})
    return batches


# ----------------------------------------------------------------------------- timing


class TimedProvider:
    """Forwards to a provider and records how long each ``perturb`` call takes."""

    def __init__(self, provider, *, device: torch.device) -> None:
        self.provider = provider
        self.device = device
        self.needs_saliency = getattr(provider, "needs_saliency", False)
        self.depends_on_step1 = getattr(provider, "depends_on_step1", True)
        self.last = 0.0

    def perturb(self, ctx):
        _sync(self.device)
        started = time.perf_counter()
        result = self.provider.perturb(ctx)
        _sync(self.device)
        self.last += time.perf_counter() - started
        return result


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _PeakMemory:
    """Peak memory of one step: CUDA's allocator statistics, or on Linux the process's peak RSS.

    On the CPU, glibc keeps freed memory for reuse, which would hide a step's allocations;
    a fixed mmap threshold makes every large tensor its own mapping (returned on free) and
    ``malloc_trim`` releases what earlier steps left, so the peak RSS above the RSS at the
    start of the step is the step's own peak. It slows allocation, so only the memory round
    uses it.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.libc = None
        if device.type == "cpu" and Path("/proc/self/clear_refs").exists():
            try:
                self.libc = ctypes.CDLL("libc.so.6")
                self.libc.mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD = 64 KiB, no dynamic raise
            except OSError:
                self.libc = None

    @staticmethod
    def _status_mb(name: str) -> float:
        text = Path("/proc/self/status").read_text()
        return int(re.search(rf"{name}:\s+(\d+) kB", text).group(1)) / 1024

    @contextlib.contextmanager
    def measure(self, record: Timing):
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            base = torch.cuda.memory_allocated(self.device)
            yield
            torch.cuda.synchronize(self.device)
            record.peak_mb = (torch.cuda.max_memory_allocated(self.device) - base) / 2**20
        elif self.libc is not None:
            self.libc.malloc_trim(0)
            Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM)
            base = self._status_mb("VmRSS")
            yield
            record.peak_mb = self._status_mb("VmHWM") - base
        else:
            yield


def run_step(*, method: Method, provider, model, step_model, optimizer, batch, task, special_ids, autocast,
             scaler, device) -> tuple[float, float, object]:
    """One training step (forward passes, provider, backward, AdamW update): wall and CPU seconds, outcome."""
    from mt_dnn.training_step import run_training_step

    _sync(device)
    started, cpu_started = time.perf_counter(), time.process_time()
    outcome = run_training_step(
        model=step_model, forward_model=model, provider=provider, batch=batch, task=task,
        adv_alpha=provider.provider.options.get("adv_alpha", 0.0), special_ids=special_ids,
        normaliser=float(batch["labels"].shape[0]), autocast=autocast,
        backward=(lambda loss: scaler.scale(loss).backward()) if scaler is not None else None,
        fuse_passes=method.fuse,
    )
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    _sync(device)
    return time.perf_counter() - started, time.process_time() - cpu_started, outcome


def overhead_outside_encoder(*, providers: dict, batch, model, special_ids, device, repeats: int = 20) -> dict:
    """Median seconds of the per-step bookkeeping around the encoder: mask, provider, stats."""
    from noise_training.base import StepContext, perturbable_token_mask, perturbation_stat_sums

    figures = {}
    with torch.no_grad():
        tok_emb = model.token_embeddings(batch["input_ids"])
    for label, timed in providers.items():
        if timed.depends_on_step1:
            continue  # its perturb needs step 1 (SMART: passes; 2-2/2-3: saliency)
        times = {"mask": [], "perturb": [], "stats": []}
        for attempt in range(repeats + 3):  # the first 3 warm caches and allocator, and are dropped
            _sync(device)
            t0 = time.perf_counter()
            mask = perturbable_token_mask(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                          special_ids=special_ids)
            _sync(device)
            t1 = time.perf_counter()
            ctx = StepContext(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                              token_type_ids=batch.get("token_type_ids"), token_embeddings=tok_emb, logits=None,
                              perturbable_mask=mask, forward=None, adv_loss=None)
            perturbation = timed.provider.perturb(ctx)
            _sync(device)
            t2 = time.perf_counter()
            perturbation_stat_sums(perturbation=perturbation, token_embeddings=tok_emb, perturbable_mask=mask)
            _sync(device)
            t3 = time.perf_counter()
            if attempt >= 3:
                times["mask"].append(t1 - t0)
                times["perturb"].append(t2 - t1)
                times["stats"].append(t3 - t2)
        figures[label] = {key: statistics.median(values) for key, values in times.items()}
    return figures


# ----------------------------------------------------------------------------- the benchmark


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
    parser.add_argument("--data", choices=("anli", "synthetic"), default="anli",
                        help="anli: random batches of the real ANLI dev/test pairs; synthetic: random words, ANLI-like lengths")
    parser.add_argument("--data_dir", type=Path, default=None, help="ANLI v1.0 folder (default $ANLI_DIR or data/anli_v1.0)")
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
    from mt_dnn.precision import autocast_factory, enable_fast_matmul, grad_scaler
    from mt_dnn.run_setup import default_cache_dir
    from mt_dnn.task_def import load_task_defs
    from noise_training.registry import build_provider, resolve_options

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {args.device}: no CUDA device is available")
    enable_fast_matmul(device)
    cache_dir = args.cache_dir or default_cache_dir()
    methods = parse_methods(args.methods)
    task = load_task_defs(paths=[REPO_ROOT / "task_defs" / "anli.yml"])["anli"]

    model, tokenizer, description = load_model(model_name=args.model, random_init=args.random_init,
                                               tokenizer_name=args.tokenizer, task=task)
    model.to(device).train()  # dropout on, as in training
    rounds = args.warmup + args.repeats
    if args.data == "anli":
        data_dir = args.data_dir or default_anli_dir()
        if not (data_dir / "R1" / "dev.jsonl").is_file():
            raise UserError(f"--data_dir {data_dir}: no R1/dev.jsonl (set $ANLI_DIR or pass --data synthetic)")
        data = anli_examples(tokenizer=tokenizer, task=task, data_dir=data_dir, max_seq_len=args.max_seq_len,
                             cache_dir=cache_dir)
        batches = anli_batches(data=data, batch_size=args.batch_size, count=rounds, seed=args.seed,
                               pad_token_id=tokenizer.pad_token_id)
        data_text = f"real ANLI dev+test pairs from {data_dir}"
    else:
        batches = synthetic_batches(tokenizer=tokenizer, batch_size=args.batch_size, count=rounds, seed=args.seed,
                                    max_seq_len=args.max_seq_len)
        data_text = "synthetic batches (random words, ANLI-like lengths)"
    batches = [{k: v.to(device) for k, v in b.items()} for b in batches]
    special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)), device=device)

    providers, skipped = {}, {}
    for method in methods:
        spec, options = resolve_options(name=method.provider, given={})
        try:
            provider = build_provider(name=spec.name, options=options, model=model, tokenizer=tokenizer,
                                      cache_dir=cache_dir)
        except UserError as exc:  # e.g. no WordNet on this machine: time the others
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
        tracker = _PeakMemory(device)
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
        "warmup": args.warmup, "repeats": args.repeats, "load_average": [load_before[0], load_after[0]],
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
    header = (f"{'method':<14}{'median s':>9}{'min s':>8}{'cpu s':>8}{'/none':>7}{'/smart':>8}{'ex/s':>8}"
              f"{'F+B':>6}{'perturb ms':>11}{'% step':>7}{'peak MB':>9}")
    lines += ["", header, "-" * len(header)]
    for label, m in methods.items():
        med = m["median_s"]
        rel_none = f"{med / none:.2f}" if none else "-"
        rel_smart = f"{med / smart:.2f}" if smart else "-"
        peak = f"{m['peak_mb']:.0f}" if m["peak_mb"] is not None else "n/a"
        share = 100 * m["perturb_median_s"] / med
        lines.append(f"{label:<14}{med:>9.3f}{m['min_s']:>8.3f}{m['cpu_median_s']:>8.2f}{rel_none:>7}{rel_smart:>8}"
                     f"{result['batch_size'] / med:>8.1f}{m['forwards']:>3}+{m['backwards']:<2}"
                     f"{1000 * m['perturb_median_s']:>11.1f}{share:>7.1f}{peak:>9}")
    lines.append("perturb ms: time inside provider.perturb (table look-ups, sampling, selection); for smart it "
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
    load = result["load_average"]
    if result["device"] == "cpu" and max(load) > result["cpu_count"]:
        lines.append(f"WARNING: load average {load[0]:.1f} -> {load[1]:.1f} on {result['cpu_count']} cores: "
                     "other processes competed for the CPU; medians are inflated (min s is the cleaner figure)")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        result = run_benchmark(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(render(result))
    if args.json is not None:
        from mt_dnn.run_files import atomic_write_json

        atomic_write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
