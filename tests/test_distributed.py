"""DDP through ``torchrun``: two Gloo processes on CPU give what one process gives with the same global batch.

A tiny BERT without dropout (dropout masks are drawn per rank, so they are the one thing
that legitimately differs) is trained by ``train.py`` under ``torch.distributed.run`` and,
in this process, by ``main()``; metrics and final weights must agree to float tolerance.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import REPO_ROOT
from mt_dnn.checkpoint import CheckpointManager
from mt_dnn.cli_train import main as train_main
from tiny_models import tiny_bert, write_anli_like


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # as the torchrun workers (OMP_NUM_THREADS=1); tiny matrices gain nothing from more threads
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _without_dropout(folder):
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    config["hidden_dropout_prob"] = config["attention_probs_dropout_prob"] = 0.0
    config_path.write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    task_def = root / "anli_no_dropout.yml"
    task_def.write_text((REPO_ROOT / "task_defs" / "anli.yml").read_text().replace("dropout_p: 0.1", "dropout_p: 0.0"))
    return {"model": _without_dropout(tiny_bert(root / "bert")), "task_def": task_def, "cache": root / "cache",
            "data": write_anli_like(root / "anli", rounds=("R1",), sizes={"train": 48, "dev": 22, "test": 21})}


def _args(setup, out, perturbation, *extra):
    # 48 training examples in batches of 8: every global batch splits 4 + 4 over two ranks
    return ["--model", str(setup["model"]), "--task_def", str(setup["task_def"]), "--data_dir", str(setup["data"]),
            "--cache_dir", str(setup["cache"]), "--train_datasets", "anli:r1_train",
            "--test_datasets", "anli:r1_dev,anli:r1_test", "--epochs", "2", "--batch_size", "8",
            "--max_seq_len", "48", "--learning_rate", "1e-3", "--seed", "5", "--perturbation", perturbation,
            "--no_progress", "--output_dir", str(out), *extra]


def _torchrun(args, *, nproc=2):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               str(REPO_ROOT / "train.py"), *args]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def two_process_runs():
    """Output folders of the uninterrupted two-process runs, by perturbation (filled by the first test)."""
    return {}


def _records(out, kind):
    return [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


def _weights(out):
    return CheckpointManager(out / "checkpoints").load_latest()[1]["model"]


@pytest.mark.parametrize("perturbation", ["none", "smart", "1-1"])
def test_two_gloo_processes_match_one_process(setup, tmp_path, perturbation, two_process_runs):
    one, two = tmp_path / "one", tmp_path / "two"
    assert train_main(_args(setup, one, perturbation)) == 0
    done = _torchrun(_args(setup, two, perturbation))
    assert done.returncode == 0, done.stderr[-3000:]
    two_process_runs[perturbation] = two

    # one set of results, written by rank 0 alone
    assert done.stderr.count("INFO mt_dnn.trainer: checkpoint") == 2, done.stderr[-3000:]
    assert json.loads((two / "run_config.json").read_text())["world_size"] == 2
    assert json.loads((two / "run_summary.json").read_text())["updates"] == 12
    assert len((two / "predictions" / "epoch2_anli_r1_test.jsonl").read_text().splitlines()) == 21

    for a, b in zip(_records(one, "train_epoch"), _records(two, "train_epoch"), strict=True):
        # the ranks' disjoint shares add up to every training example once per epoch
        assert a["examples"] == b["examples"] == 48 and a["updates"] == b["updates"] == 6
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
        assert ("perturbation" in a) == ("perturbation" in b) == (perturbation != "none")
        if perturbation == "1-1":  # deterministic noise: the provider's figures must agree too
            assert b["perturbation"]["changed_share"] == pytest.approx(a["perturbation"]["changed_share"], rel=1e-6)
            assert b["perturbation"]["adv_loss"] == pytest.approx(a["perturbation"]["adv_loss"], abs=1e-6)
    # evaluation is sharded (22 and 21 examples: uneven shares) and gathered
    for a, b in zip(_records(one, "eval"), _records(two, "eval"), strict=True):
        assert (a["split"], a["examples"], a["accuracy"]) == (b["split"], b["examples"], b["accuracy"])
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
    wa, wb = _weights(one), _weights(two)
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wb[name], wa[name], rtol=1e-4, atol=1e-5, msg=name)


def test_resume_under_torchrun_is_exact(setup, tmp_path, two_process_runs):
    """Both ranks resume from the checkpoint rank 0 picks (past a corrupt newest one) and end bit for bit
    where the uninterrupted two-process run ended: per-rank RNGs and figures are restored."""
    reference = two_process_runs.get("smart")
    if reference is None:  # this test run alone
        reference = tmp_path / "reference"
        assert _torchrun(_args(setup, reference, "smart")).returncode == 0
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    (out / "run_summary.json").unlink()
    newest, previous = CheckpointManager(out / "checkpoints").step_checkpoints()
    assert (newest.name, previous.name) == ("step-000000012.pt", "step-000000006.pt")
    newest.write_bytes(newest.read_bytes()[:-10])  # as if cut short

    done = _torchrun(_args(setup, out, "smart", "--resume"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "falling back to the previous checkpoint" in done.stderr
    assert "resumed from" in done.stderr and "step-000000006.pt" in done.stderr
    wa, wb = _weights(reference), _weights(out)
    assert all(torch.equal(wa[name], wb[name]) for name in wa)
    strip = lambda rs: [{k: v for k, v in r.items() if "time" not in k and "second" not in k} for r in rs]
    for kind in ("train_epoch", "eval", "eval_pooled"):
        assert strip(_records(out, kind)) == strip(_records(reference, kind))
