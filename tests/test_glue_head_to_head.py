"""The GLUE head-to-head (issue 23): the plan's statistics on synthetic run folders whose answer is
known, the AdvGLUE evaluation on the real file with labels mapped by name, the suite and the pilot
through the real entry point on a tiny preset, and the SNLI suite reproducing its committed table
from its committed run files without training."""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

import pytest
from scipy import stats

from conftest import REPO_ROOT

from experiments.equivalence import (
    BETTER, EQUIVALENT, INCONCLUSIVE, MARGIN, WORSE, PairedComparison, decide, holm, paired, pooled,
)

# ------------------------------------------------------------------ the statistics, by hand and by scipy


def test_holm_matches_a_hand_worked_family():
    # sorted 0.01, 0.03, 0.04: x3 = 0.03, x2 = 0.06, x1 = 0.04 -> monotone 0.06; None stays out of the family
    assert holm([0.01, 0.04, None, 0.03]) == pytest.approx([0.03, 0.06, None, 0.06])
    assert holm([0.5, 0.9]) == [1.0, 1.0]


def test_tost_and_difference_tests_agree_with_scipys_one_sample_tests():
    differences = (0.3, -0.2, 0.5, 0.1, -0.4)
    comparison = PairedComparison(seeds=(1, 2, 3, 4, 5), differences=differences)
    lower = stats.ttest_1samp([d + MARGIN for d in differences], 0.0, alternative="greater").pvalue
    upper = stats.ttest_1samp([d - MARGIN for d in differences], 0.0, alternative="less").pvalue
    assert comparison.p_tost() == pytest.approx(max(lower, upper))
    assert comparison.p_difference() == pytest.approx(stats.ttest_1samp(differences, 0.0).pvalue)
    low, high = comparison.interval(level=0.90)
    # TOST at 0.05 <=> the 90% interval inside the margin (the plan's two wordings of one rule)
    assert (comparison.p_tost() < 0.05) == (-MARGIN < low and high < MARGIN)


def test_pooled_is_the_per_seed_mean_over_tasks_on_common_seeds():
    a = paired(values={1: 3.0, 2: 5.0, 3: 1.0}, reference={1: 1.0, 2: 1.0, 3: 1.0})
    b = paired(values={1: 0.0, 2: 2.0}, reference={1: 1.0, 2: 1.0})
    both = pooled(per_task=[a, b])
    assert both.seeds == (1, 2) and both.differences == pytest.approx((0.5, 2.5))


# ------------------------------------------------------------------ synthetic run folders with a known answer

TASK_METRICS = {"rte": ("accuracy",), "mrpc": ("accuracy", "f1"), "cola": ("mcc", "accuracy"),
                "stsb": ("pearson", "spearman"), "sst2": ("accuracy",), "snli": ("accuracy",)}
SEEDS = (1, 2, 3, 4, 5)


def _write_run(folder: Path, *, task: str, method: str, seed: int, figure: float, seconds: float = 1.0,
               adv: dict | None = None) -> None:
    """A finished run whose final evaluation gives ``figure`` points (each of the task's figure metrics)."""
    folder.mkdir(parents=True, exist_ok=True)
    role = "test" if task == "snli" else "dev"
    metrics = {name: figure / 100 for name in TASK_METRICS[task]}
    (folder / "run_config.json").write_text(json.dumps({"perturbation": method, "perturbation_options": {},
                                                        "seed": seed, "model": "packaged-minilm"}))
    (folder / "run_summary.json").write_text(json.dumps({"finished": True, "seconds_per_update": seconds,
                                                         "train_seconds": 10.0, "wall_time_s": 12.0}))
    early = {"kind": "eval_pooled", "epoch": 1, "role": role, "task": task, "metrics": {k: 0.0 for k in metrics},
             "accuracy": 0.0}
    final = {"kind": "eval_pooled", "epoch": 2, "role": role, "task": task, "metrics": metrics,
             "accuracy": metrics.get("accuracy", 0.0)}
    (folder / "metrics.jsonl").write_text(json.dumps(early) + "\n" + json.dumps(final) + "\n")
    if adv:
        (folder / "advglue_eval.json").write_text(json.dumps({k: {"accuracy": v / 100} for k, v in adv.items()}))


