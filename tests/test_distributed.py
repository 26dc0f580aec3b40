"""DDP through ``torchrun``: two Gloo processes on CPU give what one process gives with the same global batch.

A tiny BERT without dropout (dropout masks are drawn per rank, so they are the one thing
that legitimately differs), initialised wide so that its predictions and the adversarial
term depend on the input, is trained by ``train.py`` under ``torch.distributed.run`` and, in
this process, by ``main()``; metrics and final weights must agree to float tolerance, for
``none``, ``1-1`` and ``smart``, with and without gradient accumulation. SMART's initial noise
is drawn per example from its token ids (``tests/train_hooks.py``) so that the ranks' halves of
a batch draw what the whole batch draws on one process. A guard checks that the adversarial
term moved the weights far beyond the comparison's tolerance.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

import mt_dnn.trainer as trainer_module
from conftest import REPO_ROOT
from mt_dnn.checkpoint import CheckpointManager
from mt_dnn.cli_train import main as train_main
from tiny_models import SIGNAL_INIT, tiny_bert, write_anli_like
from train_hooks import install_per_example_noise


pytestmark = pytest.mark.usefixtures("one_thread")


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
    model = _without_dropout(tiny_bert(root / "bert", initializer_range=SIGNAL_INIT))
    return {"model": model, "task_def": task_def, "cache": root / "cache",
            "data": write_anli_like(root / "anli", rounds=("R1",), sizes={"train": 48, "dev": 22, "test": 21})}


# SMART at sizes where its term shows (the defaults move the input by 1e-5: a rank error would hide)
SETTINGS = {"none": [], "1-1": [], "smart": ["--adv_step_size", "1e-1", "--adv_noise_var", "1e-2"]}
WEIGHT_TOLERANCE = dict(rtol=1e-4, atol=1e-5)


def _args(setup, out, perturbation, *extra):
    # 48 training examples in batches of 8: every global batch splits 4 + 4 over two ranks
    return ["--model", str(setup["model"]), "--task_def", str(setup["task_def"]), "--data_dir", str(setup["data"]),
            "--cache_dir", str(setup["cache"]), "--train_datasets", "anli:r1_train",
            "--test_datasets", "anli:r1_dev,anli:r1_test", "--epochs", "2", "--batch_size", "8",
            "--max_seq_len", "48", "--learning_rate", "1e-3", "--seed", "5", "--perturbation", perturbation,
            *SETTINGS[perturbation], "--no_progress", "--output_dir", str(out), *extra]


def _torchrun(args, *, nproc=2, hooks=False):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    script = REPO_ROOT / "train.py"
    if hooks:  # SMART's initial noise drawn per example, as install_per_example_noise does in this process
        env["TEST_NOISE_PER_EXAMPLE"] = "1"
        script = REPO_ROOT / "tests" / "train_hooks.py"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               str(script), *args]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def one_process_weights():
    """Final weights of the one-process runs, by (perturbation, accumulation) (filled as the tests run)."""
    return {}


def _records(out, kind):
    return [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


def _weights(out):
    return CheckpointManager(out / "checkpoints").load_latest()[1]["model"]


def _excess(got, want) -> float:
    """The largest |got - want| in units of the comparison's tolerance (above 1: they differ)."""
    return ((got - want).abs() / (WEIGHT_TOLERANCE["atol"] + WEIGHT_TOLERANCE["rtol"] * want.abs())).max().item()


def _one_process(setup, out, perturbation, accumulation, monkeypatch):
    with monkeypatch.context() as patch:
        install_per_example_noise(patch)
        assert train_main(_args(setup, out, perturbation, "--grad_accumulation", str(accumulation))) == 0
    return _weights(out)


@pytest.mark.parametrize("perturbation,accumulation", [("none", 1), ("1-1", 1), ("smart", 1),
                                                      pytest.param("smart", 2, marks=pytest.mark.numerics)])
