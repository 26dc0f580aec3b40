"""Mixed precision on the CPU: a training step under bf16 autocast (and fp16 with its scaler).

The encoder's matrix work must really run in half precision while the task loss and the
symmetric KL stay in float32, and every method's step must give finite losses and
gradients. ``train.py --amp bf16`` must run end to end.
"""

from __future__ import annotations

import contextlib
import json

import pytest
import torch

from mt_dnn.cli_train import main as train_main
from mt_dnn.model import build_model
from mt_dnn.precision import autocast_factory, enable_fast_matmul, grad_scaler
from mt_dnn.task_def import load_task_defs
from mt_dnn.training_step import run_training_step
from noise_training.registry import build_provider, resolve_options
from conftest import REPO_ROOT
from tiny_models import tiny_bert, write_anli_like

TASK = load_task_defs(paths=[REPO_ROOT / "task_defs" / "anli.yml"])["anli"]
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("amp")
    folder = tiny_bert(root / "bert", hidden=48)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = build_model(model_name=str(folder), tasks={"anli": TASK}, tokenizer=tokenizer)
    model.train()  # dropout on, as in training
    batch = dict(tokenizer(["the man drives a big car .", "a small dog sleeps in the park ."],
                           ["a man drives an auto .", "the cat eats ."], padding=True, return_tensors="pt",
                           return_token_type_ids=True))
    batch["labels"] = torch.tensor([0, 2])
    return {"root": root, "folder": folder, "model": model, "tokenizer": tokenizer, "batch": batch,
            "special_ids": torch.tensor(sorted(set(tokenizer.all_special_ids)))}


def _provider(tiny, name):
    spec, options = resolve_options(name=name, given={})
    return build_provider(name=spec.name, options=options, model=tiny["model"], tokenizer=tiny["tokenizer"],
                          cache_dir=tiny["root"] / "cache")


@pytest.mark.parametrize("name", ["none", "smart", "1-1", "2-2"])
def test_bf16_autocast_step_gives_finite_float32_losses(tiny, name):
    model = tiny["model"]
    provider = _provider(tiny, name)
    head_dtypes = []
    handle = model.heads["anli"].classifier.register_forward_hook(lambda m, a, out: head_dtypes.append(out.dtype))
    model.zero_grad(set_to_none=True)
    try:
        outcome = run_training_step(model=model, forward_model=model, provider=provider, batch=tiny["batch"],
                                    task=TASK, adv_alpha=1.0, special_ids=tiny["special_ids"], normaliser=2.0,
                                    autocast=autocast_factory(amp="bf16", device=CPU))
    finally:
        handle.remove()
    assert head_dtypes and set(head_dtypes) == {torch.bfloat16}  # autocast was on for every pass
    assert outcome.loss.dtype == torch.float32  # losses and KL are computed in float32
    assert torch.isfinite(outcome.loss) and outcome.task_loss == outcome.task_loss
    if name != "none":
        assert outcome.adv_loss is not None and not outcome.adv_skipped
        assert outcome.adv_loss == outcome.adv_loss and abs(outcome.adv_loss) < float("inf")
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
    model.zero_grad(set_to_none=True)


def test_fp16_autocast_with_grad_scaler_updates_the_weights(tiny):
    model = tiny["model"]
    scaler = grad_scaler(amp="fp16", device=CPU)
    assert scaler is not None and grad_scaler(amp="bf16", device=CPU) is None
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = model.heads["anli"].classifier.weight.detach().clone()
    outcome = run_training_step(model=model, forward_model=model, provider=_provider(tiny, "1-1"),
                                batch=tiny["batch"], task=TASK, adv_alpha=1.0, special_ids=tiny["special_ids"],
                                normaliser=2.0, autocast=autocast_factory(amp="fp16", device=CPU),
                                backward=lambda loss: scaler.scale(loss).backward())
    assert torch.isfinite(outcome.loss) and outcome.adv_loss is not None
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    assert not torch.equal(before, model.heads["anli"].classifier.weight)


def test_no_amp_is_plain_float32_and_fast_matmul_leaves_the_cpu_alone():
    assert autocast_factory(amp="none", device=CPU) is contextlib.nullcontext
    before = torch.get_float32_matmul_precision()
    enable_fast_matmul(CPU)
    assert torch.get_float32_matmul_precision() == before


def test_train_py_with_bf16_runs_end_to_end(tiny, tmp_path):
    data = write_anli_like(tmp_path / "anli", sizes={"train": 16, "dev": 8, "test": 8})
    out = tmp_path / "run"
    code = train_main(["--model", str(tiny["folder"]), "--data_dir", str(data), "--cache_dir", str(tmp_path / "cache"),
                       "--train_datasets", "anli:r1_train", "--test_datasets", "anli:r1_dev", "--epochs", "1",
                       "--batch_size", "8", "--max_seq_len", "48", "--perturbation", "1-1", "--amp", "bf16",
                       "--batching", "length_grouped", "--no_progress", "--output_dir", str(out)])
    assert code == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epoch = next(r for r in records if r["kind"] == "train_epoch")
    assert epoch["updates"] == 2 and epoch["skipped_updates"] == 0
    assert epoch["train_loss"] == epoch["train_loss"] and epoch["perturbation"]["adv_loss"] is not None
    assert json.loads((out / "run_config.json").read_text())["amp"] == "bf16"
