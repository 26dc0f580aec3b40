"""experiments.plots draws real PNGs of the expected size from a synthetic runs folder."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from experiments import plots
from experiments.summarize import load_runs, summarize
import synthetic_runs


def write_run(folder: Path, *, model: str, perturbation: str, seed: int, test_all: float,
              options: dict | None = None, noise_share: float | None = None, logged: float | None = None,
              finished: bool = True) -> None:
    """A two-epoch run; epoch 1 is best on dev, test per round = test_all (plus seed / 1000)."""
    shift = seed / 1000
    synthetic_runs.write_run(
        folder, model=model, perturbation=perturbation, seed=seed, options=options, finished=finished,
        dev={1: (0.50 + shift,) * 3, 2: (0.45 + shift,) * 3}, test={1: (test_all + shift,) * 3, 2: (test_all + shift,) * 3},
        pooled=False, seconds_per_update=0.2, passes=(2.0, 1.0), best_epoch=1, updates_per_epoch=10,
        shares=None if noise_share is None else [(1.0, noise_share)] * 2,
        logged=None if logged is None else [logged] * 2)


@pytest.fixture(scope="module")
def sweep_runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    model = "bert-base-uncased"
    for seed in (1, 2):
        write_run(root / model / "none" / f"seed{seed}", model=model, perturbation="none", seed=seed, test_all=0.48)
        # MT-DNN's SMART (the paper's sweep): what it adds is ≈ 60% of the embedding output at every
        # step; what MT-DNN's code logs is small and grows with the step. x must be the logged size.
        write_run(root / model / "smart_mtdnn" / f"seed{seed}", model=model, perturbation="smart_mtdnn", seed=seed,
                  test_all=0.49, options={"adv_step_size": 1e-5}, noise_share=0.60, logged=3e-5)
        write_run(root / model / "smart_mtdnn@adv_step_size=1e-3" / f"seed{seed}", model=model,
                  perturbation="smart_mtdnn", seed=seed, test_all=0.485, options={"adv_step_size": 1e-3},
                  noise_share=0.61, logged=3e-3)
        write_run(root / model / "1-1" / f"seed{seed}", model=model, perturbation="1-1", seed=seed, test_all=0.495,
                  options={"noise_size": 0.5}, noise_share=0.3)
    write_run(root / model / "smart_mtdnn@adv_step_size=1e-1" / "seed1", model=model, perturbation="smart_mtdnn",
              seed=1, test_all=0.45, options={"adv_step_size": 1e-1}, noise_share=0.62, logged=0.3)
    # The corrected smart, swept too: x = its applied ‖δ‖ / ‖token embedding‖ (it logs nothing else).
    write_run(root / model / "smart" / "seed1", model=model, perturbation="smart", seed=1, test_all=0.488,
              options={"adv_step_size": 1e-5}, noise_share=2e-4)
    write_run(root / model / "smart@adv_step_size=1e-3" / "seed1", model=model, perturbation="smart", seed=1,
              test_all=0.482, options={"adv_step_size": 1e-3}, noise_share=2e-2)
    # noise_size only in the folder name: the loader must take it from there.
    write_run(root / model / "1-1@noise_size=0.3" / "seed1", model=model, perturbation="1-1", seed=1,
              test_all=0.488, noise_share=0.18)
    write_run(root / model / "1-1@noise_size=1.0" / "seed1", model=model, perturbation="1-1", seed=1,
              test_all=0.47, options={"noise_size": 1.0}, noise_share=0.6)
    return root


def read_png(path: Path) -> np.ndarray:
    assert path.is_file() and path.stat().st_size > 0
    return imread(path)


def test_sweep_points_come_from_measured_noise_and_options(sweep_runs):
    summary = summarize(runs=load_runs(runs_dir=sweep_runs))
    smart = plots.smart_sweep_points(summary=summary)["bert-base-uncased"]  # default: smart_mtdnn, the paper's
    assert [p.method for p in smart] == ["smart_mtdnn", "smart_mtdnn@adv_step_size=1e-3",
                                         "smart_mtdnn@adv_step_size=1e-1"]
    assert [p.x for p in smart] == pytest.approx([3e-3, 0.3, 30.0])  # the MT-DNN-logged size, not the applied
    assert [p.applied_percent for p in smart] == pytest.approx([60.0, 61.0, 62.0])
    assert [p.logged_percent for p in smart] == pytest.approx([3e-3, 0.3, 30.0])
    assert [p.n for p in smart] == [2, 2, 1]
    assert smart[0].test_mean == pytest.approx(49.15)
    corrected = plots.smart_sweep_points(summary=summary, variant="smart")["bert-base-uncased"]
    assert [p.method for p in corrected] == ["smart", "smart@adv_step_size=1e-3"]
    assert [p.x for p in corrected] == pytest.approx([0.02, 2.0])
    assert all(p.logged_percent is None for p in corrected)
    assert [(v, m) for v, m, _ in plots.smart_sweeps(summary=summary)] == [("smart_mtdnn", "bert-base-uncased"),
                                                                         ("smart", "bert-base-uncased")]
    with pytest.raises(ValueError, match="SMART variant 'adversarial'"):
        plots.smart_sweep_points(summary=summary, variant="adversarial")
    noise = plots.noise_size_sweep_points(summary=summary)["bert-base-uncased"]
    assert [p.x for p in noise] == [0.3, 0.5, 1.0]
    assert noise[1].test_std == pytest.approx(np.std([49.6, 49.7], ddof=1))


def test_plots_write_images_of_the_expected_size(sweep_runs, tmp_path):
    written = plots.make_plots(runs_dir=sweep_runs, out_dir=tmp_path)
    assert [p.name for p in written] == [plots.FIGURE3_NAME, plots.BARS_NAME]
    height = int(plots.FIGURE_HEIGHT_IN * plots.DPI)
    figure3 = read_png(tmp_path / plots.FIGURE3_NAME)
    # a panel per SMART variant (MT-DNN's, corrected) + the 1-1 panel
    assert figure3.shape[:2] == (height, int(3 * plots.PANEL_WIDTH_IN * plots.DPI))
    bars = read_png(tmp_path / plots.BARS_NAME)
    assert bars.shape[:2] == (height, int(plots.BAR_PANEL_WIDTH_IN * plots.DPI))
    for image in (figure3, bars):
        assert image[..., :3].std() > 0.05  # something was drawn, not a blank canvas
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes leave no temporaries


def test_one_smart_panel_per_model(sweep_runs, tmp_path):
    root = tmp_path / "runs"
    for model in ("bert-base-uncased", "roberta-large"):
        for method, step, logged in (("smart_mtdnn", 1e-5, 3e-5), ("smart_mtdnn@adv_step_size=1e-3", 1e-3, 3e-3)):
            write_run(root / model / method / "seed1", model=model, perturbation="smart_mtdnn", seed=1, test_all=0.5,
                      options={"adv_step_size": step}, noise_share=0.6, logged=logged)
    written = plots.plot_figure3(summary=summarize(runs=load_runs(runs_dir=root)), out_dir=tmp_path / "out")
    assert read_png(written[0]).shape[:2] == (int(plots.FIGURE_HEIGHT_IN * plots.DPI),
                                              int(2 * plots.PANEL_WIDTH_IN * plots.DPI))


def test_figures_without_runs_are_skipped_with_a_log_line(tmp_path, caplog):
    root = tmp_path / "runs"
    write_run(root / "bert-base-uncased" / "none" / "seed1", model="bert-base-uncased", perturbation="none", seed=1,
              test_all=0.48)
    write_run(root / "bert-base-uncased" / "1-1" / "seed1", model="bert-base-uncased", perturbation="1-1", seed=1,
              test_all=0.49, options={"noise_size": 0.5}, noise_share=0.3)
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="experiments.plots"):
        written = plots.make_plots(runs_dir=root, out_dir=out)
    assert [p.name for p in written] == [plots.BARS_NAME]
    assert not (out / plots.FIGURE3_NAME).exists()
    assert f"skipping {plots.FIGURE3_NAME}" in caplog.text

    unfinished = tmp_path / "unfinished"
    write_run(unfinished / "bert-base-uncased" / "none" / "seed1", model="bert-base-uncased", perturbation="none",
              seed=1, test_all=0.48, finished=False)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="experiments.plots"):
        assert plots.make_plots(runs_dir=unfinished, out_dir=tmp_path / "out2") == []
    assert f"skipping {plots.BARS_NAME}" in caplog.text


def test_cli(sweep_runs, tmp_path):
    assert plots.main([str(sweep_runs), "--out", str(tmp_path)]) == 0
    assert (tmp_path / plots.FIGURE3_NAME).is_file() and (tmp_path / plots.BARS_NAME).is_file()
