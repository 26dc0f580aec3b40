"""The step benchmarks' command-line ending: run, print, write the JSON, and say when the figures are suspect.

Shared by bench_step_cost, bench_vs_tools and bench_data, so that each turns a bad input into one
``error:`` line and exit 2, writes its figures atomically (where it has ``--json``), and warns in
the same words when other processes loaded the CPU while it measured.
"""

from __future__ import annotations

import sys

from mt_dnn.errors import UserError
from noise_training.errors import ProviderError


def load_warning(result: dict, *, consequence: str) -> list[str]:
    """One WARNING line when the 1-minute load average, before or after, exceeded the CPU count."""
    load = result["load_average"]
    if result["device"] != "cpu" or max(load) <= result["cpu_count"]:
        return []
    return [f"WARNING: load average {load[0]:.1f} -> {load[1]:.1f} on {result['cpu_count']} cores: other "
            f"processes competed for the CPU; {consequence}"]


def run_and_report(*, argv, parse_args, run_benchmark, render) -> int:
    """Parse ``argv``, run, print the rendering, write ``--json`` if the benchmark has it and it is given;
    a bad input exits 2."""
    from mt_dnn.run_files import atomic_write_json

    args = parse_args(argv)
    try:
        result = run_benchmark(args)
    except (UserError, ProviderError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(render(result))
    if getattr(args, "json", None) is not None:
        atomic_write_json(args.json, result)
    return 0
