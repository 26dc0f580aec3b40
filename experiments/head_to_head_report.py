"""The head-to-head's report phase: the table of every method against fine-tuning and both SMARTs.

Reads each run of the grid (its test accuracy, seconds per update, passes, what the
perturbation did) and its robust_eval.json, and writes RUNS/tables/head_to_head.md (with a CSV
beside it) and, through experiments.head_to_head_plot, RUNS/plots/head_to_head.png. Seeds are
paired: a difference between two methods is the mean over the seeds both have of the
per-seed difference, tested with a paired t-test (experiments.seed_statistics).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from experiments.grid_types import Cell, GridSettings
from experiments.head_to_head_robust import entry_name, read_robust, substitutions
from experiments.seed_statistics import compare_seeds
from experiments.table_csv import write_text_atomic

REFERENCES = ("none", "smart_mtdnn", "smart")
LABELS = {"none": "fine-tuning", "smart_mtdnn": "+SMART (MT-DNN's code, the paper's)",
          "smart": "+SMART (corrected)"}


@dataclass
class MethodRuns:
    """Per-seed figures of one method."""

    clean: dict[int, float] = field(default_factory=dict)
    robust: dict[str, dict[int, float]] = field(default_factory=dict)
    seconds_per_update: dict[int, float] = field(default_factory=dict)
    passes: tuple[float, float] | None = None
    perturbation: dict[str, list[float]] = field(default_factory=dict)


def _records(path: Path) -> list[dict]:
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut by a crash ends what can be trusted
    return records


def load_method_runs(*, cells: list[Cell], settings: GridSettings, chosen) -> dict[str, MethodRuns]:
    methods: dict[str, MethodRuns] = {}
    for cell in cells:
        run_dir = cell.run_dir(settings.runs_dir)
        try:
            summary = json.loads((run_dir / "run_summary.json").read_text(encoding="utf-8"))
            records = _records(run_dir / "metrics.jsonl")
        except (OSError, ValueError):
            continue
        if not summary.get("finished"):
            continue
        evals = [r for r in records if r.get("kind") == "eval" and r.get("split") == "test"]
        epochs = [r for r in records if r.get("kind") == "train_epoch"]
        if not evals or not epochs:
            continue
        runs = methods.setdefault(cell.method.folder, MethodRuns())
        runs.clean[cell.seed] = 100 * evals[-1]["accuracy"]
        runs.seconds_per_update[cell.seed] = summary["seconds_per_update"]
        runs.passes = (summary["forward_passes_per_update"], summary["backward_passes_per_update"])
        for name, value in (epochs[-1].get("perturbation") or {}).items():
            if isinstance(value, (int, float)) and name != "skipped_steps":
                runs.perturbation.setdefault(name, []).append(value)
        robust = read_robust(run_dir)
        for kind, rate in substitutions(chosen):
            entry = robust.get(entry_name(kind, rate, chosen.substitution_seed, chosen.max_eval_examples))
            if entry:
                runs.robust.setdefault(kind, {})[cell.seed] = 100 * entry["accuracy"]
    return methods


def _mean_sd(values: dict[int, float]) -> str:
    if not values:
        return "—"
    items = list(values.values())
    spread = f" ± {statistics.stdev(items):.2f}" if len(items) > 1 else ""
    return f"{statistics.mean(items):.2f}{spread}"


def _ratio(runs: MethodRuns, reference: MethodRuns | None) -> str:
    if reference is None or not reference.seconds_per_update or not runs.seconds_per_update:
        return "—"
    return f"{statistics.median(runs.seconds_per_update.values()) / statistics.median(reference.seconds_per_update.values()):.2f}"


def _difference(runs: MethodRuns, reference: MethodRuns | None) -> str:
    if reference is None:
        return "—"
    common = sorted(set(runs.clean) & set(reference.clean))
    if not common:
        return "—"
    diff = statistics.mean(runs.clean[s] - reference.clean[s] for s in common)
    _, p_value, _ = compare_seeds(values=runs.clean, reference=reference.clean)
    if p_value is None:
        return f"{diff:+.2f} (p n/a)"
    return f"{diff:+.2f} (p={p_value:.3f}{', *' if p_value < 0.05 else ''})"


def render(*, methods: dict[str, MethodRuns], chosen, protocol: str, majority: float | None) -> str:
    order = [name for name in methods]
    lines = [f"> {protocol}.", "",
             f"Packaged MiniLM (all-MiniLM-L6-v2), {chosen.max_train_examples} training pairs, {chosen.epochs} epoch, "
             f"batch {chosen.batch_size}, lr {chosen.learning_rate:g}, {chosen.max_eval_examples} test pairs; "
             "accuracy % as mean ± sample sd over seeds.", "",
             "## Accuracy", "",
             "| method | seeds | test accuracy | WordNet-substituted | drop | neighbour-substituted (15%) | drop |",
             "|---|---|---|---|---|---|---|"]
    for name in order:
        runs = methods[name]
        cells = [LABELS.get(name, name), str(len(runs.clean)), _mean_sd(runs.clean)]
        for kind in ("wordnet", "neighbour"):
            robust = runs.robust.get(kind, {})
            common = sorted(set(robust) & set(runs.clean))
            drop = statistics.mean(runs.clean[s] - robust[s] for s in common) if common else None
            cells += [_mean_sd(robust), "—" if drop is None else f"{drop:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    chance = "Chance: 33.3%" + (f"; majority class of these test pairs: {majority:.1f}%." if majority else ".")
    lines += ["", chance, "", "## Paired differences in test accuracy (percentage points)", "",
              "Mean over common seeds of (method − reference); paired t-test over the seeds; * = p < 0.05.", "",
              "| method | vs fine-tuning | vs +SMART (MT-DNN's) | vs +SMART (corrected) |", "|---|---|---|---|"]
    for name in order:
        lines.append("| " + " | ".join([LABELS.get(name, name)] + [
            "—" if ref == name else _difference(methods[name], methods.get(ref)) for ref in REFERENCES]) + " |")
    lines += ["", "## Cost and perturbation size", "",
              "Seconds per update: median over seeds, from the grid's own runs on a machine other work was also "
              "using (inflated and noisy; see the interleaved benchmark below for the clean ratios).", "",
              "| method | fwd+bwd per update | s/update | ÷ fine-tuning | ÷ SMART (MT-DNN's) | ÷ SMART (corrected) "
              "| tokens changed % | noise ‖δ‖/‖E‖ % | MT-DNN-logged size % |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name in order:
        runs = methods[name]
        passes = f"{runs.passes[0]:g}+{runs.passes[1]:g}" if runs.passes else "—"
        seconds = f"{statistics.median(runs.seconds_per_update.values()):.3f}" if runs.seconds_per_update else "—"
        shares = [f"{100 * statistics.mean(runs.perturbation[key]):.3g}" if runs.perturbation.get(key) else "—"
                  for key in ("changed_share", "noise_share", "mtdnn_logged_share")]
        lines.append("| " + " | ".join([LABELS.get(name, name), passes, seconds]
                                       + [_ratio(runs, methods.get(ref)) for ref in REFERENCES] + shares) + " |")
    return "\n".join(lines) + "\n"


def render_csv(*, methods: dict[str, MethodRuns]) -> str:
    rows = ["method,seed,test_accuracy,wordnet_accuracy,neighbour_accuracy,seconds_per_update"]
    for name, runs in methods.items():
        for seed in sorted(runs.clean):
            robust = [runs.robust.get(kind, {}).get(seed) for kind in ("wordnet", "neighbour")]
            rows.append(",".join([name, str(seed), f"{runs.clean[seed]:.2f}"]
                                 + ["" if v is None else f"{v:.2f}" for v in robust]
                                 + [f"{runs.seconds_per_update[seed]:.4f}"]))
    return "\n".join(rows) + "\n"


def majority_share(*, settings: GridSettings, chosen) -> float | None:
    path = Path(settings.data_dir) / "snli_test.jsonl"
    try:
        labels = [json.loads(line)["gold_label"] for line in path.read_text(encoding="utf-8").splitlines()[
            :chosen.max_eval_examples]]
    except (OSError, ValueError, KeyError):
        return None
    return 100 * max(labels.count(label) for label in set(labels)) / len(labels) if labels else None


def provenance(*, argv: list[str] | None, runs_dir: Path) -> str:
    """Where a results document came from: the command, the date, the machine, the code's commit."""
    import datetime
    import os
    import platform
    import shlex
    import subprocess
    import sys

    def commit(folder: Path) -> str:
        try:
            return subprocess.run(["git", "-C", str(folder), "rev-parse", "--short", "HEAD"], capture_output=True,
                                  text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "unknown"

    here = Path(__file__).resolve().parents[1]
    command = shlex.join(["python", "-m", "experiments.head_to_head", *(sys.argv[1:] if argv is None else argv)])
    return "\n".join([
        f"- command: `{command}`",
        f"- date: {datetime.date.today().isoformat()}",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPU cores ({platform.processor() or 'cpu'}), "
        f"Python {platform.python_version()}, no GPU",
        f"- report written by commit {commit(here)}; runs in {runs_dir} (their commands: each run's "
        "grid_commands.jsonl)",
    ]) + "\n\n"


def report_phase(*, cells: list[Cell], settings: GridSettings, chosen, protocol: str,
                 results_doc: str | None = None, argv: list[str] | None = None) -> int:
    from experiments.head_to_head_plot import plot_head_to_head

    methods = load_method_runs(cells=cells, settings=settings, chosen=chosen)
    if not methods:
        print("report: no finished runs yet")
        return 1
    majority = majority_share(settings=settings, chosen=chosen)
    text = render(methods=methods, chosen=chosen, protocol=protocol, majority=majority)
    runs_dir = Path(settings.runs_dir)
    write_text_atomic(runs_dir / "tables" / "head_to_head.md", "# Head-to-head on SNLI (CPU scale)\n\n" + text)
    write_text_atomic(runs_dir / "tables" / "head_to_head.csv", render_csv(methods=methods))
    plot_head_to_head(methods=methods, labels=LABELS, majority=majority, out=runs_dir / "plots" / "head_to_head.png")
    if results_doc:
        doc = Path(results_doc)
        write_text_atomic(doc, "# Head-to-head on SNLI (CPU scale)\n\n" + provenance(argv=argv, runs_dir=runs_dir) + text)
        plot_head_to_head(methods=methods, labels=LABELS, majority=majority, out=doc.with_suffix(".png"))
    print(text)
    print(f"wrote {runs_dir / 'tables' / 'head_to_head.md'}, head_to_head.csv and {runs_dir / 'plots' / 'head_to_head.png'}")
    return 0
