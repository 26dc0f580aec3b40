"""The pilot that sizes the GLUE grid: measured seed spread and cost, then the narrowest interval in budget.

Guessing the grid's size would either waste the CPU budget or leave every verdict inconclusive.
On one task (default RTE) the pilot trains ``none`` and ``1-1`` at two training lengths with
paired seeds and measures, at each length, the seed sd of ``none``, the sd of the paired
difference (1-1 - none) -- what sets the width of every interval in the plan -- and the seconds
per update and per scored example. With those it prices the whole grid (every task and method of
the GLUE suite, SNLI's missing runs included) at each measured length for 2, 3, ... seeds, and
recommends the length and seed count whose 95% interval on a paired difference,
t(0.975, n-1) x sd_diff / sqrt(n), is narrowest within the budget (default 8 hours of this
machine). Only measured lengths are candidates: the sd is not extrapolated.

Cost model (stated in the output): seconds per update of a (task, method) = the pilot's ``none``
at that length x the task's mean tokenised length / the pilot task's x the method's cost ratio
(1-1 measured here; the others from an interleaved step-cost benchmark JSON, default
docs/results/step_cost_snli_cpu.json; a method in neither is priced as the dearest known); plus
scoring (dev, AdvGLUE, SNLI's substitutions) at the measured seconds per example and the measured
per-run start-up. Written to RUNS/pilot/pilot.json and pilot.md.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import replace
from pathlib import Path

from scipy import stats

from experiments.equivalence import paired
from experiments.table_csv import write_text_atomic

PILOT_METHODS = "none,1-1"
DEFAULT_STEP_COST = Path(__file__).resolve().parents[1] / "docs" / "results" / "step_cost_snli_cpu.json"
POOLED_TASKS = 6


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def run_measures(run_dir: Path) -> dict | None:
    """Seconds per update, per scored example and of start-up of one finished run."""
    try:
        summary = json.loads((run_dir / "run_summary.json").read_text(encoding="utf-8"))
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    except (OSError, ValueError):
        return None
    if not summary.get("finished"):
        return None
    evals = [r for r in records if r.get("kind") == "eval"]
    eval_seconds = sum(float(r.get("wall_time_s", 0.0)) for r in evals)
    eval_examples = sum(int(r.get("examples", 0)) for r in evals)
    train_seconds = float(summary.get("train_seconds") or 0.0)
    return {"seconds_per_update": summary.get("seconds_per_update"),
            "seconds_per_example": eval_seconds / eval_examples if eval_examples else None,
            "startup_s": max(0.0, float(summary.get("wall_time_s", 0.0)) - train_seconds - eval_seconds)}


def mean_token_length(*, task: str, data_dir: Path, tokenizer, examples: int, max_seq_len: int) -> float:
    """Mean tokenised length (pair, truncated) of the first ``examples`` training examples of a task."""
    from mt_dnn.data import read_examples
    from mt_dnn.task_def import load_task_defs

    from experiments.glue_tasks import GLUE_TASK_DEF
    from experiments.grid_types import REPO_ROOT

    if task == "snli":
        definition = load_task_defs(paths=[REPO_ROOT / "task_defs" / "snli.yml"])["snli"]
        path = Path(data_dir) / "snli_dev.jsonl"
    else:
        definition = load_task_defs(paths=[GLUE_TASK_DEF])[task]
        path = Path(data_dir) / definition.splits["train"].path
    rows = read_examples(path=path, task=definition)[:examples]
    lengths = []
    for row in rows:
        pair = (row.premise, row.hypothesis) if row.hypothesis else (row.premise,)
        lengths.append(len(tokenizer(*pair, truncation=True, max_length=max_seq_len)["input_ids"]))
    return statistics.mean(lengths) if lengths else 1.0


def method_ratios(*, methods: list[str], measured: dict[str, float], step_cost_json: Path | None) -> dict[str, tuple[float, str]]:
    """method -> (seconds per update / none's, where the ratio comes from)."""
    bench = {}
    if step_cost_json is not None and Path(step_cost_json).is_file():
        figures = json.loads(Path(step_cost_json).read_text(encoding="utf-8")).get("methods", {})
        if "none" in figures:
            bench = {m: float(v["median_s"]) / float(figures["none"]["median_s"]) for m, v in figures.items()}
    out = {}
    for method in methods:
        if method in measured:
            out[method] = (measured[method], "pilot")
        elif method in bench:
            out[method] = (bench[method], "benchmark")
    dearest = max([r for r, _ in out.values()] + list(bench.values()) + [1.0])
    for method in methods:
        out.setdefault(method, (dearest, "not measured: priced as the dearest known"))
    return out


def recommend(*, lengths: dict[int, dict], budget_s: float, max_seeds: int = 50) -> dict:
    """For each length: the most seeds the budget affords and the 95% half-width; the narrowest wins."""
    table = {}
    for length, measured in lengths.items():
        sd = measured["sd_difference"]
        seeds = 0
        for n in range(2, max_seeds + 1):
            if measured["cost_for_seeds"](n) <= budget_s:
                seeds = n
        half = (stats.t.ppf(0.975, seeds - 1) * sd / math.sqrt(seeds)) if seeds >= 2 and sd is not None else None
        table[length] = {"seeds": seeds, "half_width": half,
                         "cost_s": measured["cost_for_seeds"](seeds) if seeds else None}
    feasible = {k: v for k, v in table.items() if v["half_width"] is not None}
    best = min(feasible, key=lambda k: (feasible[k]["half_width"], -k)) if feasible else None
    return {"per_length": table, "best": best}


def pilot(*, task: str, lengths: tuple[int, ...], seeds: tuple[int, ...], chosen, glue_dir: Path, runs_dir: Path,
          grid_tasks: tuple[str, ...], grid_methods: list, snli_dir: Path | None, snli_runs: Path | None,
          budget_hours: float, step_cost_json: Path | None, echo: bool, train: bool = True,
          command_tail: str = "") -> int:
    from experiments.glue_report import load_results
    from experiments.glue_suite import glue_grid, prune_checkpoints, train_phase
    from experiments.glue_tasks import train_size
    from experiments.grid_types import parse_methods
    from mt_dnn.packaged_model import resolve_model_name
    from mt_dnn.run_setup import load_tokenizer

    pilot_methods = parse_methods(PILOT_METHODS)
    size = train_size(task=task, data_dir=glue_dir)
    grids = {length: glue_grid(task=task, runs_dir=Path(runs_dir) / f"updates{length}", glue_dir=glue_dir,
                               chosen=replace(chosen, updates=length, seeds=seeds), methods=pilot_methods,
                               train_size=size) for length in lengths}
    if train:
        for length, grid in grids.items():
            status = train_phase(grids=[grid], advglue_dir=None, results_runs=None, echo=echo)
            for cell in grid.cells:
                prune_checkpoints(run_dir=cell.run_dir(grid.settings.runs_dir))
            if status == 130:
                return 130
    tokenizer = load_tokenizer(resolve_model_name(chosen.model))
    sizes = {t: (train_size(task=t, data_dir=glue_dir) if t != "snli" else None) for t in grid_tasks}
    pilot_length = mean_token_length(task=task, data_dir=glue_dir, tokenizer=tokenizer,
                                     examples=max(grid.subset for grid in grids.values()), max_seq_len=chosen.max_seq_len)
    method_names = [m.folder for m in grid_methods]
    measured_lengths = {}
    for length, grid in grids.items():
        results = load_results(grids=[grid])
        none, other = results.cells.get((task, "none")), results.cells.get((task, "1-1"))
        if none is None or other is None or len(none.figure) < 2:
            print(f"pilot: length {length}: fewer than 2 finished seeds of none and 1-1; run the pilot again to finish")
            return 1
        difference = paired(values=other.figure, reference=none.figure)
        runs = [run_measures(cell.run_dir(grid.settings.runs_dir)) for cell in grid.cells]
        by_method = {m: [r for c, r in zip(grid.cells, runs) if r and c.method.folder == m] for m in ("none", "1-1")}
        spu_none = _median(r["seconds_per_update"] for r in by_method["none"])
        spu_other = _median(r["seconds_per_update"] for r in by_method["1-1"])
        per_example = _median(r["seconds_per_example"] for rs in by_method.values() for r in rs)
        startup = _median(r["startup_s"] for rs in by_method.values() for r in rs) or 0.0
        ratios = method_ratios(methods=method_names, measured={"none": 1.0, "1-1": spu_other / spu_none},
                               step_cost_json=step_cost_json)
        cost_per_seed, cost_lines = _seed_cost(length=length, chosen=chosen, grid_tasks=grid_tasks, sizes=sizes,
                                               method_names=method_names, ratios=ratios, spu_none=spu_none,
                                               per_example=per_example or 0.0, startup=startup,
                                               pilot_length=pilot_length, tokenizer=tokenizer, glue_dir=glue_dir,
                                               snli_dir=snli_dir)
        done_snli = _finished_snli(snli_runs=snli_runs, snli_dir=snli_dir, grid_methods=grid_methods, chosen=chosen,
                                   up_to=50) if "snli" in grid_tasks else set()

        def cost_for_seeds(n, _per_seed=cost_per_seed, _done=done_snli):
            total = 0.0
            for seed in range(1, n + 1):
                for (t, m), seconds in _per_seed.items():
                    if not (t == "snli" and (m, seed) in _done):
                        total += seconds
            return total

        measured_lengths[length] = {
            "sd_none": statistics.stdev(none.figure.values()), "sd_difference": difference.sd,
            "mean_difference": difference.mean, "seeds": difference.n, "seconds_per_update_none": spu_none,
            "seconds_per_update_1-1": spu_other, "seconds_per_example": per_example, "startup_s": startup,
            "cost_for_seeds": cost_for_seeds, "cost_lines": cost_lines, "ratios": ratios,
        }
    budget_s = budget_hours * 3600
    choice = recommend(lengths=measured_lengths, budget_s=budget_s)
    text = _render(task=task, measured=measured_lengths, choice=choice, budget_hours=budget_hours, chosen=chosen,
                   sizes=sizes, grid_tasks=grid_tasks, command_tail=command_tail)
    serialisable = {str(k): {key: value for key, value in v.items() if key != "cost_for_seeds"}
                    for k, v in measured_lengths.items()}
    write_text_atomic(Path(runs_dir) / "pilot.json", json.dumps(
        {"task": task, "budget_hours": budget_hours, "measured": serialisable,
         "recommendation": {str(k): v for k, v in choice["per_length"].items()}, "best": choice["best"]},
        indent=1, sort_keys=True, default=str) + "\n")
    write_text_atomic(Path(runs_dir) / "pilot.md", text)
    print(text)
    return 0 if choice["best"] is not None else 1


def _seed_cost(*, length, chosen, grid_tasks, sizes, method_names, ratios, spu_none, per_example, startup,
               pilot_length, tokenizer, glue_dir, snli_dir) -> tuple[dict, list[str]]:
    """(task, method) -> seconds for one seed of that cell at this length; and the lines saying how."""
    from experiments.advglue_eval import ADV_SETS
    from experiments.glue_tasks import schedule
    from experiments.head_to_head import HeadToHeadSettings

    snli = HeadToHeadSettings()
    adv_examples = {"rte": 81, "sst2": 148, "snli": 283}  # AdvGLUE's PROVENANCE.md
    dev_examples = {"rte": 277, "mrpc": 408, "cola": 1043, "stsb": 1500, "sst2": 872}
    costs, lines = {}, []
    for task in grid_tasks:
        if task == "snli":
            if snli_dir is None:
                continue
            updates, subset, epochs = -(-snli.max_train_examples // snli.batch_size), snli.max_train_examples, 1
            scored = snli.max_eval_examples * 3 + adv_examples["snli"]  # test, two substitutions, AdvGLUE
            token_length = mean_token_length(task="snli", data_dir=snli_dir, tokenizer=tokenizer, examples=subset,
                                             max_seq_len=snli.max_seq_len)
        else:
            plan = schedule(updates=length, batch_size=chosen.batch_size, train_size=sizes[task],
                            max_train_examples=chosen.max_train_examples)
            updates, subset, epochs = plan.updates, plan.max_train_examples, plan.epochs
            scored = dev_examples[task] * epochs + (adv_examples[task] if task in ADV_SETS else 0)
            token_length = mean_token_length(task=task, data_dir=glue_dir, tokenizer=tokenizer, examples=subset,
                                             max_seq_len=chosen.max_seq_len)
        scale = token_length / pilot_length
        for method in method_names:
            costs[(task, method)] = (updates * spu_none * scale * ratios[method][0] + scored * per_example * scale
                                     + startup)
        lines.append(f"{task}: {updates} updates ({epochs} epoch(s) over {subset} examples), mean length "
                     f"{token_length:.1f} tokens (x{scale:.2f} the pilot task's), {scored} examples scored; "
                     f"one seed of every method ~{sum(costs[(task, m)] for m in method_names) / 60:.1f} min")
    return costs, lines


def _finished_snli(*, snli_runs, snli_dir, grid_methods, chosen, up_to: int) -> set:
    """(method, seed) of SNLI runs already finished (not priced again)."""
    if snli_runs is None or snli_dir is None:
        return set()
    from experiments.glue_suite import snli_grid
    from experiments.grid_plan import is_finished
    from experiments.grid_types import GridError

    grid = snli_grid(runs_dir=snli_runs, snli_dir=snli_dir, seeds=tuple(range(1, up_to + 1)), methods=grid_methods,
                     model=chosen.model)
    done = set()
    for cell in grid.cells:
        try:
            if is_finished(run_dir=cell.run_dir(grid.settings.runs_dir)):
                done.add((cell.method.folder, cell.seed))
        except GridError:  # an unreadable summary is priced as a run still to do
            continue
    return done


def _render(*, task, measured, choice, budget_hours, chosen, sizes, grid_tasks, command_tail: str = "") -> str:
    from experiments.glue_tasks import schedule

    lines = [f"# GLUE head-to-head pilot ({task}, none and 1-1, paired seeds)", "",
             "| updates | seeds | sd of none | sd of 1-1 − none | mean 1-1 − none | s/update none | s/update 1-1 "
             f"| seeds the {budget_hours:g} h budget affords | 95% half-width per task | ≈ pooled over {POOLED_TASKS} tasks* "
             "| grid time h |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for length, m in measured.items():
        row = choice["per_length"][length]
        half = row["half_width"]
        lines.append(f"| {length} | {m['seeds']} | {m['sd_none']:.2f} | {m['sd_difference']:.2f} | "
                     f"{m['mean_difference']:+.2f} | {m['seconds_per_update_none']:.3f} | {m['seconds_per_update_1-1']:.3f} | "
                     f"{row['seeds']} | {'—' if half is None else f'{half:.2f}'} | "
                     f"{'—' if half is None else f'{half / math.sqrt(POOLED_TASKS):.2f}'} | "
                     f"{'—' if row['cost_s'] is None else format(row['cost_s'] / 3600, '.1f')} |")
    lines += ["", f"*if the six tasks' differences were independent with this sd (an assumption, not a measurement).", ""]
    for length, m in measured.items():
        lines += [f"Cost model at {length} updates (method ratios: "
                  + ", ".join(f"{k} {v[0]:.2f} ({v[1]})" for k, v in m["ratios"].items()) + "):", ""]
        lines += [f"- {line}" for line in m["cost_lines"]] + [""]
    best = choice["best"]
    if best is None:
        lines.append(f"No measured length affords 2 seeds within {budget_hours:g} h: raise --budget_hours or pilot "
                     "shorter lengths.")
        return "\n".join(lines) + "\n"
    seeds = choice["per_length"][best]["seeds"]
    plans = []
    for t in grid_tasks:
        if t != "snli":
            plan = schedule(updates=best, batch_size=chosen.batch_size, train_size=sizes[t],
                            max_train_examples=chosen.max_train_examples)
            plans.append(f"{t} {plan.epochs} epoch(s) x {plan.max_train_examples}")
    lines += [f"**Recommendation: {best} updates per run, {seeds} seeds** (narrowest 95% interval on a paired "
              f"difference within {budget_hours:g} h; subsets: {', '.join(plans)} examples). The grid:", "",
              f"    bash experiments/head_to_head.sh --suite glue --updates {best} --seeds 1-{seeds}{command_tail}", ""]
    return "\n".join(lines) + "\n"
