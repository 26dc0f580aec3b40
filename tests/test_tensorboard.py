"""--tensorboard: the event file holds every scalar of metrics.jsonl, read back with tensorboard's own reader."""

from __future__ import annotations

import json
import sys

import pytest

pytest.importorskip("tensorboard", reason="the tensorboard extra (pip install -e .[tensorboard]) is needed")

from mt_dnn.cli_train import main as train_main  # noqa: E402
from mt_dnn.tensorboard_log import TENSORBOARD_FOLDER, TensorBoardMetricsLog, record_scalars  # noqa: E402
from tiny_models import SIGNAL_INIT, tiny_bert, write_anli_like  # noqa: E402


def _events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {tag: {event.step: event.value for event in accumulator.Scalars(tag)}
            for tag in accumulator.Tags()["scalars"]}


def _args(tmp_path, out, *extra):
    model = tiny_bert(tmp_path / "model", initializer_range=SIGNAL_INIT)
    data = write_anli_like(tmp_path / "anli", sizes={"train": 16, "dev": 8, "test": 8})
    return ["--model", str(model), "--data_dir", str(data), "--cache_dir", str(tmp_path / "cache"),
            "--train_datasets", "anli:r1_train", "--test_datasets", "anli:r1_dev,anli:r1_test", "--epochs", "2",
            "--batch_size", "8", "--max_seq_len", "64", "--no_progress", "--no_export", "--output_dir", str(out),
            *extra]


def test_event_file_holds_every_metrics_scalar(tmp_path):
    out = tmp_path / "run"
    assert train_main(_args(tmp_path, out, "--perturbation", "1-1", "--tensorboard")) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    events = _events(out / TENSORBOARD_FOLDER)
    expected = 0
    for record in records:
        for tag, value in record_scalars(record).items():
            assert events[tag][record["global_step"]] == pytest.approx(value, rel=1e-6, abs=1e-12), tag
            expected += 1
    # the tags a user looks for, each with one point per epoch
    epoch = next(r for r in records if r["kind"] == "train_epoch")
    for tag in ("train/train_loss", "train/seconds_per_update", "train/perturbation/noise_share",
                "train/perturbation/changed_share", "eval/anli:r1_dev/accuracy", "eval/anli:r1_test/loss",
                "eval_pooled/anli:dev/accuracy"):
        assert len(events[tag]) == 2, tag
    assert events["train/perturbation/noise_share"][epoch["global_step"]] == pytest.approx(
        epoch["perturbation"]["noise_share"], rel=1e-6)
    assert sum(len(points) for points in events.values()) == expected  # nothing else, nothing twice


def test_resume_hides_the_events_of_lost_updates(tmp_path):
    path, folder = tmp_path / "metrics.jsonl", tmp_path / "tb"
    log = TensorBoardMetricsLog(path, log_dir=folder)
    for step in (1, 2, 3):
        log.append({"kind": "train_epoch", "global_step": step, "train_loss": float(step)})
    log.close()
    resumed = TensorBoardMetricsLog(path, log_dir=folder)
    resumed.truncate(1)  # the checkpoint had seen the first record only
    resumed.append({"kind": "train_epoch", "global_step": 2, "train_loss": 20.0})
    resumed.close()
    assert _events(folder)["train/train_loss"] == {1: 1.0, 2: 20.0}


def test_missing_tensorboard_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as without the package
    out = tmp_path / "run"
    assert train_main(_args(tmp_path, out, "--tensorboard")) == 2
    error = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(error) == 1 and "--tensorboard" in error[0] and "pip install" in error[0]
    assert not (out / "run_config.json").exists() and not (out / TENSORBOARD_FOLDER).exists()
