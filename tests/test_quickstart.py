"""The quickstart end to end on a tiny setting: real packaged MiniLM, the shipped SNLI sample, its printed table.

It is the README's first command, so it must run offline from the shipped files alone, and the
table it prints must be the runs' own numbers (accuracy from metrics.jsonl, the ratio to
smart_mtdnn from the seconds per update). With $ANLI_DIR, the SNLI-trained model is also scored
on ANLI's test rounds, whose labels must map onto SNLI's (e -> entailment, ...).
"""

from __future__ import annotations

import json
import re

import pytest

from experiments import quickstart

TINY = ["--train_examples", "16", "--eval_examples", "24"]


def _rows(printed: str) -> dict[str, dict[str, str]]:
    lines = [line for line in printed.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[1:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells))
    return rows


def _metrics(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if line]


@pytest.mark.slow
def test_quickstart_trains_on_the_sample_and_prints_the_runs_numbers(minilm_path, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MT_DNN_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "qs"
    status = quickstart.main([*TINY, "--methods", "none,smart_mtdnn", "--anli_dir", "", "--output_dir", str(out)])
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert "first 16 pairs of the shipped SNLI sample" in printed and "24 held-out SNLI test pairs" in printed
    assert "ANLI" not in printed.split("first 16 pairs")[1]  # no ANLI folder: no ANLI columns or claims
    rows = _rows(printed)
    assert list(rows) == ["none", "smart_mtdnn"]
    spu = {}
    for method, row in rows.items():
        records = _metrics(out / method)
        test = [r for r in records if r["kind"] == "eval" and r["split"] == "test"][-1]
        epoch = [r for r in records if r["kind"] == "train_epoch"][-1]
        assert test["examples"] == 24 and epoch["examples"] == 16 and epoch["updates"] == 1
        assert row["SNLI held-out %"] == f"{100 * test['accuracy']:.1f}"
        assert row["s/update"] == f"{epoch['seconds_per_update']:.3f}"
        config = json.loads((out / method / "run_config.json").read_text(encoding="utf-8"))
        assert config["perturbation"] == method
        spu[method] = epoch["seconds_per_update"]
    assert rows["smart_mtdnn"]["÷ smart_mtdnn"] == "1.00"
    assert rows["none"]["÷ smart_mtdnn"] == f"{spu['none'] / spu['smart_mtdnn']:.2f}"
    assert re.search(r"majority class \d+\.\d%", printed)


@pytest.mark.slow
def test_quickstart_scores_anli_zero_shot_with_snli_labels(minilm_path, anli_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MT_DNN_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "qs"
    status = quickstart.main([*TINY, "--methods", "none", "--anli_dir", str(anli_dir), "--anli_examples", "4",
                              "--output_dir", str(out)])
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert "zero-shot" in printed and "no ANLI training" in printed
    converted = [json.loads(line) for line in (out / "anli_as_snli.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(converted) == 12
    lines = (anli_dir / "R2" / "test.jsonl").read_text(encoding="utf-8").splitlines()
    original = [json.loads(line) for line in lines[:4]]
    for pair, source in zip(converted[4:8], original):
        assert pair["pairID"] == f"r2:{source['uid']}"
        assert (pair["sentence1"], pair["sentence2"]) == (source["context"], source["hypothesis"])
        assert pair["gold_label"] == {"e": "entailment", "n": "neutral", "c": "contradiction"}[source["label"]]
    predictions = [json.loads(line) for line in
                   (out / "none" / "anli_zero_shot_predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    row = _rows(printed)["none"]
    for name in ("r1", "r2", "r3"):
        chosen = [p for p in predictions if p["uid"].startswith(f"{name}:")]
        assert len(chosen) == 4
        assert row[f"ANLI {name.upper()} %"] == f"{100 * sum(p['prediction'] == p['gold'] for p in chosen) / 4:.1f}"


def test_quickstart_rejects_a_non_positive_count(capsys):
    with pytest.raises(SystemExit) as info:
        quickstart.main(["--train_examples", "0"])
    assert info.value.code == 2
    assert "--train_examples 0: expected a number of pairs from 1 to 3000" in capsys.readouterr().err
