"""Timing one training step of a method: the step itself, the provider's share, the peak memory.

One job of benchmarks.bench_step_cost: a :class:`Method` (a provider, fused or two-pass),
:func:`run_step` (forwards, provider, backward, AdamW update, as training does), a provider
wrapper that times ``perturb``, a peak-memory probe, and the bookkeeping outside the encoder.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mt_dnn.errors import UserError
from noise_training.errors import ProviderError

TWO_PASS = "two_pass"


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
        except ProviderError as exc:  # say which flag, keep the registry's list of choices
            raise UserError(f"--methods {value}: {str(exc).split(': ', 1)[-1]}") from None
        methods.append(Method(label=value, provider=name, fuse=variant != TWO_PASS))
    return methods


class TimedProvider:
    """Forwards to a provider and records how long each ``perturb`` call takes."""

    def __init__(self, provider, *, device: torch.device) -> None:
        self.provider = provider
        self.device = device
        self.needs_saliency = getattr(provider, "needs_saliency", False)
        self.depends_on_step1 = getattr(provider, "depends_on_step1", True)
        self.perturbs_step1_input = getattr(provider, "perturbs_step1_input", False)
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


class PeakMemory:
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
