"""The benchmarks run end to end and report every step they time (tiny BERT, synthetic batches).

They are scripts that print figures, not timed tests: what is checked is that each one still runs
on the code it measures and that its figures are what they say (one per timed round, positive,
the passes of each step), never how fast anything is.
"""

from __future__ import annotations

import json

import pytest

from tiny_models import tiny_bert

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    return {"model": tiny_bert(root / "bert"), "cache": root / "cache"}


COMMON = ["--data", "synthetic", "--batch_size", "4", "--max_seq_len", "32", "--threads", "1", "--warmup", "0",
          "--repeats", "2"]


def test_step_cost_benchmark_times_each_method(tiny, tmp_path, capsys):
    from benchmarks.bench_step_cost import main

    out = tmp_path / "cost.json"
    assert main(["--model", str(tiny["model"]), "--cache_dir", str(tiny["cache"]), *COMMON, "--no_memory",
                 "--methods", "none", "smart", "1-1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    methods = result["methods"]
    assert set(methods) == {"none", "smart", "1-1"} and not result["skipped"]
    for figures in methods.values():
        assert len(figures["steps_s"]) == 2 and all(s > 0 for s in figures["steps_s"])
        assert figures["min_s"] <= figures["median_s"] and figures["cpu_median_s"] > 0
    passes = {label: (f["forwards"], f["backwards"]) for label, f in methods.items()}
    assert passes == {"none": (1, 1), "smart": (3, 2), "1-1": (2, 1)}
    assert "none" in capsys.readouterr().out


def test_step_cost_benchmark_on_a_glue_tasks_own_lengths_and_head(tiny, tmp_path, glue_dir):
    """--data glue:stsb: batches of STS-B's training pairs (float scores) through STS-B's regression head (MSE):
    the GLUE head-to-head's cost per task (issue 23)."""
    from benchmarks.bench_step_cost import main
    from benchmarks.step_cost_setup import benchmark_batches, benchmark_task
    from mt_dnn.features import load_tokenized_split
    from mt_dnn.run_setup import load_tokenizer

    out = tmp_path / "cost.json"
    common = [c for c in COMMON if c not in ("--data", "synthetic")]
    assert main(["--model", str(tiny["model"]), "--cache_dir", str(tiny["cache"]), *common, "--data", "glue:stsb",
                 "--data_dir", str(glue_dir), "--no_memory", "--methods", "none", "1-1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["data"] == "real GLUE stsb training examples" and set(result["methods"]) == {"none", "1-1"}
    task = benchmark_task(data="glue:stsb")
    assert task.task_type == "regression"
    tokenizer = load_tokenizer(str(tiny["model"]))
    batches, _ = benchmark_batches(data="glue:stsb", data_dir=glue_dir, tokenizer=tokenizer, task=task, batch_size=4,
                                   max_seq_len=32, seed=0, cache_dir=tiny["cache"], count=2)
    labels = load_tokenized_split(path=glue_dir / "STS-B" / "train.tsv", task=task, split="train",
                                  tokenizer=tokenizer, max_seq_len=32, cache_dir=None).labels
    scores = set(labels.astype("float32").tolist())
    assert all(b["labels"].dtype.is_floating_point and set(b["labels"].tolist()) <= scores for b in batches)


def test_tools_benchmark_times_ours_against_a_hand_loop_and_trainer(tiny, tmp_path, capsys):
    pytest.importorskip("accelerate", reason="Trainer needs the hf extra (pip install -e .[hf])")
    from benchmarks.bench_vs_tools import main

    out = tmp_path / "tools.json"
    assert main(["--model", str(tiny["model"]), "--cache_dir", str(tiny["cache"]), *COMMON, "--json",
                 str(out)]) == 0
    steps = json.loads(out.read_text())["steps"]
    assert set(steps) == {"hand", "hand:again", "none", "trainer", "1-1", "trainer:1-1"}
    for figures in steps.values():
        assert len(figures["wall_s"]) == len(figures["cpu_s"]) == 2 and min(figures["wall_s"]) > 0
    printed = capsys.readouterr().out
    assert "none / hand" in printed and "1-1 / trainer:1-1" in printed and "hand:again / hand" in printed


def test_paired_ratio_is_the_median_of_the_rounds_ratios_with_an_interval_around_it():
    from benchmarks.bench_vs_tools import paired_ratio

    # rounds of very different widths, one ratio throughout: the interval collapses onto it
    median, low, high = paired_ratio([1.1, 2.2, 3.3, 11.0, 0.55], [1.0, 2.0, 3.0, 10.0, 0.5])
    assert median == pytest.approx(1.1) and low == pytest.approx(1.1) and high == pytest.approx(1.1)
    # the rounds' ratios 2, 0.5, 1.5: their median is 1.5, the ratio of the medians 1.0
    assert paired_ratio([2.0, 1.0, 3.0], [1.0, 2.0, 2.0])[0] == pytest.approx(1.5)
    noisy = [1.0, 1.2, 0.9, 1.1, 1.05, 0.95, 1.3, 1.0, 1.02]
    median, low, high = paired_ratio(noisy, [1.0] * len(noisy))
    assert median == pytest.approx(1.02) and low < median < high and low >= 0.9 and high <= 1.3


def test_load_warning_only_when_other_processes_loaded_the_cpu():
    from benchmarks.benchmark_cli import load_warning

    busy = {"load_average": [1.0, 3.5], "cpu_count": 2, "device": "cpu"}
    (line,) = load_warning(busy, consequence="the figures are not a measurement")
    assert line.startswith("WARNING: load average 1.0 -> 3.5 on 2 cores") and line.endswith("not a measurement")
    assert load_warning({**busy, "load_average": [2.0, 2.0]}, consequence="x") == []
    assert load_warning({**busy, "device": "cuda:0"}, consequence="x") == []


@pytest.mark.slow
def test_gpu_check_smoke_times_trains_and_tabulates_each_method(tmp_path, anli_dir, monkeypatch):
    """The GPU check's own code path on the CPU: step cost, every provider through train.py with a
    stop + resume pair, and the summary table, all written to --json_dir."""
    from benchmarks.gpu_check import main

    monkeypatch.setenv("ANLI_DIR", str(anli_dir))
    out = tmp_path / "out"
    assert main(["--smoke", "--methods", "none", "1-1", "--json_dir", str(out), "--work_dir", str(tmp_path / "work"),
                 "--cache_dir", str(tmp_path / "cache"), "--budget_s", "0"]) == 0
    step = json.loads((out / "step_cost_tiny_none.json").read_text())
    assert set(step["methods"]) == {"none", "1-1"}
    summary = (out / "summary.txt").read_text()
    method_table, grid_table = summary.split("\n\n", 1)
    rows = [line.split() for line in method_table.splitlines()[2:]]
    assert [(r[0], r[1], r[2]) for r in rows] == [("none", "tiny", "fp32"), ("1-1", "tiny", "fp32")]
    assert float(rows[0][4]) == 1.0 and float(rows[1][4]) > 0  # /none column
    assert grid_table.startswith("the paper's grid at these step times")  # no paper-sized figures: n/a cells
    trained = json.loads((out / "train_smoke.json").read_text())["methods"]
    assert set(trained) == {"none", "1-1"}
    for method, result in trained.items():
        assert result["problems"] == [], (method, result["problems"])
        assert len(result["full"]["train_loss"]) == 2 and result["full"]["finished"]
        # on the CPU the stopped-and-resumed run is the uninterrupted one, bit for bit
        assert result["resume_max_loss_diff"] == 0.0 and result["resumed"]["finished"]
    assert trained["1-1"]["full"]["perturbation"][-1]["changed_share"] > 0.9
    assert trained["none"]["full"]["passes"] == [1.0, 1.0] and trained["1-1"]["full"]["passes"] == [2.0, 1.0]


def test_gpu_grid_hours_are_the_paper_grid_times_the_measured_step_times():
    from benchmarks.gpu_check import PAPER_SEEDS, UPDATES_PER_RUN, grid_hours_table, paper_grid

    step = {"none": 0.1, "smart_mtdnn": 0.3, "smart": 0.3, "1-1": 0.2, "1-2": 0.2, "2-1": 0.2, "2-2": 0.25,
            "2-3": 0.25, "wordnet_1.0": 0.2, "1-1_1.0": 0.2, "wordnet_0.5": 0.2}
    results = {f"{size}|fp32": {"methods": {m: {"median_s": s} for m, s in step.items()}} for size in UPDATES_PER_RUN}
    rows = {line[:48].strip(): [float(x) for x in line[48:].split()] for line in grid_table_lines(results)}
    expected_all = {size: 0.0 for size in UPDATES_PER_RUN}
    for name, runs, models in paper_grid():
        for size in models:
            expected_all[size] += sum(n * step[m] for m, n in runs.items()) * PAPER_SEEDS * UPDATES_PER_RUN[size] / 3600
    # Table 2 by hand: none, both SMARTs, 1-1, 1-2, 2-1, 2-2, 2-3 = 0.1 + 0.6 + 0.6 + 0.5 = 1.8 s per seed's
    # updates-set, 6 seeds, 30,540 BERT-base updates
    assert rows["Table 2 (8 methods)"][0] == pytest.approx(round(1.8 * 6 * 30_540 / 3600, 1))
    assert rows["all"] == pytest.approx([round(expected_all[s], 1) for s in UPDATES_PER_RUN])
    assert "n/a" in grid_hours_table({"bert-base|fp32": {"methods": {"none": {"median_s": 0.1}}}})


def grid_table_lines(results):
    from benchmarks.gpu_check import grid_hours_table

    return [line for line in grid_hours_table(results).splitlines()[2:] if "-" not in line[48:]]


def test_gpu_train_smoke_flags_what_a_user_would_not_accept():
    from benchmarks.gpu_train_smoke import verdict

    report = {"changed_share": 0.95, "noise_share": 0.3}
    good = {"train_loss": [1.10, 1.05], "perturbation": [report, report], "finished": True}
    assert verdict(method="1-1", run=good, returncode=0) == []
    assert verdict(method="none", run={**good, "perturbation": [None, None]}, returncode=0) == []
    rising = verdict(method="1-1", run={**good, "train_loss": [1.05, 1.10]}, returncode=0)
    assert rising == ["training loss did not fall: 1.0500 -> 1.1000"]
    assert "not finite" in verdict(method="1-1", run={**good, "train_loss": [1.1, float("nan")]}, returncode=0)[0]
    assert verdict(method="1-1", run={**good, "perturbation": [report, None]}, returncode=0) == [
        "an epoch without the provider's figures"]
    assert "provider figures not finite" in verdict(
        method="1-1", run={**good, "perturbation": [report, {"changed_share": float("nan"), "noise_share": 0.1}]},
        returncode=0)[0]
    assert verdict(method="none", run={**good, "finished": False}, returncode=3) == [
        "exit 3", "no finished run_summary.json"]
