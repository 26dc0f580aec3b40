"""experiments.summarize on a synthetic RUNS folder written exactly as docs/run_format.md says."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from experiments import paper_values, table2, table3
from experiments.summarize import load_runs, main, render_markdown, reported_epoch, summarize, write_csv
from synthetic_runs import H200, pooled_accuracy, write_run

# Test accuracies (fractions, A1/A2/A3) at the epoch the rule must report (epoch 2).
BERT_TEST = {
    "none": {1: (0.558, 0.460, 0.454), 2: (0.560, 0.455, 0.450), 3: (0.550, 0.465, 0.458)},
    "smart_mtdnn": {1: (0.561, 0.465, 0.456), 2: (0.565, 0.462, 0.452), 3: (0.555, 0.470, 0.460)},
    "smart": {1: (0.563, 0.461, 0.458), 2: (0.559, 0.466, 0.450), 3: (0.566, 0.468, 0.455)},  # the corrected one
    "1-1": {1: (0.569, 0.462, 0.460), 2: (0.572, 0.470, 0.455)},  # seed 3 missing
    "1-2": {1: (0.577, 0.468, 0.457), 2: (0.570, 0.460, 0.462)},  # seed 3 unfinished
    "2-1": {1: (0.564, 0.459, 0.460)},  # one seed only
}
SECONDS_PER_UPDATE = {
    ("none", 1): 0.20, ("none", 2): 0.22, ("none", 3): 0.21,
    ("smart_mtdnn", 1): 0.50, ("smart_mtdnn", 2): 0.52, ("smart_mtdnn", 3): 0.90,
    ("smart", 1): 0.45, ("smart", 2): 0.47, ("smart", 3): 0.46,
    ("1-1", 1): 0.30, ("1-1", 2): 0.31, ("1-2", 1): 0.32, ("1-2", 2): 0.30, ("2-1", 1): 0.35,
}
PASSES = {"none": (1.0, 1.0), "smart_mtdnn": (3.0, 2.0), "smart": (3.0, 2.0)}
# Per-epoch (changed_share, noise_share) of the provider.
SHARES = {
    "smart_mtdnn": [(1.0, 0.60), (1.0, 0.62), (1.0, 0.58)],  # ‖noise‖∞ ≈ 1 per token: the embedding's size
    "smart": [(1.0, 3e-5), (1.0, 4e-5), (1.0, 2e-5)],
    "1-1": [(0.95, 0.30), (0.96, 0.31), (0.97, 0.29)],
    "1-2": [(0.94, 0.33), (0.95, 0.32), (0.96, 0.34)],
    "2-1": [(0.15, 0.28), (0.15, 0.30), (0.15, 0.29)],
}
# smart_mtdnn's epochs also carry the size MT-DNN's own code logs.
LOGGED = {"smart_mtdnn": [2e-5, 3e-5, 4e-5]}
MINILM_TEST = {"none": {1: (0.40, 0.35, 0.34), 2: (0.41, 0.36, 0.33)}, "1-1": {3: (0.43, 0.36, 0.35), 4: (0.42, 0.37, 0.36)}}


def dev_at(method: str, seed: int) -> dict[int, tuple[float, float, float]]:
    """Dev per epoch: epochs 2 and 3 tie on pooled accuracy (same counts), epoch 1 is worse."""
    shift = 0.002 * seed + 0.001 * list(BERT_TEST).index(method) if method in BERT_TEST else 0.001 * seed
    return {
        1: (0.500, 0.400, 0.400),
        2: (0.558 + shift, 0.460, 545 / 1200),
        3: (0.548 + shift, 0.470, 545 / 1200),
    }


def by_epoch_test(values: tuple[float, float, float]) -> dict[int, tuple[float, float, float]]:
    """Test per epoch: epoch 3 is clearly best on test, so consulting test would pick it."""
    return {1: tuple(v - 0.05 for v in values), 2: values, 3: tuple(v + 0.05 for v in values)}


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    for method, seeds in BERT_TEST.items():
        for seed, values in seeds.items():
            write_run(root / "bert-base-uncased" / method / f"seed{seed}", model="bert-base-uncased",
                      perturbation=method, seed=seed, dev=dev_at(method, seed), test=by_epoch_test(values),
                      pooled=(method, seed) != ("none", 2),  # this one must be recomputed from the splits
                      device_name="Other GPU" if (method, seed) == ("smart_mtdnn", 3) else H200,
                      seconds_per_update=SECONDS_PER_UPDATE[(method, seed)], passes=PASSES.get(method, (2.0, 1.0)),
                      shares=SHARES.get(method), logged=LOGGED.get(method))
    # Unfinished: no run_summary.json and a half-written last metrics line.
    write_run(root / "bert-base-uncased" / "1-2" / "seed3", model="bert-base-uncased", perturbation="1-2", seed=3,
              dev={1: (0.5, 0.5, 0.5)}, test={1: (0.9, 0.9, 0.9)}, finished=None, torn_tail=True)
    # A second model whose first runs are flat folders (identity from run_config.json only).
    for index, (seed, values) in enumerate(MINILM_TEST["none"].items()):
        write_run(root / "flat" / f"run_{index}", model="/opt/models/packaged-minilm", perturbation="none",
                  seed=seed, dev=dev_at("minilm", seed), test=by_epoch_test(values), passes=(1.0, 1.0))
    for seed, values in MINILM_TEST["1-1"].items():
        write_run(root / "packaged-minilm" / "1-1" / f"seed{seed}", model="/opt/models/packaged-minilm",
                  perturbation="1-1", seed=seed, dev=dev_at("minilm", seed), test=by_epoch_test(values),
                  shares=SHARES["1-1"])
    write_run(root / "packaged-minilm" / "1-1" / "seed5", model="/opt/models/packaged-minilm", perturbation="1-1",
              seed=5, dev=dev_at("minilm", 5), test=by_epoch_test((0.9, 0.9, 0.9)), finished=False)
    return root


@pytest.fixture(scope="module")
def summary(runs_dir):
    return summarize(runs=load_runs(runs_dir=runs_dir))


def expected_percent(method: str, role: str, round_name: str) -> list[float]:
    values = []
    for seed, test_values in sorted(BERT_TEST[method].items()):
        rounds = dev_at(method, seed)[2] if role == "dev" else test_values
        full = {"A1": rounds[0], "A2": rounds[1], "A3": rounds[2], "All": pooled_accuracy(rounds)}
        values.append(100 * full[round_name])
    return values


def test_paper_values_match_tables_and_pooling():
    for model, methods in paper_values.TABLE23_ALL.items():
        for method, (dev_all, test_all) in methods.items():
            row = paper_values._TABLE4[method]
            offset = 0 if model == "bert-base-uncased" else 8
            assert row[offset + 3] == dev_all
            if (model, method) == ("bert-base-uncased", "smart_mtdnn"):
                assert row[offset + 7] == 49.2 and test_all == 49.1  # the original's own discrepancy
            else:
                assert row[offset + 7] == test_all
            for start in (offset, offset + 4):
                a1, a2, a3, all_value = row[start:start + 4]
                assert abs((a1 * 1000 + a2 * 1000 + a3 * 1200) / 3200 - all_value) <= 0.1
    # The paper's +SMART is MT-DNN's code (smart_mtdnn); the corrected smart has no paper value anywhere.
    assert paper_values.paper_accuracy(model="bert-base-uncased", method="smart_mtdnn", role="test",
                                       round_name="All") == 49.1
    assert paper_values.paper_accuracy(model="roberta-large", method="smart_mtdnn", role="dev", round_name="A1") == 73.5
    assert not [key for key in paper_values.PAPER_ACCURACY if key[1] == "smart"]
    assert paper_values.METHODS[:3] == ("none", "smart_mtdnn", "smart")
    assert paper_values.METHOD_LABELS["smart_mtdnn"] == "+SMART"
    assert paper_values.METHOD_LABELS["smart"] == "+SMART (corrected)"
    assert paper_values.paper_accuracy(model="bert-base-uncased", method="none", role="test", round_name="A3") == 45.4
    assert paper_values.paper_accuracy(model="roberta-large", method="wordnet_0.5", role="test", round_name="A1") == 72.9
    assert paper_values.paper_accuracy(model="packaged-minilm", method="none", role="test", round_name="A1") is None
    assert len(paper_values.PAPER_ACCURACY) == 2 * 10 * 2 * 4


def test_reported_epoch_rule_uses_pooled_dev_earliest_tie():
    assert reported_epoch(dev_all={1: 0.40, 2: 0.50, 3: 0.50}) == 2
    assert reported_epoch(dev_all={3: 0.51, 1: 0.40, 2: 0.50}) == 3


def test_runs_reported_at_best_dev_epoch_not_best_test(summary):
    bert = [run for run in summary.runs if run.model == "bert-base-uncased"]
    assert len(bert) == 3 + 3 + 3 + 2 + 2 + 1
    for run in bert:
        assert run.reported_epoch == 2, run.path  # epoch 3 ties on dev and wins on test
        assert run.accuracy[("test", "A1")] == pytest.approx(BERT_TEST[run.method][run.seed][0])


def test_means_and_sample_stds(summary):
    for method in BERT_TEST:
        for role in ("dev", "test"):
            for round_name in ("A1", "A2", "A3", "All"):
                cell = summary.cells[("bert-base-uncased", method, role, round_name)]
                values = expected_percent(method, role, round_name)
                assert cell.n == len(values)
                assert cell.mean == pytest.approx(np.mean(values))
                if len(values) >= 2:
                    assert cell.std == pytest.approx(np.std(values, ddof=1))
                else:
                    assert cell.std is None


def test_pooled_all_is_size_weighted_from_records_or_recomputed(summary):
    none_seed = {run.seed: run for run in summary.runs if (run.model, run.method) == ("bert-base-uncased", "none")}
    # Seed 1 has eval_pooled records, seed 2 only per-split ones: both must give the weighted mean.
    assert 100 * none_seed[1].accuracy[("test", "All")] == pytest.approx(48.8375)
    assert round(100 * none_seed[1].accuracy[("test", "All")], 1) == 48.8
    assert none_seed[2].accuracy[("test", "All")] == pytest.approx((560 + 455 + 0.450 * 1200) / 3200)


def test_pooled_disagreement_is_an_error(tmp_path):
    folder = write_run(tmp_path / "bert-base-uncased" / "none" / "seed1", model="bert-base-uncased",
                       perturbation="none", seed=1, dev=dev_at("none", 1), test=by_epoch_test(BERT_TEST["none"][1]))
    metrics = folder / "metrics.jsonl"
    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    for line in lines:
        if line["kind"] == "eval_pooled" and line["epoch"] == 2 and line["role"] == "test":
            line["accuracy"] = 0.60
    metrics.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.raises(ValueError, match=r"metrics\.jsonl: epoch 2 test: eval_pooled accuracy 0\.6000 disagrees"):
        load_runs(runs_dir=tmp_path)


def test_bad_input_errors_name_the_file(tmp_path):
    folder = write_run(tmp_path / "bert-base-uncased" / "smart@adv_step_size=1e-3" / "seed1", model="bert-base-uncased",
                       perturbation="smart", options={"adv_step_size": 1e-5}, seed=1, dev=dev_at("smart", 1),
                       test=by_epoch_test(BERT_TEST["smart"][1]))
    with pytest.raises(ValueError, match=r"run_config\.json: perturbation_options\['adv_step_size'\] = 1e-05"):
        load_runs(runs_dir=tmp_path)
    config = json.loads((folder / "run_config.json").read_text())
    config["perturbation_options"] = {"adv_step_size": 0.001}
    (folder / "run_config.json").write_text(json.dumps(config))
    (folder / "metrics.jsonl").write_text((folder / "metrics.jsonl").read_text() + "{not json\n")
    with pytest.raises(ValueError, match=r"metrics\.jsonl:\d+: not a JSON object"):
        load_runs(runs_dir=tmp_path)


def test_finished_run_with_a_cut_last_metrics_line_is_listed_unusable(tmp_path, capsys):
    """A crash mid-append leaves a last line without newline: the run is listed, not a stop."""
    for seed in (1, 2):
        write_run(tmp_path / "bert-base-uncased" / "none" / f"seed{seed}", model="bert-base-uncased",
                  perturbation="none", seed=seed, dev=dev_at("none", seed),
                  test=by_epoch_test(BERT_TEST["none"][seed]), torn_tail=seed == 2)
    runs = {run.seed: run for run in load_runs(runs_dir=tmp_path)}
    assert runs[1].problem is None
    assert runs[2].problem is not None and "metrics.jsonl line" in runs[2].problem and "cut off" in runs[2].problem
    listed = {(m.method, m.seed): m for m in summarize(runs=list(runs.values())).missing}
    assert listed[("none", 2)].path == runs[2].path
    assert main([str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "- bert-base-uncased / fine-tuning seed 2: finished but metrics.jsonl line 28 (the last) is cut off" in printed


def test_significance_matches_scipy_and_na_cases(summary):
    found = {(c.model, c.method, c.reference): c for c in summary.comparisons}

    def test_all(method: str, seeds) -> list[float]:
        return [100 * pooled_accuracy(BERT_TEST[method][s]) for s in seeds]

    paired = found[("bert-base-uncased", "1-1", "none")]
    expected = stats.ttest_rel(test_all("1-1", [1, 2]), test_all("none", [1, 2]))
    assert paired.test == "paired t-test"
    assert paired.p_value == pytest.approx(expected.pvalue)
    assert paired.difference == pytest.approx(np.mean(test_all("1-1", [1, 2])) - np.mean(test_all("none", [1, 2, 3])))

    versus_smart = found[("bert-base-uncased", "smart_mtdnn", "none")]
    assert versus_smart.p_value == pytest.approx(stats.ttest_rel(test_all("smart_mtdnn", [1, 2, 3]),
                                                                 test_all("none", [1, 2, 3])).pvalue)
    assert ("bert-base-uncased", "smart_mtdnn", "smart_mtdnn") not in found
    assert ("bert-base-uncased", "smart", "smart") not in found

    # Every method is tested against both SMARTs: MT-DNN's (the paper's) and the corrected one.
    for reference in ("smart_mtdnn", "smart"):
        against = found[("bert-base-uncased", "1-1", reference)]
        assert against.test == "paired t-test" and against.reference == reference
        assert against.p_value == pytest.approx(stats.ttest_rel(test_all("1-1", [1, 2]),
                                                                test_all(reference, [1, 2])).pvalue)
        assert against.difference == pytest.approx(np.mean(test_all("1-1", [1, 2]))
                                                   - np.mean(test_all(reference, [1, 2, 3])))
    between = found[("bert-base-uncased", "smart", "smart_mtdnn")]
    assert between.p_value == pytest.approx(stats.ttest_rel(test_all("smart", [1, 2, 3]),
                                                            test_all("smart_mtdnn", [1, 2, 3])).pvalue)
    assert found[("bert-base-uncased", "smart_mtdnn", "smart")].difference == pytest.approx(-between.difference)

    for reference in ("smart_mtdnn", "smart"):
        one_seed = found[("bert-base-uncased", "2-1", reference)]
        assert one_seed.test == "n/a" and one_seed.p_value is None

    welch = found[("packaged-minilm", "1-1", "none")]
    minilm = {m: [100 * pooled_accuracy(v) for _, v in sorted(seeds.items())] for m, seeds in MINILM_TEST.items()}
    assert welch.test == "Welch's t-test"
    assert welch.p_value == pytest.approx(stats.ttest_ind(minilm["1-1"], minilm["none"], equal_var=False).pvalue)
    for reference in ("smart_mtdnn", "smart"):
        no_reference = found[("packaged-minilm", "1-1", reference)]
        assert no_reference.test == "n/a" and no_reference.difference is None
        assert no_reference.detail == f"no finished {reference} runs for packaged-minilm"


def test_missing_and_unfinished_runs_are_listed_not_averaged(summary):
    listed = {(m.model, m.method, m.seed): m for m in summary.missing}
    assert "no run folder" in listed[("bert-base-uncased", "1-1", 3)].reason
    unfinished = listed[("bert-base-uncased", "1-2", 3)]
    assert "unfinished" in unfinished.reason and unfinished.path.name == "seed3"
    assert {("bert-base-uncased", "2-1", 2), ("bert-base-uncased", "2-1", 3)} <= set(listed)
    assert "finished is not true" in listed[("packaged-minilm", "1-1", 5)].reason
    assert summary.cells[("bert-base-uncased", "1-2", "test", "All")].n == 2
    assert summary.cells[("packaged-minilm", "1-1", "test", "All")].n == 2
    assert ("bert-base-uncased", "none", 1) not in listed
    absent = [m for m in summary.missing if m.model == "bert-base-uncased" and m.method == ""]
    absent_labels = absent[0].reason.split("no runs at all of ", 1)[1].split(", ")
    assert "+WordNet_0.5" in absent_labels and not {"+SMART", "+SMART (corrected)"} & set(absent_labels)
    minilm_absent = [m for m in summary.missing if m.model == "packaged-minilm" and m.method == ""]
    assert {"+SMART", "+SMART (corrected)"} <= set(minilm_absent[0].reason.split("no runs at all of ", 1)[1].split(", "))


def test_time_ratios_compare_same_device_only(summary):
    rows = {(r.model, r.method, r.device_name): r for r in summary.time_rows}
    one_one = rows[("bert-base-uncased", "1-1", H200)]
    none_mean = np.mean([0.20, 0.22, 0.21])
    mtdnn_mean = np.mean([0.50, 0.52])  # seed 3 ran on another device
    corrected_mean = np.mean([0.45, 0.47, 0.46])
    assert one_one.seconds_per_update == pytest.approx(np.mean([0.30, 0.31]))
    assert one_one.ratio_to_none == pytest.approx(np.mean([0.30, 0.31]) / none_mean)
    assert one_one.ratio_to_smart_mtdnn == pytest.approx(np.mean([0.30, 0.31]) / mtdnn_mean)
    assert one_one.ratio_to_smart == pytest.approx(np.mean([0.30, 0.31]) / corrected_mean)
    assert one_one.forward_passes_per_update == 2.0 and one_one.backward_passes_per_update == 1.0
    other = rows[("bert-base-uncased", "smart_mtdnn", "Other GPU")]
    assert other.n == 1 and other.ratio_to_none is None and other.ratio_to_smart_mtdnn == pytest.approx(1.0)
    assert other.ratio_to_smart is None  # no corrected-SMART run on that device
    assert rows[("bert-base-uncased", "smart_mtdnn", H200)].forward_passes_per_update == 3.0
    assert rows[("bert-base-uncased", "smart", H200)].ratio_to_smart_mtdnn == pytest.approx(corrected_mean / mtdnn_mean)


def test_perturbation_shares(summary):
    rows = {(r.model, r.method): r for r in summary.perturbation_rows}
    # The paper's 0.003% is its SMART's, MT-DNN's code: set beside the size that code logs.
    mtdnn = rows[("bert-base-uncased", "smart_mtdnn")]
    assert mtdnn.noise_share_percent == pytest.approx(60.0)
    assert mtdnn.mtdnn_logged_share_percent == pytest.approx(100 * np.mean([2e-5, 3e-5, 4e-5]))
    assert (mtdnn.paper_noise_percent, mtdnn.paper_noise_measure, mtdnn.space) == (0.003, "mtdnn_logged",
                                                                                   "embedding output")
    smart = rows[("bert-base-uncased", "smart")]
    assert smart.noise_share_percent == pytest.approx(100 * np.mean([3e-5, 4e-5, 2e-5]))
    assert smart.paper_noise_percent is None and smart.mtdnn_logged_share_percent is None
    assert smart.space == "token embedding"
    one_one = rows[("bert-base-uncased", "1-1")]
    assert one_one.changed_share_percent == pytest.approx(96.0)
    assert one_one.noise_share_percent == pytest.approx(30.0)
    assert (one_one.paper_changed_percent, one_one.paper_changed_kind) == (100.0, "by design")
    assert ("bert-base-uncased", "none") not in rows


def test_markdown_layout_order_and_paper_values(summary):
    text = render_markdown(summary=summary)
    header = "| method | n | dev A1 | dev A2 | dev A3 | dev All | test A1 | test A2 | test A3 | test All |"
    assert header in text
    bert = text.split("## bert-base-uncased (BERT-base)")[1].split("## packaged-minilm")[0]
    rows = [line for line in bert.splitlines() if line.startswith("| +") or line.startswith("| fine-tuning")]
    assert [row.split(" | ")[0] for row in rows] == ["| fine-tuning", "| +SMART", "| +SMART (corrected)", "| +1-1",
                                                     "| +1-2", "| +2-1"]
    none_cells = rows[0].split(" | ")
    assert none_cells[1] == "3"
    all_test = np.mean(expected_percent("none", "test", "All"))
    assert none_cells[-1].startswith(f"{all_test:.2f} ± ") and none_cells[-1].endswith("(48.8) |")
    assert "(49.1) |" in rows[1] and "(56.1)" in rows[1]
    assert rows[2].count("±") == 8 and "(" not in rows[2].split(" | ", 1)[1]  # corrected SMART: no paper value
    assert "± n/a (49.2)" in rows[5]  # 2-1: one seed, paper test All 49.2
    assert paper_values.SMART_LEGEND in text
    assert ("| model | method | Δ vs fine-tuning | test | p | Δ vs +SMART | test | p | Δ vs +SMART (corrected) | test "
            "| p |") in text
    significance = text.split("## Significance")[1].split("## Training time")[0]
    one_one = next(line for line in significance.splitlines() if line.startswith("| bert-base-uncased | +1-1 |"))
    assert one_one.count("paired t-test") == 3  # against fine-tuning and both SMARTs
    assert "| × FT | × SMART | × SMART corr. |" in text
    perturbation = text.split("## Perturbation size")[1].split("## Missing")[0]
    mtdnn_row = next(line for line in perturbation.splitlines() if line.startswith("| bert-base-uncased | +SMART |"))
    assert "| embedding output | 60.0 | 0.003 | 0.003 (MT-DNN-logged) |" in mtdnn_row
    assert "## Missing or unfinished runs" in text and "seed 3: unfinished: no run_summary.json" in text
    for section in ("## Significance (test All)", "## Training time", "## Perturbation size"):
        assert section in text
    assert "paired t-test (3 common seeds)" in text
    minilm = text.split("## packaged-minilm")[1].split("##")[0]
    minilm_rows = [line for line in minilm.splitlines() if line.startswith(("| fine-tuning", "| +"))]
    assert len(minilm_rows) == 2 and not any("(" in row for row in minilm_rows)  # the paper has no such model


def test_cli_writes_csv_and_markdown(runs_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(runs_dir), "--format", "both", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("# ANLI accuracy (%)")
    assert (out / "summary.md").read_text().strip() == printed.strip()
    with open(out / "accuracy.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == (6 + 2) * 2 * 4
    row = next(r for r in rows if (r["model"], r["method"], r["role"], r["round"]) == ("bert-base-uncased", "2-1", "test", "All"))
    assert (row["n"], row["std"], row["paper"]) == ("1", "", "49.2")
    assert float(row["mean"]) == pytest.approx(100 * pooled_accuracy(BERT_TEST["2-1"][1]), abs=1e-4)
    written = write_csv(summary=summarize(runs=load_runs(runs_dir=runs_dir)), out_dir=tmp_path / "again")
    assert sorted(p.name for p in written) == sorted(
        ["accuracy.csv", "significance.csv", "time.csv", "perturbation.csv", "missing.csv", "runs.csv"])
    with pytest.raises(SystemExit):
        main([str(runs_dir), "--format", "csv"])
    assert main([str(tmp_path / "nowhere")]) == 1
    assert "no such folder" in capsys.readouterr().err


def test_table2_smart_rows_are_mtdnns_with_the_paper_value_and_the_corrected_one_without(summary):
    assert table2.METHODS[:3] == ("none", "smart_mtdnn", "smart")
    assert set(table2.METHODS) < set(table2.TABLE23_METHODS) and table3.METHODS[:3] == table2.METHODS[:3]
    text = table2.render_all_table(summary=summary, title="Table 2", methods=table2.METHODS,
                                   models=("bert-base-uncased",))
    assert paper_values.SMART_LEGEND in text
    rows = {line.split(" | ")[0][2:]: line.strip("|").split(" | ") for line in text.splitlines()
            if line.startswith(("| +", "| fine-tuning"))}
    mtdnn, corrected = rows["+SMART"], rows["+SMART (corrected)"]
    # +SMART reads the smart_mtdnn runs and sits beside the paper's +SMART (dev 49.0, test 49.1)
    assert mtdnn[1] == "3"
    assert mtdnn[2] == f"{np.mean(expected_percent('smart_mtdnn', 'dev', 'All')):.2f} ± " \
        f"{np.std(expected_percent('smart_mtdnn', 'dev', 'All'), ddof=1):.2f} (49.0)"
    assert mtdnn[3].strip() == f"{np.mean(expected_percent('smart_mtdnn', 'test', 'All')):.2f} ± " \
        f"{np.std(expected_percent('smart_mtdnn', 'test', 'All'), ddof=1):.2f} (49.1)"
    # +SMART (corrected) reads the smart runs, and the paper has no value for it
    assert corrected[1] == "3" and "(" not in " ".join(corrected[2:])
    assert corrected[3].strip().startswith(f"{np.mean(expected_percent('smart', 'test', 'All')):.2f} ± ")
    assert np.mean(expected_percent("smart", "test", "All")) != pytest.approx(
        np.mean(expected_percent("smart_mtdnn", "test", "All")))
