"""The head-to-head's robust phase: every finished run scored on substituted test pairs.

For each run and each substitution (WordNet synonyms of every word that has one; the nearest
vocabulary neighbour of 15% of the tokens), ``predict.py``'s own code scores the run's final
weights on the same test pairs the run was evaluated on, with the same substitutes for every
method (mt_dnn.substitution), and the result is added to RUN/robust_eval.json. A run whose
file already holds that substitution is skipped, so the phase resumes, and it may run while
the grid is still training (unfinished runs are left for the next pass).
"""

from __future__ import annotations

import json
from pathlib import Path

from experiments.grid_types import Cell, GridSettings
from noise_training.atomic_files import atomic_write_bytes

ROBUST_FILE = "robust_eval.json"


def substitutions(chosen) -> list[tuple[str, float]]:
    return [("wordnet", 1.0), ("neighbour", chosen.substitution_rate)]


def entry_name(kind: str, rate: float, seed: int, examples: int) -> str:
    return f"{kind}@rate={rate:g},seed={seed},examples={examples}"


def read_robust(run_dir: Path) -> dict:
    path = run_dir / ROBUST_FILE
    if not path.exists():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}  # written atomically, so only a foreign file is unreadable: recompute
    return value if isinstance(value, dict) else {}


def _is_finished(run_dir: Path) -> bool:
    try:
        return bool(json.loads((run_dir / "run_summary.json").read_text(encoding="utf-8")).get("finished"))
    except (OSError, ValueError):
        return False


def score(*, run_dir: Path, kind: str, rate: float, seed: int, examples: int) -> dict:
    """predict.py on the run's test split with the substitution; its summary (accuracy, what changed)."""
    from mt_dnn.cli_predict import build_parser, predict

    # through predict.py's own parser, so that every option it has gets its default
    args = build_parser().parse_args([
        "--run_dir", str(run_dir), "--checkpoint", "latest", "--split", "test",
        "--output", str(run_dir / "predictions" / f"robust_{kind}.jsonl"), "--batch_size", "64", "--device", "cpu",
        "--max_examples", str(examples), "--substitute", kind, "--substitution_rate", str(rate),
        "--substitution_seed", str(seed)])
    return predict(args)


def robust_phase(*, cells: list[Cell], settings: GridSettings, chosen) -> int:
    done = pending = 0
    for cell in cells:
        run_dir = cell.run_dir(settings.runs_dir)
        if not _is_finished(run_dir):
            pending += 1
            continue
        results = read_robust(run_dir)
        for kind, rate in substitutions(chosen):
            name = entry_name(kind, rate, chosen.substitution_seed, chosen.max_eval_examples)
            if name in results:
                continue
            summary = score(run_dir=run_dir, kind=kind, rate=rate, seed=chosen.substitution_seed,
                            examples=chosen.max_eval_examples)
            results[name] = {"accuracy": summary["accuracy"], "examples": summary["examples"],
                             "substitution": summary["substitution"]}
            atomic_write_bytes(run_dir / ROBUST_FILE, (json.dumps(results, indent=1, sort_keys=True) + "\n").encode())
            print(f"robust: {cell.label()} {kind}: accuracy {summary['accuracy']:.4f}")
            done += 1
    print(f"robust: {done} evaluations done now; {pending} runs not finished yet")
    return 0
