"""Crash and resume: a real ``train.py`` process is killed (SIGKILL inside a training step between
checkpoints, SIGKILL in the middle of a checkpoint write) or stopped by SIGINT/SIGTERM, resumed with
``--resume``, and must end with exactly the weights and metrics of an uninterrupted run; so must a
run with ``1-1`` or ``smart`` stopped mid-epoch. Also: a corrupt newest checkpoint, and non-finite
values.

The kills land where the test says, not in a timing window: the process runs through
``tests/train_hooks.py``, which pauses it inside a given step or checkpoint write and says so in a
marker file; the test then kills it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import threading
import time

import pytest
import torch

from conftest import REPO_ROOT
from mt_dnn.checkpoint import CheckpointManager
from mt_dnn.cli_train import main as train_main
from tiny_models import SIGNAL_INIT, tiny_anli_setup, tiny_bert
from train_runs import start_training, wait_for

UPDATES_PER_EPOCH = 30  # 120 examples in batches of 4


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_anli_setup(tmp_path_factory.mktemp("crash"), train=120, dev=16)


def _args(tiny, out, *extra):
    # dropout stays on (the BERT default): resuming must restore every RNG to match
    return ["--model", str(tiny["model"]), "--data_dir", str(tiny["data"]), "--cache_dir", str(tiny["cache"]),
            "--train_datasets", "anli:r1_train", "--test_datasets", "anli:r1_dev", "--epochs", "2",
            "--batch_size", "4", "--max_seq_len", "48", "--learning_rate", "1e-3", "--seed", "11",
            "--save_every", "10", "--keep_checkpoints", "2", "--no_progress", "--output_dir", str(out), *extra]


@pytest.fixture(scope="module")
def reference(tiny):
    """The uninterrupted run."""
    out = tiny["root"] / "reference"
    assert train_main(_args(tiny, out)) == 0
    return out


def _launch(tiny, out, *extra, env_extra=None):
    return start_training(_args(tiny, out, *extra), log_path=tiny["root"] / f"{out.name}.log", hooks=True,
                          env_extra=env_extra)


def _kill(process, sig=signal.SIGKILL) -> int:
    process.send_signal(sig)
    return process.wait(timeout=60)


def _final_weights(out):
    return CheckpointManager(out / "checkpoints").load_latest()[1]["model"]


def _records(out):
    no_times = lambda r: {k: v for k, v in r.items() if "time" not in k and "second" not in k}
    return [no_times(json.loads(line)) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _assert_same_as_reference(out, reference):
    a, b = _final_weights(reference), _final_weights(out)
    assert a.keys() == b.keys()
    different = [name for name in a if not torch.equal(a[name], b[name])]
    assert not different, f"resumed run ended with different weights: {different[:5]}"
    assert _records(out) == _records(reference)
    assert json.loads((out / "run_summary.json").read_text())["updates"] == 2 * UPDATES_PER_EPOCH


def _steps(out):
    return [int(p.stem.split("-")[1]) for p in CheckpointManager(out / "checkpoints").step_checkpoints()]


def test_sigkill_between_checkpoints_then_resume(tiny, reference):
    out = tiny["root"] / "kill_between"
    marker = tiny["root"] / "kill_between.paused"
    # paused inside update 15: updates 11-14 are done, and lost with the process
    process = _launch(tiny, out, env_extra={"TEST_PAUSE_AT_STEP": "15", "TEST_PAUSE_MARKER": str(marker)})
    wait_for(process, marker.exists, what="the pause inside update 15")
    assert _kill(process) == -signal.SIGKILL
    assert not (out / "run_summary.json").exists() and _steps(out) == [10]
    assert train_main(_args(tiny, out, "--resume")) == 0
    _assert_same_as_reference(out, reference)


def test_sigkill_during_a_checkpoint_write_then_resume(tiny, reference, caplog):
    out = tiny["root"] / "kill_writing"
    marker = tiny["root"] / "kill_writing.paused"
    # the second write (update 20) pauses with its temporary file complete, not yet renamed
    process = _launch(tiny, out, env_extra={"TEST_PAUSE_AT_CHECKPOINT_WRITE": "2", "TEST_PAUSE_MARKER": str(marker)})
    wait_for(process, marker.exists, what="the pause in the write of the checkpoint of update 20")
    folder = out / "checkpoints"
    assert (folder / "step-000000010.json").exists() and any(
        p.name.startswith(".step-000000020.pt.") and p.name.endswith(".tmp") for p in folder.iterdir())
    assert _kill(process) == -signal.SIGKILL
    # killed with the new checkpoint's bytes in a temporary file, not yet renamed
    assert not (folder / "step-000000020.pt").exists() and any(p.suffix == ".tmp" for p in folder.iterdir())
    with caplog.at_level(logging.INFO, logger="mt_dnn.trainer"):
        assert train_main(_args(tiny, out, "--resume")) == 0
    assert "resumed from" in caplog.text and "step-000000010.pt" in caplog.text
    assert not any(p.suffix == ".tmp" for p in folder.iterdir())
    _assert_same_as_reference(out, reference)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_checkpoints_before_exiting_then_resume(tiny, reference, caplog, sig):
    """A real SIGINT (Ctrl-C) or SIGTERM to this process while main() trains in it: checkpoint, exit, resume."""
    out = tiny["root"] / sig.name
    manifest = out / "checkpoints" / "step-000000010.json"
    sent = threading.Event()

    def interrupt_after_the_first_checkpoint():
        deadline = time.monotonic() + 120
        while not manifest.exists():
            if time.monotonic() > deadline:
                return
            time.sleep(0.005)
        os.kill(os.getpid(), sig)
        sent.set()

    # a SIGINT arriving after training has ended must not stop the test session
    previous = signal.signal(sig, lambda *_: None)
    try:
        thread = threading.Thread(target=interrupt_after_the_first_checkpoint, daemon=True)
        thread.start()
        with caplog.at_level(logging.INFO, logger="mt_dnn.trainer"):
            code = train_main(_args(tiny, out))
        thread.join(timeout=130)
    finally:
        signal.signal(sig, previous)
    assert sent.is_set() and code == 128 + sig  # a stop, not a success
    assert f"{sig.name} received" in caplog.text and "stopped (signal)" in caplog.text
    assert 10 < max(_steps(out)) < 2 * UPDATES_PER_EPOCH  # written on the way out, off the --save_every grid
    assert not (out / "run_summary.json").exists()
    assert train_main(_args(tiny, out, "--resume")) == 0
    _assert_same_as_reference(out, reference)


def test_corrupt_newest_checkpoint_falls_back_to_the_previous(tiny, reference, caplog):
    out = tiny["root"] / "corrupt"
    shutil.copytree(reference, out)
    (out / "run_summary.json").unlink()
    newest = CheckpointManager(out / "checkpoints").step_checkpoints()[0]
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        assert train_main(_args(tiny, out, "--resume")) == 0
    assert "corrupt checkpoint" in caplog.text and "falling back to the previous checkpoint" in caplog.text
    _assert_same_as_reference(out, reference)


# -- mid-epoch resume with a perturbation ----------------------------------------------------------

# SMART at settings where its term shows on this model (the defaults move the input by 1e-5: a resume
# that lost the noise's random state could then still end bit for bit where the reference ends)
PERTURBATIONS = {"1-1": [], "smart": ["--adv_step_size", "1e-1", "--adv_noise_var", "1e-2"]}


@pytest.fixture(scope="module")
def with_signal(tiny):
    """A model whose predictions depend on its input (dropout on), so the adversarial term is not ~0."""
    return {**tiny, "model": tiny_bert(tiny["root"] / "bert_signal", initializer_range=SIGNAL_INIT)}


def _perturbed_args(setup, out, perturbation, *extra):
    # 40 examples in batches of 4: 10 updates per epoch, 20 in all
    return _args(setup, out, "--perturbation", perturbation, *PERTURBATIONS[perturbation],
                 "--max_train_examples", "40", *extra)


@pytest.mark.parametrize("perturbation", list(PERTURBATIONS))
def test_mid_epoch_resume_with_a_perturbation_is_exact(with_signal, perturbation, tmp_path):
    full, split = tmp_path / "full", tmp_path / "split"
    assert train_main(_perturbed_args(with_signal, full, perturbation)) == 0
    epochs = [r for r in _records(full) if r["kind"] == "train_epoch"]
    assert len(epochs) == 2 and epochs[0]["updates"] == 10
    assert epochs[0]["perturbation"]["adv_loss"] > 1e-3, f"fixture degenerate: {epochs[0]['perturbation']}"
    assert train_main(_perturbed_args(with_signal, split, perturbation, "--stop_at_step", "7")) == 0
    assert _steps(split) == [7] and not (split / "run_summary.json").exists()  # stopped inside epoch 1
    assert train_main(_perturbed_args(with_signal, split, perturbation, "--resume")) == 0
    a, b = _final_weights(full), _final_weights(split)
    different = [name for name in a if not torch.equal(a[name], b[name])]
    assert not different, f"resumed {perturbation} run ended with different weights: {different[:5]}"
    assert _records(split) == _records(full)  # the perturbation's figures included


# -- non-finite values --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def no_dropout(tiny):
    """A model and task definition without dropout: then nothing in training is random."""
    folder = tiny_bert(tiny["root"] / "bert_no_dropout")
    config = json.loads((folder / "config.json").read_text())
    config["hidden_dropout_prob"] = config["attention_probs_dropout_prob"] = 0.0
    (folder / "config.json").write_text(json.dumps(config))
    task_def = tiny["root"] / "anli_no_dropout.yml"
    task_def.write_text((REPO_ROOT / "task_defs" / "anli.yml").read_text().replace("dropout_p: 0.1", "dropout_p: 0.0"))
    return {"model": folder, "task_def": task_def}


def _short_args(tiny, no_dropout, out, *extra):
    return ["--model", str(no_dropout["model"]), "--task_def", str(no_dropout["task_def"]),
            "--data_dir", str(tiny["data"]), "--cache_dir", str(tiny["cache"]),
            "--train_datasets", "anli:r1_train", "--test_datasets", "anli:r1_dev", "--epochs", "1",
            "--batch_size", "20", "--max_seq_len", "48", "--seed", "2", "--no_progress", "--output_dir", str(out),
            *extra]


def test_non_finite_adversarial_term_is_skipped_and_counted(tiny, no_dropout, tmp_path):
    # An ascent step of 1e39 overflows float32: every step's adversarial term is NaN and skipped,
    # so training must equal plain fine-tuning exactly (no dropout: nothing else is random).
    smart, plain = tmp_path / "smart", tmp_path / "plain"
    assert train_main(_short_args(tiny, no_dropout, smart, "--perturbation", "smart", "--adv_step_size", "1e39")) == 0
    assert train_main(_short_args(tiny, no_dropout, plain, "--perturbation", "none")) == 0
    epoch = next(r for r in _records(smart) if r["kind"] == "train_epoch")
    assert epoch["updates"] == 6 and epoch["skipped_updates"] == 0
    assert epoch["perturbation"]["skipped_steps"] == 6 and epoch["perturbation"]["adv_loss"] is None
    a, b = _final_weights(smart), _final_weights(plain)
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_non_finite_loss_skips_updates_and_stops_after_max_bad_steps(tiny, no_dropout, tmp_path, capsys):
    # A learning rate of 1e30 makes the first update blow the weights up: every later loss is NaN.
    blown = ["--learning_rate", "1e30", "--warmup", "0", "--save_every", "1", "--keep_checkpoints", "1"]
    counted = tmp_path / "counted"
    assert train_main(_short_args(tiny, no_dropout, counted, *blown, "--max_bad_steps", "100")) == 0
    epoch = next(r for r in _records(counted) if r["kind"] == "train_epoch")
    assert epoch["updates"] == 6 and epoch["skipped_updates"] == 5
    # no checkpoint of the bad updates replaced the good one of update 1
    assert _steps(counted) == [1]

    stopped = tmp_path / "stopped"
    assert train_main(_short_args(tiny, no_dropout, stopped, *blown, "--max_bad_steps", "3")) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    good = stopped / "checkpoints" / "step-000000001.pt"
    assert lines[-1] == (f"error: stopped after 3 consecutive updates with a non-finite loss or gradient "
                         f"(--max_bad_steps 3); last good checkpoint: {good}")
    assert _steps(stopped) == [1] and torch.isfinite(_final_weights(stopped)["heads.anli.classifier.weight"]).all()
