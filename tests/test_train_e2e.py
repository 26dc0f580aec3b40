"""End to end through ``train.py``'s ``main()``: outputs, resume, multi-task, predict.py, real MiniLM + ANLI."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from mt_dnn.checkpoint import CheckpointManager
from mt_dnn.cli_predict import main as predict_main
from mt_dnn.cli_train import main as train_main
from conftest import REPO_ROOT
from tiny_models import mnli_like, tiny_bert, write_anli_like


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {"model": tiny_bert(root / "bert"), "data": write_anli_like(root / "anli", rounds=("R1", "R2")),
            "cache": root / "cache", "root": root}


def _args(tiny, out, *extra):
    return ["--model", str(tiny["model"]), "--data_dir", str(tiny["data"]), "--cache_dir", str(tiny["cache"]),
            "--train_datasets", "anli:r1_train,anli:r2_train", "--test_datasets", "anli:r1_dev,anli:r2_dev,anli:r1_test",
            "--epochs", "2", "--batch_size", "8", "--max_seq_len", "64", "--learning_rate", "1e-3", "--seed", "3",
            "--no_progress", "--output_dir", str(out), *extra]


def _records(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _final_weights(out):
    path, state = CheckpointManager(out / "checkpoints").load_latest()
    return state["model"]


def test_outputs_are_complete_and_well_formed(tiny, tmp_path):
    out = tmp_path / "run"
    assert train_main(_args(tiny, out)) == 0
    config = json.loads((out / "run_config.json").read_text())
    assert config["perturbation"] == "none" and config["versions"]["torch"] == torch.__version__
    records = _records(out)
    kinds = [r["kind"] for r in records]
    assert kinds.count("train_epoch") == 2 and kinds.count("eval") == 6 and kinds.count("eval_pooled") == 4
    epoch = next(r for r in records if r["kind"] == "train_epoch")
    assert epoch["updates"] == 12 and epoch["forward_passes_per_update"] == 1.0 and epoch["seconds_per_update"] > 0
    assert math_isfinite(epoch["train_loss"]) and "perturbation" not in epoch
    pooled = [r for r in records if r["kind"] == "eval_pooled" and r["role"] == "dev" and r["epoch"] == 2][0]
    evals = {r["split"]: r for r in records if r["kind"] == "eval" and r["epoch"] == 2}
    assert pooled["examples"] == 48 and pooled["splits"] == ["r1_dev", "r2_dev"]
    assert pooled["accuracy"] == pytest.approx((evals["r1_dev"]["accuracy"] + evals["r2_dev"]["accuracy"]) / 2)
    predictions = (out / "predictions" / "epoch2_anli_r1_test.jsonl").read_text().splitlines()
    first = json.loads(predictions[0])
    assert len(predictions) == 24 and set(first["probabilities"]) == {"e", "n", "c"} and first["gold"] in "enc"
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["finished"] and summary["updates"] == 24 and summary["best_epoch"] in (1, 2)
    assert (out / "checkpoints" / "best.pt").exists() and (out / "model" / "config.json").exists()

    # predict.py on a split and on unlabelled pairs, from the saved run alone
    pred_out = tmp_path / "pred.jsonl"
    assert predict_main(["--run_dir", str(out), "--split", "r2_test", "--output", str(pred_out)]) == 0
    assert len(pred_out.read_text().splitlines()) == 24
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"context": "the dog sleeps .", "hypothesis": "a dog is awake ."}) + "\n")
    assert predict_main(["--run_dir", str(out), "--input", str(pairs), "--output", str(pred_out),
                         "--checkpoint", "latest"]) == 0
    row = json.loads(pred_out.read_text())
    assert row["prediction"] in "enc" and sum(row["probabilities"].values()) == pytest.approx(1, abs=1e-4)


def math_isfinite(x):
    import math

    return x is not None and math.isfinite(x)


def test_resume_after_stopping_gives_identical_weights(tiny, tmp_path):
    full, split = tmp_path / "full", tmp_path / "split"
    extra = ["--grad_accumulation", "2", "--perturbation", "none"]
    assert train_main(_args(tiny, full, *extra)) == 0
    assert train_main(_args(tiny, split, *extra, "--stop_at_step", "4")) == 0  # mid-epoch 1 (6 updates/epoch)
    assert not (split / "run_summary.json").exists()
    assert train_main(_args(tiny, split, *extra, "--resume")) == 0
    a, b = _final_weights(full), _final_weights(split)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run ended with different weights"
    strip = lambda rs: [{k: v for k, v in r.items() if "time" not in k and "second" not in k} for r in rs]
    assert strip(_records(full)) == strip(_records(split))


def test_existing_output_needs_resume_or_overwrite(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_main(_args(tiny, out, "--epochs", "1")) == 0
    before = sorted(p.name for p in out.rglob("*"))
    assert train_main(_args(tiny, out, "--epochs", "1")) == 2
    assert "holds another run's results" in capsys.readouterr().err
    assert sorted(p.name for p in out.rglob("*")) == before
    assert train_main(_args(tiny, out, "--epochs", "1", "--overwrite")) == 0


def test_two_tasks_trained_together_are_both_evaluated(tiny, tmp_path):
    mnli = mnli_like(tmp_path / "mnli")
    out = tmp_path / "run"
    args = ["--model", str(tiny["model"]), "--cache_dir", str(tiny["cache"]),
            "--task_def", str(REPO_ROOT / "task_defs" / "anli.yml"), str(REPO_ROOT / "task_defs" / "mnli_example.yml"),
            "--data_dir", str(tiny["data"]), f"mnli={mnli}", "--train_datasets", "anli:r1_train,mnli",
            "--test_datasets", "anli:r1_dev,mnli", "--epochs", "1", "--batch_size", "8", "--max_seq_len", "64",
            "--no_progress", "--output_dir", str(out)]
    assert train_main(args) == 0
    evals = {(r["task"], r["split"]) for r in _records(out) if r["kind"] == "eval"}
    assert evals == {("anli", "r1_dev"), ("mnli", "dev_matched")}
    epoch = next(r for r in _records(out) if r["kind"] == "train_epoch")
    assert epoch["updates"] == 6 + 5  # 48/8 anli batches + 40/8 mnli batches, mixed in one epoch


def test_real_minilm_on_real_anli(minilm_path, anli_dir, tmp_path):
    out = tmp_path / "run"
    args = ["--model", "packaged-minilm", "--data_dir", str(anli_dir), "--cache_dir", str(tmp_path / "cache"),
            "--train_datasets", "anli:r1_dev", "--test_datasets", "anli:r1_test", "--max_train_examples", "64",
            "--max_eval_examples", "64", "--epochs", "1", "--batch_size", "16", "--max_seq_len", "128",
            "--no_progress", "--output_dir", str(out)]
    assert train_main(args) == 0
    records = _records(out)
    epoch = next(r for r in records if r["kind"] == "train_epoch")
    evaluation = next(r for r in records if r["kind"] == "eval")
    assert epoch["updates"] == 4 and math_isfinite(epoch["train_loss"])
    assert evaluation["examples"] == 64 and 0.0 <= evaluation["accuracy"] <= 1.0
    assert len((out / "predictions" / "epoch1_anli_r1_test.jsonl").read_text().splitlines()) == 64
    shutil.rmtree(out)


def test_help_lists_every_flag_and_provider():
    from mt_dnn.cli_train import build_parser
    from noise_training.registry import provider_names

    text = build_parser().format_help()
    flags = ("--task_def --data_dir --train_datasets --test_datasets --model --max_seq_len --perturbation --epochs "
             "--batch_size --learning_rate --warmup --grad_clip --grad_accumulation --seed --output_dir --resume "
             "--max_train_examples --noise_size --top_k --noise_ratio --adv_alpha --adv_step_size --adv_noise_var "
             "--adv_epsilon --adv_k --adv_p_norm").split()
    assert [flag for flag in flags if flag not in text] == []
    listing = text.split("perturbation providers (--perturbation NAME):")[1]
    assert all(f"\n  {name} " in listing for name in provider_names())
