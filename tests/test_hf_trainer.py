"""PerturbationTrainer (noise_training.hf): one Trainer step equals our run_training_step, for every provider.

The Hugging Face classifier is our tiny MultiTaskModel exported with mt_dnn.hf_mapping, so both
hold the same weights; with dropout off and the same seed, the loss and every parameter's
gradient must agree. The example script runs end to end on a few real SNLI pairs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("accelerate", reason="the hf extra (pip install -e .[hf]) is needed for transformers.Trainer")

from conftest import REPO_ROOT  # noqa: E402
from mt_dnn.hf_mapping import build_classifier, head_layout, name_map  # noqa: E402
from mt_dnn.model import build_model  # noqa: E402
from mt_dnn.task_def import load_task_defs  # noqa: E402
from mt_dnn.training_step import run_training_step  # noqa: E402
from noise_training.registry import build_provider, provider_names, resolve_options  # noqa: E402
from provider_setup import SETTINGS  # noqa: E402
from tiny_models import SIGNAL_INIT, synthetic_sentences, tiny_bert, tiny_roberta  # noqa: E402


def _without_dropout(folder):
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    path.write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module", params=["bert", "roberta"])
def pair(request, tmp_path_factory):
    """(our model, the HF classifier with the same weights, tokenizer, task, a batch, cache folder)."""
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp(request.param)
    make = tiny_bert if request.param == "bert" else tiny_roberta
    folder = _without_dropout(make(root / "model", initializer_range=SIGNAL_INIT))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    task = dataclasses.replace(load_task_defs(paths=[REPO_ROOT / "task_defs" / "anli.yml"])["anli"], dropout_p=0.0)
    ours = build_model(model_name=str(folder), tasks={"anli": task}, tokenizer=tokenizer)
    hf = build_classifier(model=ours, task=task, tokenizer=tokenizer)
    sentences = synthetic_sentences(12, seed=4)
    encoded = tokenizer(sentences[:6], sentences[6:], padding=True, return_tensors="pt")
    batch = {key: encoded[key] for key in ("input_ids", "attention_mask", "token_type_ids") if key in encoded}
    batch["labels"] = torch.tensor([0, 1, 2, 0, 1, 2])
    return {"ours": ours, "hf": hf, "tokenizer": tokenizer, "task": task, "batch": batch, "cache": root / "cache",
            "root": root, "kind": request.param}


def _trainer(pair, name, *, options=None, **kwargs):
    from transformers import TrainingArguments

    from noise_training.hf import PerturbationTrainer

    args = TrainingArguments(output_dir=str(pair["root"] / "trainer"), report_to="none", use_cpu=True,
                             per_device_train_batch_size=6, **kwargs)
    return PerturbationTrainer(model=pair["hf"], args=args, processing_class=pair["tokenizer"], perturbation=name,
                               perturbation_options=options, cache_dir=pair["cache"])


# SMART at its defaults moves each token by ~1e-5: its symmetric KL is ~1e-10, below float32's rounding
# of that sum (it came out -5e-8 and 0 with other kernels), so neither its sign nor its gradient's share of
# the comparison below shows anything. At these sizes (test_distributed's) its term is ~0.1 (against a
# task loss of ~1.2) and shows. provider_setup.SETTINGS holds these sizes (and R3F's, whose default ε = 1e-5
# rounds away the same way).
# The adversarial term is a mean of symmetric KLs over 3 classes: sums of p·log(p/q) terms of size ≲ 1
# that each carry float32's relative rounding u = 2^-24 ≈ 6e-8, so a KL that is 0 in exact arithmetic
# comes out anywhere in about ±1e-7. "The perturbation did something" is read above 10x that.
KL_ROUNDING = 1e-6


@pytest.mark.numerics
@pytest.mark.parametrize("name", provider_names())
def test_one_trainer_step_equals_run_training_step(pair, name):
    ours, hf, task, batch = pair["ours"], pair["hf"], pair["task"], pair["batch"]
    names = name_map(model=ours, task_name="anli", hf_model=hf, layout=head_layout(hf))
    # settings under which the term is visible (SMART's and R3F's defaults move the input by ~1e-5: see the note above KL_ROUNDING)
    given = SETTINGS.get(name, {})
    trainer = _trainer(pair, name, options=given)  # before our step: Trainer's __init__ seeds the generators
    _, options = resolve_options(name=name, given=dict(given))
    provider = build_provider(name=name, options=options, model=ours, tokenizer=pair["tokenizer"],
                              cache_dir=pair["cache"])
    special_ids = torch.tensor(sorted(set(pair["tokenizer"].all_special_ids)))
    ours.train()
    ours.zero_grad(set_to_none=True)
    torch.manual_seed(11)
    outcome = run_training_step(model=ours, forward_model=ours, provider=provider, batch=dict(batch), task=task,
                                adv_alpha=options.get("adv_alpha", 0.0), special_ids=special_ids,
                                normaliser=len(batch["labels"]))

    hf.zero_grad(set_to_none=True)
    torch.manual_seed(11)
    loss = trainer.training_step(trainer.model, dict(batch))

    assert float(loss) == pytest.approx(float(outcome.loss), rel=1e-6, abs=1e-7)
    # the perturbation did something (the tiny RoBERTa's 400 byte-level pieces hold no WordNet synonym pair):
    # it moved tokens by a clearly non-zero share of their embeddings' size, and the adversarial term it
    # adds (whose gradient the comparison below then covers) is above the KL's rounding; a provider that
    # perturbs step 1's input (NEFTune) has no second pass and no term
    if name != "none" and not (pair["kind"] == "roberta" and name.startswith("wordnet")):
        assert outcome.stats["changed_share"] > 0 and outcome.stats["noise_share"] > 1e-3, outcome.stats
        if provider.perturbs_step1_input:
            assert outcome.adv_loss is None
        else:
            assert outcome.adv_loss > KL_ROUNDING, f"the adversarial term {outcome.adv_loss:.3g} is rounding"
    theirs = dict(hf.named_parameters())
    compared = 0
    for our_name, parameter in ours.named_parameters():
        mine, other = parameter.grad, theirs[names[our_name]].grad
        if mine is None:
            assert other is None or not other.any(), our_name
            continue
        torch.testing.assert_close(other, mine, rtol=1e-5, atol=1e-7, msg=lambda m: f"{name} {our_name}: {m}")
        compared += 1
    assert compared == len(list(ours.parameters()))
    logs = {"loss": float(loss)}
    trainer.log(logs)
    assert logs["task_loss"] == pytest.approx(outcome.task_loss, rel=1e-6)
    assert logs["forward_passes_per_step"] == outcome.forwards
    if name != "none":
        assert logs["changed_share"] == pytest.approx(outcome.stats["changed_share"])
        assert logs["noise_share"] == pytest.approx(outcome.stats["noise_share"])
        if provider.perturbs_step1_input:
            assert "adv_loss" not in logs
        else:
            assert logs["adv_loss"] == pytest.approx(outcome.adv_loss, rel=1e-6)


def test_neftune_step_equals_transformers_own_neftune(pair):
    """perturbation="neftune" gives the loss and gradients of Trainer with its own NEFTune hook, same seed."""
    from transformers import Trainer, TrainingArguments
    from transformers.integrations.neftune import activate_neftune, deactivate_neftune

    hf, batch = pair["hf"], pair["batch"]
    ours = _trainer(pair, "neftune", options={"neftune_noise_alpha": 15.0})
    hf.zero_grad(set_to_none=True)
    torch.manual_seed(5)
    loss = ours.training_step(ours.model, dict(batch))
    mine = {name: p.grad.clone() for name, p in hf.named_parameters() if p.grad is not None}
    clean = Trainer(model=hf, args=TrainingArguments(output_dir=str(pair["root"] / "plain"), report_to="none",
                                                     use_cpu=True, per_device_train_batch_size=6))
    clean.current_gradient_accumulation_steps = 1  # what Trainer.train() sets before its steps
    hf.zero_grad(set_to_none=True)
    torch.manual_seed(5)
    clean_loss = clean.training_step(clean.model, dict(batch))  # the guard: no noise, another loss
    handle = activate_neftune(hf, 15.0)  # what Trainer.train() does with TrainingArguments(neftune_noise_alpha=15)
    try:
        hf.zero_grad(set_to_none=True)
        torch.manual_seed(5)
        theirs_loss = clean.training_step(clean.model, dict(batch))
    finally:
        deactivate_neftune(hf, handle)
    theirs = {name: p.grad.clone() for name, p in hf.named_parameters() if p.grad is not None}
    hf.zero_grad(set_to_none=True)
    assert float(clean_loss) != pytest.approx(float(theirs_loss), rel=1e-6)
    assert float(loss) == pytest.approx(float(theirs_loss), rel=1e-6)
    assert mine.keys() == theirs.keys()
    for name in mine:
        torch.testing.assert_close(mine[name], theirs[name], rtol=1e-5, atol=1e-7, msg=name)
    logs = {"loss": float(loss)}
    ours.log(logs)
    assert logs["forward_passes_per_step"] == 1 and logs["backward_passes_per_step"] == 1 and "adv_loss" not in logs


def test_neftune_trainer_predicts_without_noise(pair):
    """Prediction after NEFTune training steps is the model's clean output (evaluation never calls a provider)."""
    from torch.utils.data import Dataset

    hf, batch = pair["hf"], pair["batch"]

    class Rows(Dataset):
        def __len__(self):
            return len(batch["labels"])

        def __getitem__(self, index):
            return {key: value[index] for key, value in batch.items()}

    trainer = _trainer(pair, "neftune", options={"neftune_noise_alpha": 15.0})
    for _ in range(2):
        trainer.training_step(trainer.model, dict(batch))
    hf.zero_grad(set_to_none=True)
    predicted = trainer.predict(Rows()).predictions
    hf.eval()
    with torch.no_grad():
        clean = hf(**{k: v for k, v in batch.items() if k != "labels"}).logits
    assert torch.equal(torch.as_tensor(predicted), clean)


