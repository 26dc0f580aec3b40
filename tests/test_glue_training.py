"""GLUE's task kinds through training: a regression task (STS-B) and a single-sentence task (CoLA).

On the packaged MiniLM and the real GLUE files ($GLUE_DIR): each provider's adversarial term is
the task's ``adv_loss`` (MSE between clean and perturbed predictions for STS-B), non-zero, and
its gradient reaches the encoder; ``smart_mtdnn`` climbs the MSE sum for regression; the runs
through ``train.py`` log each task's own metrics and pick the best epoch by the first; a
multi-task CoLA + STS-B run updates both heads.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import REPO_ROOT
from mt_dnn.batching import collate
from mt_dnn.features import load_tokenized_split
from mt_dnn.losses import mse_adv
from mt_dnn.model import build_model
from mt_dnn.task_def import load_task_defs
from mt_dnn.training_step import run_training_step
from noise_training.providers.smart_mtdnn import ascent_loss, stable_kl
from noise_training.registry import build_provider, resolve_options

pytestmark = pytest.mark.usefixtures("one_thread")

GLUE_YML = REPO_ROOT / "task_defs" / "glue.yml"
TASKS = load_task_defs(paths=[GLUE_YML])
EXAMPLES = 6


@pytest.fixture(scope="module")
def setup(minilm_path, glue_dir, tmp_path_factory):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    tasks = {name: TASKS[name] for name in ("stsb", "cola")}
    torch.manual_seed(0)
    model = build_model(model_name=str(minilm_path), tasks=tasks, tokenizer=tokenizer)
    model.eval()  # no dropout: the only difference between the passes compared below is the term
    batches = {}
    for name, task in tasks.items():
        data = load_tokenized_split(path=glue_dir / task.splits["train"].path, task=task, split="train",
                                    tokenizer=tokenizer, max_seq_len=48, cache_dir=None).take(EXAMPLES)
        batches[name] = collate(data, np.arange(EXAMPLES), pad_token_id=tokenizer.pad_token_id)
    return {"model": model, "tokenizer": tokenizer, "batches": batches,
            "special_ids": torch.tensor(sorted(set(tokenizer.all_special_ids))),
            "cache": tmp_path_factory.mktemp("provider_cache")}


def _encoder_grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if n.startswith("encoder.") and p.grad is not None}


def _step(setup, *, task, provider_name, alpha):
    model = setup["model"]
    spec, options = resolve_options(name=provider_name, given={"adv_alpha": alpha} if provider_name != "none" else {})
    provider = build_provider(name=spec.name, options=options, model=model, tokenizer=setup["tokenizer"],
                              cache_dir=setup["cache"])
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)  # the same noise in both calls
    outcome = run_training_step(model=model, forward_model=model, provider=provider, batch=setup["batches"][task],
                                task=TASKS[task], adv_alpha=alpha, special_ids=setup["special_ids"],
                                normaliser=float(EXAMPLES))
    return outcome, _encoder_grads(model)


def test_the_batches_are_what_the_kinds_say(setup):
    stsb, cola = setup["batches"]["stsb"], setup["batches"]["cola"]
    assert stsb["labels"].dtype == torch.float32 and stsb["labels"][0].item() == 5.0  # STS-B's first score
    assert bool(stsb["token_type_ids"].any())  # a pair: a second segment
    assert cola["labels"].dtype == torch.int64
    assert not bool(cola["token_type_ids"].any())  # a single sentence: no second segment
    sep = setup["tokenizer"].sep_token_id
    assert all(int((row == sep).sum()) == 1 for row in cola["input_ids"])
    assert setup["model"].heads["stsb"].classifier.out_features == 1


@pytest.mark.parametrize("task", ["stsb", "cola"])
@pytest.mark.parametrize("provider_name", ["1-1", "smart_mtdnn"])
def test_the_adversarial_term_is_non_zero_and_reaches_the_encoder(setup, task, provider_name):
    with_term, grads = _step(setup, task=task, provider_name=provider_name, alpha=1.0)
    without, task_only = _step(setup, task=task, provider_name=provider_name, alpha=0.0)
    assert with_term.adv_loss is not None and with_term.adv_loss > 0 and not with_term.adv_skipped
    assert with_term.task_loss == pytest.approx(without.task_loss, rel=1e-6)
    # the term's own gradient (with minus without) on the encoder's weights
    moved = sum(float((grads[n] - task_only[n]).norm()) for n in grads)
    assert moved > 0, "the adversarial term's gradient does not reach the encoder"
    assert float(grads["encoder.embeddings.word_embeddings.weight"].norm()) > 0


def test_the_regression_terms_are_mse():
    clean = torch.tensor([[1.0], [2.0], [0.5]], requires_grad=True)
    adv = torch.tensor([[1.5], [1.0], [0.5]], requires_grad=True)
    assert mse_adv(clean, adv, reduction="sum").item() == pytest.approx(0.25 + 1.0)
    assert mse_adv(clean, adv).item() == pytest.approx(1.25 / 3)  # batchmean
    mse_adv(clean, adv, reduction="sum").backward()
    assert clean.grad is not None and adv.grad is not None  # both sides receive gradient, as MT-DNN's
    # smart_mtdnn's ascent for regression: MT-DNN's F.mse_loss(adv, clean.detach(), reduction="sum");
    # its classification ascent (stable_kl) has no gradient at all on one output
    noise = torch.zeros(3, 1, requires_grad=True)
    (grad,) = torch.autograd.grad(ascent_loss(adv + noise, clean, task_type="regression"), noise)
    assert torch.allclose(grad, 2 * (adv - clean).detach())
    (flat,) = torch.autograd.grad(stable_kl(adv + noise, clean), noise, allow_unused=True)
    assert flat is None or not bool(flat.any())
    assert ascent_loss(adv, clean, task_type="regression").item() == pytest.approx(
        F.mse_loss(adv, clean, reduction="sum").item())


def _train(tmp_path, minilm_path, glue_dir, *extra, export=False):
    from mt_dnn.cli_train import main

    out = tmp_path / "run"
    argv = ["--task_def", str(GLUE_YML), "--data_dir", str(glue_dir), "--model", str(minilm_path),
            "--cache_dir", str(tmp_path / "cache"), "--max_train_examples", "16", "--max_eval_examples", "24",
            "--epochs", "1", "--batch_size", "8", "--max_seq_len", "64", "--no_progress",
            *([] if export else ["--no_export"]), "--output_dir", str(out), *extra]
    assert main(argv) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return out, records, json.loads((out / "run_summary.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("task, provider_name, metrics", [
    ("stsb", "smart_mtdnn", {"pearson", "spearman"}),
    ("cola", "1-1", {"mcc", "accuracy"}),
])
def test_train_py_runs_each_kind(tmp_path, minilm_path, glue_dir, task, provider_name, metrics):
    out, records, summary = _train(tmp_path, minilm_path, glue_dir, "--train_datasets", task,
                                   "--perturbation", provider_name)
    (epoch,) = [r for r in records if r["kind"] == "train_epoch"]
    assert epoch["perturbation"]["adv_loss"] > 0
    (pooled,) = [r for r in records if r["kind"] == "eval_pooled"]
    assert set(pooled["metrics"]) == metrics and pooled["metric"] == TASKS[task].metric
    assert pooled["score"] == pooled["metrics"][TASKS[task].metric]
    assert ("accuracy" in pooled) == (task == "cola")
    assert summary["best_dev_score"] == pooled["score"]
    assert f"{task}: {TASKS[task].metric}" in summary["model_selection"]


@pytest.mark.slow
def test_multi_task_cola_and_stsb(tmp_path, minilm_path, glue_dir, monkeypatch):
    import mt_dnn.trainer as trainer_module
    from mt_dnn.checkpoint import read_checkpoint

    initial = {}
    original = trainer_module.prepare_run

    def recording(config):
        setup = original(config)
        initial.update({k: v.clone() for k, v in setup.model.state_dict().items() if k.startswith("heads.")})
        return setup

    monkeypatch.setattr(trainer_module, "prepare_run", recording)
    out, records, summary = _train(tmp_path, minilm_path, glue_dir, "--train_datasets", "cola,stsb",
                                   "--perturbation", "1-1")
    pooled = {r["task"]: r for r in records if r["kind"] == "eval_pooled"}
    assert set(pooled) == {"cola", "stsb"}
    assert set(pooled["cola"]["metrics"]) == {"mcc", "accuracy"}
    assert set(pooled["stsb"]["metrics"]) == {"pearson", "spearman"}
    assert summary["best_dev_score"] == pytest.approx((pooled["cola"]["score"] + pooled["stsb"]["score"]) / 2)
    assert "mean over tasks" in summary["model_selection"]
    (checkpoint,) = sorted((out / "checkpoints").glob("step-*.pt"))
    final = read_checkpoint(checkpoint)["model"]
    for task in ("cola", "stsb"):
        name = f"heads.{task}.classifier.weight"
        assert not torch.equal(final[name], initial[name]), f"the {task} head did not move"


@pytest.mark.slow
def test_stsb_export_scores_through_pipeline_as_predict_py(tmp_path, minilm_path, glue_dir):
    from transformers import pipeline

    from mt_dnn.cli_predict import main as predict_main
    from mt_dnn.data import read_examples

    out, _, _ = _train(tmp_path, minilm_path, glue_dir, "--train_datasets", "stsb", "--perturbation", "1-1",
                       export=True)
    config = json.loads((out / "hf_model" / "config.json").read_text())
    assert len(config["id2label"]) == 1  # num_labels=1
    assert config["problem_type"] == "regression"
    predictions = tmp_path / "stsb_dev.jsonl"
    assert predict_main(["--run_dir", str(out), "--split", "dev", "--max_examples", "8", "--output",
                         str(predictions), "--device", "cpu"]) == 0
    records = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert len(records) == 8 and all(set(r) == {"uid", "score", "gold"} for r in records)
    examples = read_examples(path=glue_dir / "STS-B" / "dev.tsv", task=TASKS["stsb"])[:8]
    scorer = pipeline("text-classification", model=str(out / "hf_model"), device="cpu")
    scored = scorer([{"text": e.premise, "text_pair": e.hypothesis} for e in examples])
    for record, example, got in zip(records, examples, scored):
        assert record["uid"] == example.uid and record["gold"] == example.label
        assert got["label"] == "score" and got["score"] == pytest.approx(record["score"], abs=1e-5)


@pytest.mark.slow
def test_a_glue_trained_run_is_scored_on_advglue(tmp_path, minilm_path, glue_dir, advglue_dir, capsys):
    from mt_dnn.cli_predict import main as predict_main

    out, _, _ = _train(tmp_path, minilm_path, glue_dir, "--train_datasets", "rte")
    predictions = tmp_path / "adv_rte.jsonl"
    argv = ["--run_dir", str(out), "--task_def", str(REPO_ROOT / "task_defs" / "advglue.yml"), "--split", "dev",
            "--data_dir", str(advglue_dir), "--output", str(predictions), "--device", "cpu"]
    assert predict_main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    records = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert len(records) == summary["examples"] == 81  # AdvGLUE's RTE dev
    gold = [r["gold"] for r in records]
    assert gold.count("entailment") == 35 and gold.count("not_entailment") == 46
    assert summary["accuracy"] == pytest.approx(sum(r["prediction"] == r["gold"] for r in records) / 81)
    # a definition whose labels do not mean what the run's head means is refused in one line
    other = tmp_path / "other.yml"
    other.write_text((REPO_ROOT / "task_defs" / "advglue.yml").read_text().replace(
        "  labels: [not_entailment, entailment]\n  label_map: {0: entailment, 1: not_entailment}",
        "  labels: [entailment, not_entailment]\n  label_map: {0: entailment, 1: not_entailment}"))
    argv[argv.index(str(REPO_ROOT / "task_defs" / "advglue.yml"))] = str(other)
    assert predict_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --task_def {other}: task rte is classification with labels ['entailment', "
                   "'not_entailment']; the run's head is classification with ['not_entailment', 'entailment']"]


@pytest.mark.slow
def test_multi_task_resume_is_exact(tmp_path, minilm_path, glue_dir):
    from mt_dnn.checkpoint import read_checkpoint
    from mt_dnn.cli_train import main

    def final_weights(folder):
        (checkpoint,) = sorted((folder / "checkpoints").glob("step-*.pt"))[-1:]
        return read_checkpoint(checkpoint)["model"]

    whole, _, _ = _train(tmp_path / "whole", minilm_path, glue_dir, "--train_datasets", "cola,stsb",
                         "--perturbation", "1-1", "--seed", "3")
    common = ["--task_def", str(GLUE_YML), "--data_dir", str(glue_dir), "--model", str(minilm_path),
              "--cache_dir", str(tmp_path / "whole" / "cache"), "--max_train_examples", "16",
              "--max_eval_examples", "24", "--epochs", "1", "--batch_size", "8", "--max_seq_len", "64",
              "--no_progress", "--no_export", "--train_datasets", "cola,stsb", "--perturbation", "1-1",
              "--seed", "3", "--output_dir", str(tmp_path / "split")]
    assert main([*common, "--stop_at_step", "2"]) == 0
    assert main([*common, "--resume"]) == 0
    expected, got = final_weights(whole), final_weights(tmp_path / "split")
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    records = [json.loads(line) for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert {r["task"] for r in records if r["kind"] == "eval_pooled"} == {"cola", "stsb"}
