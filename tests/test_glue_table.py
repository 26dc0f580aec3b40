"""experiments.glue_table: each task's own metrics at the run's selected epoch, the first marked."""

from __future__ import annotations

import json

from experiments.glue_table import main


def _run(folder, *, perturbation, finished, best_epoch, records, score):
    folder.mkdir(parents=True)
    (folder / "run_config.json").write_text(json.dumps({"perturbation": perturbation}))
    (folder / "run_summary.json").write_text(json.dumps({"finished": finished, "best_epoch": best_epoch,
                                                         "best_dev_score": score}))
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def _pooled(epoch, task, metric, metrics, role="dev"):
    return {"kind": "eval_pooled", "epoch": epoch, "task": task, "role": role, "metric": metric,
            "score": metrics[metric], "metrics": metrics, "examples": 100}


def test_each_task_its_metrics_at_the_selected_epoch(tmp_path, capsys):
    _run(tmp_path / "mt", perturbation="1-1", finished=True, best_epoch=2, score=0.45, records=[
        _pooled(1, "cola", "mcc", {"mcc": 0.1, "accuracy": 0.7}),
        _pooled(1, "stsb", "pearson", {"pearson": 0.2, "spearman": 0.25}),
        _pooled(2, "cola", "mcc", {"mcc": 0.3, "accuracy": 0.75}),
        _pooled(2, "stsb", "pearson", {"pearson": 0.6, "spearman": 0.55}),
        _pooled(2, "stsb", "pearson", {"pearson": 0.9, "spearman": 0.9}, role="test"),
    ])
    _run(tmp_path / "old", perturbation="none", finished=True, best_epoch=1, score=0.5, records=[
        {"kind": "eval_pooled", "epoch": 1, "task": "anli", "role": "dev", "accuracy": 0.5, "examples": 3200}])
    _run(tmp_path / "unfinished", perturbation="smart", finished=False, best_epoch=None, score=None, records=[])
    assert main([str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()[2:]
    assert lines == [
        "| mt | 1-1 | cola | 2 | mcc 30.00* · accuracy 75.00 | 100 | 45.00 |",
        "| mt | 1-1 | stsb | 2 | pearson 60.00* · spearman 55.00 | 100 | 45.00 |",
        "| old | none | anli | 1 | accuracy 50.00* | 3200 | 50.00 |",
    ]


def test_no_finished_run_is_one_line(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path}: no finished run with a dev evaluation"