def test_trainer_neftune_beside_a_perturbation_is_refused(pair):
    from transformers import TrainingArguments

    from noise_training.hf import PerturbationTrainer

    args = TrainingArguments(output_dir=str(pair["root"] / "n"), report_to="none", use_cpu=True, neftune_noise_alpha=5)
    with pytest.raises(ValueError, match="neftune_noise_alpha together with a perturbation"):
        PerturbationTrainer(model=pair["hf"], args=args, processing_class=pair["tokenizer"], perturbation="1-1",
                            cache_dir=pair["cache"])


def test_bad_provider_options_are_one_line_errors(pair):
    from noise_training.errors import ProviderConfigError

    with pytest.raises(ProviderConfigError, match="--noise_size"):
        from transformers import TrainingArguments

        from noise_training.hf import PerturbationTrainer

        PerturbationTrainer(model=pair["hf"], args=TrainingArguments(output_dir=str(pair["root"] / "t"), report_to="none",
                                                                     use_cpu=True),
                            processing_class=pair["tokenizer"], perturbation="1-1",
                            perturbation_options={"noise_size": 3.0}, cache_dir=pair["cache"])


def test_noise_training_providers_never_import_mt_dnn():
    """Only the Hugging Face integration module (noise_training.hf) sits on top of mt_dnn."""
    code = ("import sys, noise_training.registry as r; r.provider_names(); "
            "print(sorted(m for m in sys.modules if m == 'mt_dnn' or m.startswith('mt_dnn.')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.slow
def test_example_script_runs_end_to_end(minilm_path, tmp_path):
    """examples/hf_trainer_snli.py: the packaged MiniLM, real SNLI pairs, 1-1 through Trainer."""
    data = REPO_ROOT / "experiments" / "data" / "snli_sample"
    files = ["--train_file", "snli_train.jsonl"]
    if not (data / "snli_train.jsonl").is_file():
        if not os.environ.get("SNLI_DIR"):
            pytest.skip("no SNLI: neither the shipped sample experiments/data/snli_sample nor $SNLI_DIR")
        data, files = Path(os.environ["SNLI_DIR"]), ["--train_file", "snli_dev.jsonl"]
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "examples" / "hf_trainer_snli.py"), "--data_dir", str(data), *files,
         "--max_train_examples", "16", "--max_eval_examples", "16", "--batch_size", "8", "--logging_steps", "1",
         "--output_dir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=1800, env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
                                                           "MT_DNN_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["perturbation"] == "1-1" and summary["options"]["noise_size"] == 0.5
    assert summary["train_examples"] == 16 and summary["updates"] == 2 and 0 <= summary["test_accuracy"] <= 1
    assert summary["seconds_per_update"] > 0
    last = summary["last_log"]
    assert last["forward_passes_per_step"] == 2 and 0.9 < last["changed_share"] <= 1 and last["noise_share"] > 0.1