def test_two_gloo_processes_match_one_process(setup, tmp_path, perturbation, accumulation, one_process_weights,
                                              monkeypatch):
    one, two = tmp_path / "one", tmp_path / "two"
    wa = one_process_weights[(perturbation, accumulation)] = _one_process(setup, one, perturbation, accumulation,
                                                                         monkeypatch)
    done = _torchrun(_args(setup, two, perturbation, "--grad_accumulation", str(accumulation)), hooks=True)
    assert done.returncode == 0, done.stderr[-3000:]
    updates = 6 // accumulation

    # one set of results, written by rank 0 alone
    assert done.stderr.count("INFO mt_dnn.trainer: checkpoint") == 2, done.stderr[-3000:]
    assert json.loads((two / "run_config.json").read_text())["world_size"] == 2
    assert json.loads((two / "run_summary.json").read_text())["updates"] == 2 * updates
    assert len((two / "predictions" / "epoch2_anli_r1_test.jsonl").read_text().splitlines()) == 21

    for a, b in zip(_records(one, "train_epoch"), _records(two, "train_epoch"), strict=True):
        # the ranks' disjoint shares add up to every training example once per epoch
        assert a["examples"] == b["examples"] == 48 and a["updates"] == b["updates"] == updates
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
        assert ("perturbation" in a) == ("perturbation" in b) == (perturbation != "none")
        if perturbation != "none":
            assert a["perturbation"]["adv_loss"] > 1e-3, f"fixture degenerate: {a['perturbation']}"
            for key in ("adv_loss", "changed_share"):
                assert b["perturbation"][key] == pytest.approx(a["perturbation"][key], rel=1e-4), key
            # noise_share is a mean over each batch's changed tokens, and the epoch weights the ranks' halves by
            # their examples, not their tokens: it matches the one-process figure only approximately
            assert b["perturbation"]["noise_share"] == pytest.approx(a["perturbation"]["noise_share"], rel=1e-2)
    # evaluation is sharded (22 and 21 examples: uneven shares) and gathered
    for a, b in zip(_records(one, "eval"), _records(two, "eval"), strict=True):
        assert (a["split"], a["examples"], a["accuracy"]) == (b["split"], b["examples"], b["accuracy"])
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
    wb = _weights(two)
    assert wa.keys() == wb.keys()
    # The attention key biases are left out: their gradient is zero in exact arithmetic (a softmax does not
    # change when a constant is added to every score), so Adam turns float rounding into updates.
    different = {name: _excess(wb[name], wa[name]) for name in wa if not name.endswith("attention.self.key.bias")}
    different = {name: excess for name, excess in different.items() if excess > 1}
    assert not different, f"weights differ beyond the tolerance (by that factor): {different}"
    if perturbation != "none":
        # the guard: the adversarial term moved the weights far beyond the tolerance above
        plain = one_process_weights.get(("none", accumulation))
        if plain is None:  # this case run alone
            plain = _one_process(setup, tmp_path / "plain", "none", accumulation, monkeypatch)
        moved = max(_excess(wa[n], plain[n]) for n in wa)
        assert moved > 100, f"fixture degenerate: {perturbation} moved the weights only {moved:.1f}x the tolerance"



# The gradient of a batch summed in another order and over other paddings: each element is a float32 sum
# over ~8 examples x 48 positions x 64 units, whose rounding is of order sqrt(n)·u ≈ 1e-5 of the gradient's
# scale (u = 2^-24). Allowed: 1e-4 of the gradient's norm (seen: at most 6e-7 under the default, AVX2 and
# AVX-512 kernels). A wrong normaliser (the last micro-batch's 2 examples weighted 1.5 times) moves
# elements by ~3e-2 of it; two updates an epoch by ~1e-1.
GRADIENT_SHARE = 1e-4
SGD_LR = 0.1
# SMART's ascent gradient is proportional to p(E + δ₀) - p(E), a difference of probabilities each rounded
# to u: with δ₀ ~ N(0, 1e-2²) they differ by ~1e-3, the direction carries ~1e-4 of rounding, the
# per-token normalisation passes it on at full size, and the micro-batched runs' adversarial terms
# differed by up to 5e-5 (and the 3 + 3 + 2 run's train loss by 2.5e-5 on another machine). With
# δ₀ ~ N(0, 0.1²) the probabilities differ by ~1e-2 and the terms agree to 3e-6.
ACCUMULATION_NOISE = 1e-1


def _plain_sgd(model, *, learning_rate, weight_decay):
    """Stands in for AdamW: SGD's update is linear in the gradient, so rounding stays rounding."""
    return torch.optim.SGD(model.parameters(), lr=learning_rate)


