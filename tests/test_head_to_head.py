"""The head-to-head through its real entry point, on a tiny setting: 2 methods x 2 seeds, a few steps
on the shipped SNLI sample; the table, the CSV and the plot are written, and the paired test in the
table is the one computed here from the runs' own numbers."""

from __future__ import annotations

import json

import pytest
from scipy import stats

from conftest import REPO_ROOT

SAMPLE = REPO_ROOT / "experiments" / "data" / "snli_sample"


def test_head_to_head_tiny_grid_writes_table_csv_and_plot(tmp_path):
    from experiments.head_to_head import main
    from tiny_models import tiny_bert

    if not (SAMPLE / "snli_test.jsonl").is_file():
        pytest.skip(f"{SAMPLE} holds no snli_test.jsonl: the shipped SNLI sample is needed for this test")
    model = tiny_bert(tmp_path / "bert")
    runs = tmp_path / "runs"
    argv = ["--data_dir", str(SAMPLE), "--output", str(runs), "--methods", "none,1-1", "--seeds", "1,2",
            "--max_train_examples", "32", "--max_eval_examples", "40", "--batch_size", "8", "--model", str(model),
            "--quiet"]
    assert main(argv) == 0
    table = (runs / "tables" / "head_to_head.md").read_text()
    csv = (runs / "tables" / "head_to_head.csv").read_text().splitlines()
    assert (runs / "plots" / "head_to_head.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "NOT the official protocol" in table and len(csv) == 1 + 4
    accuracy = {}
    for method in ("none", "1-1"):
        for seed in (1, 2):
            run = runs / "bert" / method / f"seed{seed}"
            record = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
                      if '"eval"' in line][-1]
            accuracy[method, seed] = 100 * record["accuracy"]
            robust = json.loads((run / "robust_eval.json").read_text())
            assert {key.split("@")[0] for key in robust} == {"wordnet", "neighbour"}
    diff = (accuracy["1-1", 1] - accuracy["none", 1] + accuracy["1-1", 2] - accuracy["none", 2]) / 2
    row = next(line for line in table.splitlines() if line.startswith("| 1-1 |") and "vs" not in line
               and "(p" in line)
    if accuracy["1-1", 1] - accuracy["none", 1] == accuracy["1-1", 2] - accuracy["none", 2]:
        assert f"{diff:+.2f} (p n/a)" in row
    else:
        p = stats.ttest_rel([accuracy["1-1", s] for s in (1, 2)], [accuracy["none", s] for s in (1, 2)]).pvalue
        assert f"{diff:+.2f} (p={p:.3f}" in row
    # a second start finds everything done: nothing is trained or scored again
    before = {p: p.stat().st_mtime_ns for p in runs.rglob("robust_eval.json")}
    assert main(argv) == 0
    assert before == {p: p.stat().st_mtime_ns for p in runs.rglob("robust_eval.json")}