def _grids(root: Path, methods: str, tasks=tuple(TASK_METRICS)):
    from experiments.glue_suite import TaskGrid
    from experiments.grid_types import GridSettings, ModelSetting, build_cells, parse_methods

    cells = tuple(build_cells(models=(ModelSetting("packaged-minilm", 16),), methods=parse_methods(methods),
                              seeds=SEEDS))
    return [TaskGrid(task, GridSettings(runs_dir=root / task, data_dir=root, train_datasets=f"{task}:train",
                                        epochs=2, learning_rate=1e-4, warmup=0.1, max_seq_len=128), cells, 100, 2, 1600)
            for task in tasks]


def _synthetic(root: Path, *, shift: float, noise: float, seed: int = 0) -> list:
    """none and smart_mtdnn share a large seed effect; 1-1 = smart_mtdnn + shift + N(0, noise) per seed."""
    rng = random.Random(seed)
    for task in TASK_METRICS:
        base = rng.uniform(40, 80)
        for s in SEEDS:
            seed_effect = rng.gauss(0, 3.0)  # what pairing removes: as large as SNLI's 3-point seed sd
            reference = base + seed_effect
            values = {"none": reference + rng.gauss(0, 0.05), "smart_mtdnn": reference,
                      "1-1": reference + shift + rng.gauss(0, noise)}
            for method, value in values.items():
                _write_run(root / task / "packaged-minilm" / method / f"seed{s}", task=task, method=method, seed=s,
                           figure=value, seconds={"none": 1.0, "smart_mtdnn": 3.0, "1-1": 1.8}[method],
                           adv={"advglue_rte": value - 20} if task == "rte" else None)
    return _grids(root, "none,smart_mtdnn,1-1")


@pytest.mark.parametrize("shift, noise, expected", [
    (0.0, 0.1, EQUIVALENT),           # equal methods, small noise
    (2 * MARGIN, 0.1, BETTER),        # a shift of twice the margin
    (-2 * MARGIN, 0.1, WORSE),
    (0.0, 6.0, INCONCLUSIVE),         # large noise: neither equivalence nor a difference can be shown
])
def test_verdicts_on_synthetic_runs_with_a_known_answer(tmp_path, shift, noise, expected):
    from experiments.glue_report import decisions, load_results

    results = load_results(grids=_synthetic(tmp_path, shift=shift, noise=noise))
    assert results.missing == [] and results.tasks == list(TASK_METRICS)
    found = decisions(results)
    assert found[("1-1", "smart_mtdnn", "pooled")].verdict == expected
    per_task = [found[("1-1", "smart_mtdnn", task)].verdict for task in TASK_METRICS]
    if expected != INCONCLUSIVE:  # with noise 0.1 each task alone is decided too
        assert per_task == [expected] * len(TASK_METRICS)
    # the pooled difference is the per-seed mean over the six tasks, read from the final evaluation
    pooled_comparison = found[("1-1", "smart_mtdnn", "pooled")].comparison
    assert pooled_comparison.n == len(SEEDS)
    assert pooled_comparison.mean == pytest.approx(shift, abs=3 * noise + 1e-9)


def test_the_final_evaluation_is_reported_not_the_best(tmp_path):
    from experiments.glue_report import load_results

    grids = _synthetic(tmp_path, shift=0.0, noise=0.1)
    results = load_results(grids=grids)
    # the epoch-1 records hold 0.0 for every metric: a reader taking the first (or the best of a
    # wrongly signed comparison) would report 0
    assert all(v > 10 for entry in results.cells.values() for v in entry.figure.values())
    stsb = results.cells[("stsb", "none")]
    assert stsb.figure[1] == pytest.approx(100 * stsb.metrics[1]["pearson"])


