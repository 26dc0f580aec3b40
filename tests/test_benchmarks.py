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
