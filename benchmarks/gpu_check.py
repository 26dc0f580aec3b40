"""The step-cost benchmark on a GPU at the paper's model sizes, in one short run.

Ready for whenever a GPU is at hand: random-init encoders the size of BERT-base (batch 32)
and RoBERTa-large (batch 16), so nothing is downloaded, bf16 autocast and TF32 matmuls,
every method of ``bench_step_cost`` (including ``1-1:two_pass``, to see what fusing steps
1 and 2 saves on a GPU). Prints, per model, each method's step time relative to ``none``
and ``smart``, examples per second and the peak memory of a step (CUDA allocator).

Needs the packaged MiniLM's tokenizer (its BERT uncased vocabulary, also BERT-base's);
uses the real ANLI dev/test pairs when $ANLI_DIR (or data/anli_v1.0) holds them, otherwise
random words with ANLI-like lengths. A method whose resources are missing on the machine
(WordNet for ``wordnet_0.5``) is reported as skipped, the others still run.

    python -m benchmarks.gpu_check                      # or: bash benchmarks/gpu_check.sh
    python -m benchmarks.gpu_check --smoke              # the same code path on the CPU, tiny, seconds
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_step_cost import default_anli_dir, parse_args as step_args, render, run_benchmark
from mt_dnn.errors import UserError
from noise_training.errors import ProviderError

# (random-init size, batch size): the paper's two models at the batch sizes that fit them.
RUNS = (("bert-base", 32), ("roberta-large", 16))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--amp", choices=("none", "bf16", "fp16"), default="bf16")
    parser.add_argument("--compile", action="store_true", help="also torch.compile the model")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="tiny encoder on the CPU: checks this script, no GPU")
    parser.add_argument("--json_dir", type=Path, default=None, help="write each run's figures as JSON here")
    args = parser.parse_args(argv)

    runs = (("tiny", 8),) if args.smoke else RUNS
    device = "cpu" if args.smoke else args.device
    data = "anli" if (default_anli_dir() / "R1" / "dev.jsonl").is_file() else "synthetic"
    started = time.perf_counter()
    for size, batch_size in runs:
        flags = ["--random_init", size, "--batch_size", str(batch_size), "--device", device, "--amp", args.amp,
                 "--data", data, "--warmup", str(0 if args.smoke else args.warmup),
                 "--repeats", str(1 if args.smoke else args.repeats)]
        if args.compile:
            flags.append("--compile")
        try:
            result = run_benchmark(step_args(flags))
        except (UserError, ProviderError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(render(result))
        print()
        if args.json_dir is not None:
            from mt_dnn.run_files import atomic_write_json

            atomic_write_json(args.json_dir / f"step_cost_{size}.json", result)
    print(f"gpu_check finished in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