def test_report_writes_doc_csv_and_plots_with_the_verdicts(tmp_path):
    from experiments.glue_report import report

    grids = _synthetic(tmp_path / "runs", shift=2 * MARGIN, noise=0.1)
    doc = tmp_path / "doc" / "glue_cpu.md"
    assert report(grids=grids, out_dir=tmp_path / "runs", results_doc=doc, header="- provenance\n\n",
                  settings_lines=["- synthetic"]) == 0
    text = doc.read_text()
    paragraph = text.split("## Verdict", 1)[1].split("## Settings", 1)[0]
    assert "`1-1` (proposed method): **better** against smart_mtdnn" in paragraph
    assert "AdvGLUE-RTE +2.0 vs smart_mtdnn" in paragraph and "at 0.60x smart_mtdnn's seconds per update" in paragraph
    rows = doc.with_suffix(".csv").read_text().splitlines()
    assert len(rows) == 1 + 6 * 3 * len(SEEDS)
    for name in ("glue_cpu_cost.png", "glue_cpu_forest.png"):
        assert (doc.parent / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "runs" / "tables" / "glue_cpu.md").is_file()


# ------------------------------------------------------------------ AdvGLUE on the real file


def test_advglue_sets_of_each_trained_task_read_the_real_file(advglue_dir):
    """Counts as AdvGLUE's PROVENANCE.md; labels by name (SNLI's transfer reads MNLI's 0/1/2 as
    entailment/neutral/contradiction)."""
    from collections import Counter

    from experiments.advglue_eval import ADV_SETS
    from mt_dnn.data import read_examples
    from mt_dnn.task_def import load_task_defs

    expected = {"advglue_rte": {"entailment": 35, "not_entailment": 46}, "advglue_sst2": {"positive": 76, "negative": 72},
                "advglue_mnli": {"contradiction": 50, "neutral": 39, "entailment": 32},
                "advglue_mnli_mm": {"entailment": 60, "contradiction": 57, "neutral": 45}}
    raw = json.loads((advglue_dir / "dev.json").read_text(encoding="utf-8"))
    names = {"rte": {0: "entailment", 1: "not_entailment"}, "sst2": {0: "negative", 1: "positive"},
             "mnli": {0: "entailment", 1: "neutral", 2: "contradiction"}}
    names["mnli-mm"] = names["mnli"]
    for trained, sets in ADV_SETS.items():
        for adv in sets:
            definition = load_task_defs(paths=[adv.task_def])[trained]
            key = definition.splits[adv.split].key
            examples = read_examples(path=advglue_dir / "dev.json", task=definition, key=key)
            labels = [definition.label_names[e.label] for e in examples]
            assert dict(Counter(labels)) == expected[adv.name], adv.name
            assert labels == [names[key][r["label"]] for r in raw[key]], adv.name