@pytest.mark.parametrize("name", ["1-1", "smart_mtdnn", "smart"])
def test_a_regression_model_trains_on_mse(tmp_path, name):
    """A one-output Hugging Face model (STS-B's kind) trains on MSE + α · MSE, equal to our step."""
    from transformers import AutoTokenizer

    from noise_training.hf import task_of

    folder = _without_dropout(tiny_bert(tmp_path / "model", initializer_range=SIGNAL_INIT))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    task = dataclasses.replace(load_task_defs(paths=[REPO_ROOT / "task_defs" / "glue.yml"])["stsb"], dropout_p=0.0)
    ours = build_model(model_name=str(folder), tasks={"stsb": task}, tokenizer=tokenizer)
    hf = build_classifier(model=ours, task=task, tokenizer=tokenizer)
    assert hf.config.num_labels == 1 and hf.config.problem_type == "regression"
    assert task_of(hf.config).loss == "mse" and task_of(hf.config).adv_loss == "mse"
    sentences = synthetic_sentences(8, seed=5)
    encoded = tokenizer(sentences[:4], sentences[4:], padding=True, return_tensors="pt")
    batch = {key: encoded[key] for key in ("input_ids", "attention_mask", "token_type_ids") if key in encoded}
    batch["labels"] = torch.tensor([0.5, 4.0, 2.25, 3.0])
    pair = {"hf": hf, "tokenizer": tokenizer, "root": tmp_path, "cache": tmp_path / "cache"}
    trainer = _trainer(pair, name)
    _, options = resolve_options(name=name, given={})
    provider = build_provider(name=name, options=options, model=ours, tokenizer=tokenizer, cache_dir=pair["cache"])
    ours.train()
    torch.manual_seed(3)
    outcome = run_training_step(model=ours, forward_model=ours, provider=provider, batch=dict(batch), task=task,
                                adv_alpha=options.get("adv_alpha", 0.0),
                                special_ids=torch.tensor(sorted(set(tokenizer.all_special_ids))), normaliser=4)
    torch.manual_seed(3)
    loss = trainer.training_step(trainer.model, dict(batch))
    assert outcome.adv_loss > 0
    with torch.no_grad():
        predictions = ours(task="stsb", input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           token_type_ids=batch["token_type_ids"])[:, 0]
    assert outcome.task_loss == pytest.approx(float(((predictions - batch["labels"]) ** 2).mean()), rel=1e-5)
    assert float(loss) == pytest.approx(float(outcome.loss), rel=1e-6, abs=1e-7)