@pytest.mark.numerics
@pytest.mark.parametrize("perturbation", ["none", "smart"])
def test_accumulated_micro_batches_are_one_big_batch(setup, tmp_path, perturbation, monkeypatch):
    """Batches of 8, of 4 accumulated twice and of 3 + 3 + 2 accumulated: the same gradients, losses, weights.

    The 8 training examples are one update an epoch whatever the micro-batch size, so every run
    sums the gradients of the same examples, only in other orders and paddings, and each loss term
    is divided by the group's size (dividing by each micro-batch's own size weights the last one's
    2 examples 1.5 times). What the optimiser is handed at each update is compared, relative to its
    norm (GRADIENT_SHARE, derived above). The runs use plain SGD: AdamW's first update of an element is
    lr·g/(|g| + 1e-8), about lr·sign(g), so an element whose gradient is at the rounding level (the
    attention key biases, whose gradient is 0 in exact arithmetic, or any element near a zero
    crossing) moves by up to ±lr on rounding alone and every later figure inherits it; with SGD the
    weights are the initial ones minus Σ lr_t·g_t, within Σ lr_t·GRADIENT_SHARE·‖g_t‖ of each other."""
    data = write_anli_like(tmp_path / "anli8", rounds=("R1",), sizes={"train": 8, "dev": 4, "test": 4}, seed=3)

    def run(batch, accumulation):
        out = tmp_path / f"b{batch}x{accumulation}"
        # no clipping: it would hide a scale common to the whole gradient (every micro-batch's normaliser wrong alike)
        args = _args(setup, out, perturbation, "--grad_accumulation", str(accumulation), "--grad_clip", "0")
        for flag, value in (("--data_dir", data), ("--batch_size", batch), ("--test_datasets", "anli:r1_dev"),
                            ("--learning_rate", SGD_LR)):
            args[args.index(flag) + 1] = str(value)
        if perturbation == "smart":
            args[args.index("--adv_noise_var") + 1] = str(ACCUMULATION_NOISE)
        handed = []  # per optimiser step: (learning rate, the gradients it is handed)

        def record(optimizer, step_args, step_kwargs):
            handed.append((optimizer.param_groups[0]["lr"],
                           [p.grad.detach().clone() for group in optimizer.param_groups for p in group["params"]]))

        hook = register_optimizer_step_pre_hook(record)
        try:
            with monkeypatch.context() as patch:
                install_per_example_noise(patch)
                patch.setattr(trainer_module, "build_optimizer", _plain_sgd)
                assert train_main(args) == 0
        finally:
            hook.remove()
        return _records(out, "train_epoch"), handed, _weights(out)

    def norm(gradient):
        return torch.linalg.vector_norm(torch.stack([g.norm() for g in gradient])).item()

    def gradient_share(a, b):
        """The largest |a - b| over the gradient's norm."""
        return max((x - y).abs().max().item() for x, y in zip(a, b, strict=True)) / norm(a)

    def weight_difference(a, b):
        return max((a[name] - b[name]).abs().max().item() for name in a)

    big_records, big_handed, big = run(8, 1)
    assert [r["updates"] for r in big_records] == [1, 1] and [r["examples"] for r in big_records] == [8, 8]
    assert len(big_handed) == 2
    # SGD's weights are within Σ lr_t·GRADIENT_SHARE·‖g_t‖ of each other
    weight_tolerance = sum(lr * norm(gradient) for lr, gradient in big_handed) * GRADIENT_SHARE
    for batch, accumulation in ((4, 2), (3, 3)):
        records, handed, weights = run(batch, accumulation)
        assert len(handed) == len(big_handed)
        for update, ((lr_a, a), (lr_b, b)) in enumerate(zip(big_handed, handed)):
            share = gradient_share(a, b)
            assert lr_a == lr_b and share < GRADIENT_SHARE, f"{batch} x {accumulation}, update {update}: {share:.3g}"
        for a, b in zip(big_records, records, strict=True):
            # means of 8 per-example float32 figures: seen to agree to 2e-7 (train) and 3e-6 (adversarial)
            assert (b["updates"], b["examples"]) == (1, 8)
            assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
            if perturbation != "none":
                assert a["perturbation"]["adv_loss"] > 1e-3, f"fixture degenerate: {a['perturbation']}"
                assert b["perturbation"]["adv_loss"] == pytest.approx(a["perturbation"]["adv_loss"], rel=1e-4)
        difference = weight_difference(weights, big)
        assert difference < weight_tolerance, f"batch {batch} x {accumulation}: weights differ by {difference:.3g}"
    # the guard: batches of 4 without accumulation (two updates an epoch) are far from one update of 8
    _, apart_handed, apart = run(4, 1)
    assert gradient_share(big_handed[0][1], apart_handed[0][1]) > 100 * GRADIENT_SHARE, "fixture degenerate"
    assert weight_difference(apart, big) > 100 * weight_tolerance, "fixture degenerate: the updates do not show"


def test_resume_with_another_process_count_is_refused(setup, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_main(_args(setup, out, "none", "--stop_at_step", "2")) == 0
    before = sorted((p.name, p.stat().st_size) for p in out.rglob("*") if p.is_file())
    done = _torchrun(_args(setup, out, "none", "--resume"))
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if "error: --resume:" in line]
    assert errors and all("world_size" in line or "processes" in line for line in errors), done.stderr[-3000:]
    assert str(REPO_ROOT / "mt_dnn") not in done.stderr, "a traceback through our code"
    assert sorted((p.name, p.stat().st_size) for p in out.rglob("*") if p.is_file()) == before


def test_resume_under_torchrun_is_exact(setup, tmp_path):
    """Both ranks resume from the checkpoint rank 0 picks (past a corrupt newest one) and end bit for bit
    where the uninterrupted two-process run ended: per-rank RNGs (SMART's noise) and figures are restored."""
    reference = tmp_path / "reference"
    done = _torchrun(_args(setup, reference, "smart"))
    assert done.returncode == 0, done.stderr[-3000:]
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