def test_advglue_eval_refuses_a_task_advglue_lacks(tmp_path, advglue_dir, capsys):
    from experiments.advglue_eval import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "run_config.json").write_text(json.dumps({"train_datasets": "cola:train"}))
    assert main(["--run_dir", str(run), "--advglue_dir", str(advglue_dir)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: --run_dir {run}: trained on cola; AdvGLUE has sets for runs trained on rte, snli, sst2"]
    assert not (run / "advglue_eval.json").exists()


# ------------------------------------------------------------------ the suite and the pilot, tiny, real entry point


def _tiny_argv(tmp_path, glue_dir, advglue_dir) -> list[str]:
    from tiny_models import tiny_bert

    model = tiny_bert(tmp_path / "bert")
    return ["--suite", "glue", "--tasks", "rte,sst2", "--methods", "none,1-1", "--seeds", "1,2", "--batch_size", "4",
            "--model", str(model), "--glue_dir", str(glue_dir), "--advglue_dir", str(advglue_dir),
            "--output", str(tmp_path / "runs"), "--quiet"]


@pytest.mark.slow
def test_glue_suite_tiny_preset_through_the_entry_point(tmp_path, glue_dir, advglue_dir):
    from experiments.head_to_head import main

    doc, results = tmp_path / "doc" / "glue_cpu.md", tmp_path / "committed"
    argv = _tiny_argv(tmp_path, glue_dir, advglue_dir) + ["--updates", "2", "--results_doc", str(doc),
                                                          "--results_runs", str(results)]
    assert main(argv) == 0
    runs = tmp_path / "runs"
    text = doc.read_text()
    assert text.startswith("# Head-to-head on GLUE and SNLI (CPU scale)\n\n- command: ")
    assert "`1-1` (proposed method):" in text.split("## Settings")[0]
    csv = doc.with_suffix(".csv").read_text().splitlines()
    assert len(csv) == 1 + 2 * 2 * 2
    for name in ("glue_cpu_cost.png", "glue_cpu_forest.png"):
        assert (doc.parent / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    raw = json.loads((advglue_dir / "dev.json").read_text(encoding="utf-8"))
    rte_names = {0: "entailment", 1: "not_entailment"}  # AdvGLUE's integers; GLUE's RTE head: [not_entailment, entailment]
    for task, adv_name, count in (("rte", "advglue_rte", 81), ("sst2", "advglue_sst2", 148)):
        for method in ("none", "1-1"):
            for seed in (1, 2):
                run = runs / task / "bert" / method / f"seed{seed}"
                config = json.loads((run / "run_config.json").read_text())
                assert (config["train_datasets"], config["test_datasets"], config["max_train_examples"]) == (
                    f"{task}:train", f"{task}:dev", 8)
                summary = json.loads((run / "run_summary.json").read_text())
                assert summary["finished"] and summary["updates"] == 2
                adv = json.loads((run / "advglue_eval.json").read_text())[adv_name]
                predictions = [json.loads(line) for line in (run / "predictions" / f"{adv_name}.jsonl").read_text().splitlines()]
                assert adv["examples"] == len(predictions) == count
                assert adv["accuracy"] == pytest.approx(sum(p["prediction"] == p["gold"] for p in predictions) / count)
                if task == "rte":
                    assert [p["gold"] for p in predictions] == [rte_names[r["label"]] for r in raw["rte"]]
                assert not list((run / "checkpoints").glob("*.pt"))  # pruned once scored
                copied = results / task / "bert" / method / f"seed{seed}"
                assert sorted(p.name for p in copied.iterdir()) == sorted(
                    ["advglue_eval.json", "grid_commands.jsonl", "metrics.jsonl", "run_config.json", "run_summary.json"])
                # the CSV's figure is the run's final dev accuracy
                final = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
                         if '"eval_pooled"' in line][-1]
                row = next(r for r in csv if r.startswith(f"{task},{method},{seed},"))
                assert float(row.split(",")[3]) == pytest.approx(100 * final["metrics"]["accuracy"], abs=1e-4)
    # the report from the copied small files alone is the same document body
    again = tmp_path / "again.md"
    assert main(argv[:argv.index("--output")] + ["--output", str(results), "--quiet", "--updates", "2",
                                                 "--phases", "report", "--results_doc", str(again)]) == 0
    strip = lambda t: t.split("## Verdict", 1)[1]  # noqa: E731 (the provenance lines differ)
    assert strip(again.read_text()) == strip(text)
    # a second start finds everything done: nothing trained or scored again
    before = {p: p.stat().st_mtime_ns for p in runs.rglob("advglue_eval.json")}
    assert main(argv) == 0
    assert before == {p: p.stat().st_mtime_ns for p in runs.rglob("advglue_eval.json")}


@pytest.mark.slow
def test_pilot_tiny_preset_recommends_from_its_own_measurements(tmp_path, glue_dir, advglue_dir):
    from experiments.head_to_head import main

    argv = _tiny_argv(tmp_path, glue_dir, advglue_dir) + ["--pilot", "--pilot_lengths", "1,2", "--pilot_seeds", "1,2",
                                                          "--budget_hours", "0.5"]
    assert main(argv) == 0
    pilot = tmp_path / "runs" / "pilot"
    figures = json.loads((pilot / "pilot.json").read_text())
    for length in (1, 2):
        runs = pilot / f"updates{length}" / "rte" / "bert"
        accuracy = {}
        for method in ("none", "1-1"):
            for seed in (1, 2):
                final = [json.loads(line) for line in (runs / method / f"seed{seed}" / "metrics.jsonl").read_text()
                         .splitlines() if '"eval_pooled"' in line][-1]
                accuracy[method, seed] = 100 * final["metrics"]["accuracy"]
        measured = figures["measured"][str(length)]
        assert measured["sd_none"] == pytest.approx(abs(accuracy["none", 1] - accuracy["none", 2]) / math.sqrt(2))
        d = [accuracy["1-1", s] - accuracy["none", s] for s in (1, 2)]
        assert measured["sd_difference"] == pytest.approx(abs(d[0] - d[1]) / math.sqrt(2))
        row = figures["recommendation"][str(length)]
        if row["seeds"] >= 2:
            assert row["half_width"] == pytest.approx(
                stats.t.ppf(0.975, row["seeds"] - 1) * measured["sd_difference"] / math.sqrt(row["seeds"]))
            assert row["cost_s"] <= 0.5 * 3600
    text = (pilot / "pilot.md").read_text()
    if figures["best"] is not None:
        seeds = figures["recommendation"][str(figures["best"])]["seeds"]
        assert f"--suite glue --updates {figures['best']} --seeds 1-{seeds}" in text
    assert not list(pilot.rglob("*.pt"))


def test_glue_suite_bad_flags_are_one_line(tmp_path, capsys):
    from experiments.head_to_head import main

    assert main(["--suite", "glue", "--tasks", "rte,qqp", "--output", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "head_to_head: error: --tasks rte,qqp: unknown task 'qqp' (one of rte, mrpc, cola, stsb, sst2, snli)"]
    assert main(["--suite", "glue", "--tasks", "rte", "--glue_dir", str(tmp_path), "--output", str(tmp_path / "r")]) == 2
    assert "no RTE/train.tsv" in capsys.readouterr().err
    assert main(["--pilot", "--output", str(tmp_path / "r")]) == 2
    assert "--pilot: the pilot sizes the glue suite" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------ the SNLI suite from its committed runs

COMMITTED = REPO_ROOT / "docs" / "results" / "snli_cpu_runs"
COMMITTED_METHODS = "none,smart_mtdnn,smart,1-1,1-2,2-1,2-2,2-3,wordnet_1.0,1-1_1.0,wordnet_0.5"


def test_snli_suite_reproduces_the_committed_table_from_the_committed_runs(tmp_path, snli_dir):
    """--suite snli's report phase on docs/results/snli_cpu_runs (no training) gives the tables of
    docs/results/snli_cpu.md line for line."""
    from experiments.head_to_head import main

    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "packaged-minilm").symlink_to(COMMITTED, target_is_directory=True)
    assert main(["--suite", "snli", "--phases", "report", "--output", str(runs), "--data_dir", str(snli_dir),
                 "--methods", COMMITTED_METHODS, "--quiet"]) == 0
    produced = (runs / "tables" / "head_to_head.md").read_text().splitlines()
    committed = (REPO_ROOT / "docs" / "results" / "snli_cpu.md").read_text().splitlines()
    tables = [line for line in produced if line.startswith("|")]
    assert len(tables) == 3 * (2 + 11)
    assert [line for line in tables if line in committed] == tables
    csv = (runs / "tables" / "head_to_head.csv").read_text()
    assert csv == (REPO_ROOT / "docs" / "results" / "snli_cpu.csv").read_text()
    assert re.search(r"majority class of these test pairs: 34\.4%", "\n".join(produced))


def test_rerun_check_tells_the_same_figures_from_changed_ones(tmp_path, capsys):
    import shutil

    from experiments.rerun_check import main

    rerun = tmp_path / "rerun"
    shutil.copytree(COMMITTED / "none" / "seed1", rerun / "none" / "seed1")
    assert main(["--committed", str(COMMITTED), "--rerun", str(rerun)]) == 0
    assert capsys.readouterr().out.strip() == "same figures: none/seed1 (losses: largest relative difference 0.0e+00)"
    metrics = rerun / "none" / "seed1" / "metrics.jsonl"
    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    lines[0]["train_loss"] *= 1 + 2e-7  # a library update's drift: the figures stand, the drift is printed
    lines[1]["metrics"] = {"accuracy": lines[1]["accuracy"]}  # today's runs write metrics too
    metrics.write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert main(["--committed", str(COMMITTED), "--rerun", str(rerun)]) == 0
    assert capsys.readouterr().out.strip() == "same figures: none/seed1 (losses: largest relative difference 2.0e-07)"
    lines[1]["accuracy"] += 0.001  # one more test pair right
    metrics.write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert main(["--committed", str(COMMITTED), "--rerun", str(rerun)]) == 1
    assert capsys.readouterr().out.startswith("DIFFERENT: none/seed1: ('eval', 1, 'test'): (('accuracy', 0.621)")


def test_pilot_picks_the_narrowest_interval_the_budget_affords():
    """Two lengths: the longer one halves the difference's sd and doubles the cost per seed; which one
    wins depends on how many seeds the budget buys (t quantiles of few degrees of freedom are large)."""
    from experiments.glue_pilot import recommend

    hour = 3600.0
    lengths = {100: {"sd_difference": 2.0, "cost_for_seeds": lambda n: n * hour},
               200: {"sd_difference": 1.0, "cost_for_seeds": lambda n: 2 * n * hour}}
    eight = recommend(lengths=lengths, budget_s=8 * hour)
    assert eight["per_length"][100]["seeds"] == 8 and eight["per_length"][200]["seeds"] == 4
    assert eight["per_length"][100]["half_width"] == pytest.approx(stats.t.ppf(0.975, 7) * 2.0 / math.sqrt(8))
    assert eight["best"] == 200  # 3.18 x 1/2 = 1.59 < 2.36 x 2/2.83 = 1.67
    four = recommend(lengths=lengths, budget_s=4 * hour)
    assert four["best"] == 100  # 3.18 x 2/2 = 3.18 < 12.7 x 1/1.41 = 8.98
    assert recommend(lengths=lengths, budget_s=1.5 * hour)["best"] is None  # not even 2 seeds anywhere


def test_each_tasks_figure_is_the_plans():
    from experiments.glue_tasks import TASKS

    metrics = {"accuracy": 0.70, "f1": 0.80, "mcc": 0.30, "pearson": 0.90, "spearman": 0.86}
    figures = {name: TASKS[name].figure(metrics) for name in TASKS}
    assert figures == pytest.approx({"rte": 70.0, "sst2": 70.0, "snli": 70.0, "mrpc": 75.0, "cola": 30.0,
                                     "stsb": 88.0})


@pytest.mark.slow
def test_an_snli_trained_run_is_scored_on_advglue_mnli_as_a_transfer(tmp_path, advglue_dir, capsys):
    """The SNLI task's AdvGLUE sets: AdvGLUE's MNLI lists read as the SNLI head's task (0 entailment,
    1 neutral, 2 contradiction mapped by name), through the evaluation's own command line."""
    from experiments.advglue_eval import main as advglue_main
    from mt_dnn.cli_train import main as train_main
    from tiny_models import tiny_bert

    sample = REPO_ROOT / "experiments" / "data" / "snli_sample"
    run = tmp_path / "run"
    assert train_main(["--task_def", str(REPO_ROOT / "task_defs" / "snli.yml"), "--data_dir", str(sample),
                       "--model", str(tiny_bert(tmp_path / "bert")), "--cache_dir", str(tmp_path / "cache"),
                       "--train_datasets", "snli:dev", "--test_datasets", "snli:test", "--max_train_examples", "16",
                       "--max_eval_examples", "16", "--epochs", "1", "--batch_size", "8", "--max_seq_len", "64",
                       "--no_progress", "--no_export", "--output_dir", str(run)]) == 0
    assert advglue_main(["--run_dir", str(run), "--advglue_dir", str(advglue_dir)]) == 0
    results = json.loads((run / "advglue_eval.json").read_text())
    raw = json.loads((advglue_dir / "dev.json").read_text(encoding="utf-8"))
    names = {0: "entailment", 1: "neutral", 2: "contradiction"}
    for name, key, count in (("advglue_mnli", "mnli", 121), ("advglue_mnli_mm", "mnli-mm", 162)):
        assert results[name]["examples"] == count and results[name]["transfer"] is True
        predictions = [json.loads(line) for line in (run / "predictions" / f"{name}.jsonl").read_text().splitlines()]
        assert [p["gold"] for p in predictions] == [names[r["label"]] for r in raw[key]]
        assert results[name]["accuracy"] == pytest.approx(sum(p["prediction"] == p["gold"] for p in predictions) / count)
    # scored once: a second call finds both sets and scores nothing
    before = (run / "advglue_eval.json").stat().st_mtime_ns
    assert advglue_main(["--run_dir", str(run), "--advglue_dir", str(advglue_dir)]) == 0
    assert (run / "advglue_eval.json").stat().st_mtime_ns == before
