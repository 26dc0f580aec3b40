"""mt_dnn.export: trained runs as Hugging Face folders that transformers loads with no code of ours.

A tiny BERT and a tiny RoBERTa are trained a few steps through train.py (which exports
RUN/hf_model/ itself), exported again with the command line, reloaded with
AutoModelForSequenceClassification and with pipeline: the logits equal those of the network
predict.py rebuilds (1e-5), pipeline's probabilities equal predict.py's output, labels are
named. The real packaged MiniLM, trained on a few real SNLI pairs, gives the same predictions
through pipeline as through predict.py. Encoders whose head cannot be mapped exactly are refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from conftest import REPO_ROOT
from mt_dnn.cli_predict import main as predict_main
from mt_dnn.cli_train import main as train_main
from mt_dnn.export import PROVENANCE_FILE, RUN_EXPORT_FOLDER, main as export_main
from mt_dnn.run_model import load_run_model
from tiny_models import SIGNAL_INIT, mnli_like, synthetic_sentences, tiny_bert, tiny_roberta, write_anli_like

SHIPPED_SNLI = REPO_ROOT / "experiments" / "data" / "snli_sample"


def _train(out: Path, *, model, data, cache, extra=()):
    args = ["--model", str(model), "--data_dir", str(data), "--cache_dir", str(cache),
            "--train_datasets", "anli:r1_train", "--test_datasets", "anli:r1_dev", "--epochs", "1",
            "--batch_size", "8", "--max_seq_len", "64", "--learning_rate", "1e-3", "--seed", "5", "--no_progress",
            "--output_dir", str(out), *extra]
    assert train_main(args) == 0
    return out


@pytest.fixture(scope="module", params=["bert", "roberta"])
def trained(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"export_{request.param}")
    make = tiny_bert if request.param == "bert" else tiny_roberta
    model = make(root / "model", initializer_range=SIGNAL_INIT)
    data = write_anli_like(root / "anli", sizes={"train": 32, "dev": 12, "test": 12})
    run = _train(root / "run", model=model, data=data, cache=root / "cache")
    return {"run": run, "data": data, "root": root, "kind": request.param}


def _pairs_file(path: Path, pairs) -> Path:
    path.write_text("".join(json.dumps({"context": p, "hypothesis": h}) + "\n" for p, h in pairs))
    return path


@pytest.mark.numerics
def test_export_reloads_with_transformers_and_matches_predict(trained, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    run = trained["run"]
    auto = run / RUN_EXPORT_FOLDER
    assert (auto / "model.safetensors").is_file() and (auto / "config.json").is_file()  # written by train.py
    out = tmp_path / "exported"
    assert export_main(["--run_dir", str(run), "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "entailment", "1": "neutral", "2": "contradiction"}
    assert config["architectures"] == [{"bert": "BertForSequenceClassification",
                                        "roberta": "RobertaForSequenceClassification"}[trained["kind"]]]
    assert json.loads((out / PROVENANCE_FILE).read_text())["checkpoint"].endswith("best.pt")

    # logits of the network predict.py rebuilds, on real token ids with padding, against the export's
    ours = load_run_model(run_dir=run, checkpoint="best")
    hf = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    sentences = synthetic_sentences(16, seed=9)
    encoded = tokenizer(sentences[:8], sentences[8:], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = ours.model(task="anli", input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"],
                              token_type_ids=encoded.get("token_type_ids"))
        got = hf(**encoded).logits
    assert (expected.std(dim=0) > 1e-3).any()  # the logits depend on the input: the comparison means something
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    # the automatic export is the same model
    auto_hf = AutoModelForSequenceClassification.from_pretrained(auto).eval()
    with torch.no_grad():
        torch.testing.assert_close(auto_hf(**encoded).logits, expected, atol=1e-5, rtol=0)

    # pipeline against predict.py's output file, two pairs
    pairs = list(zip(sentences[:2], sentences[8:10]))
    predicted = tmp_path / "predict.jsonl"
    assert predict_main(["--run_dir", str(run), "--input", str(_pairs_file(tmp_path / "in.jsonl", pairs)),
                         "--output", str(predicted)]) == 0
    rows = [json.loads(line) for line in predicted.read_text().splitlines()]
    classify = pipeline("text-classification", model=str(out))
    scored = classify([{"text": p, "text_pair": h} for p, h in pairs], top_k=None)
    names = {"e": "entailment", "n": "neutral", "c": "contradiction"}
    for row, scores in zip(rows, scored):
        by_label = {item["label"]: item["score"] for item in scores}
        assert set(by_label) == set(names.values())
        for short, probability in row["probabilities"].items():
            assert by_label[names[short]] == pytest.approx(probability, abs=2e-6)
        assert max(by_label, key=by_label.get) == names[row["prediction"]]


def test_out_folder_is_never_half_written_or_silently_replaced(trained, tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert export_main(["--run_dir", str(trained["run"]), "--out", str(out)]) == 2
    assert "--out" in capsys.readouterr().err and (out / "keep.txt").read_text() == "mine"
    assert export_main(["--run_dir", str(trained["run"]), "--out", str(out), "--overwrite"]) == 2  # not an export
    assert "replaces only a folder mt_dnn.export wrote" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
    (out / "keep.txt").unlink()
    assert export_main(["--run_dir", str(trained["run"]), "--out", str(out)]) == 0
    (out / "keep.txt").write_text("stale")  # an earlier export is replaced whole by --overwrite
    assert export_main(["--run_dir", str(trained["run"]), "--out", str(out), "--overwrite"]) == 0
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    assert export_main(["--run_dir", str(trained["run"]), "--out", str(tmp_path / "x"), "--task", "mnli"]) == 2
    assert "--task" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_no_export_flag_and_multi_task_runs(tmp_path):
    model = tiny_bert(tmp_path / "model")
    anli = write_anli_like(tmp_path / "anli", sizes={"train": 16, "dev": 8, "test": 8})
    mnli = mnli_like(tmp_path / "mnli")
    single = _train(tmp_path / "single", model=model, data=anli, cache=tmp_path / "cache", extra=["--no_export"])
    assert not (single / RUN_EXPORT_FOLDER).exists()
    multi = tmp_path / "multi"
    assert train_main(["--model", str(model), "--task_def", str(REPO_ROOT / "task_defs" / "anli.yml"),
                       str(REPO_ROOT / "task_defs" / "mnli_example.yml"), "--data_dir", f"anli={anli}",
                       f"mnli={mnli}", "--cache_dir", str(tmp_path / "cache"), "--train_datasets", "anli:r1_train,mnli",
                       "--test_datasets", "anli:r1_dev", "--epochs", "1", "--batch_size", "8", "--max_seq_len", "64",
                       "--no_progress", "--output_dir", str(multi)]) == 0
    assert not (multi / RUN_EXPORT_FOLDER).exists()  # automatic export: single-task runs only
    out = tmp_path / "per_task"
    assert export_main(["--run_dir", str(multi), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["anli", "mnli"]
    labels = json.loads((out / "mnli" / "config.json").read_text())["id2label"]
    assert labels == {"0": "entailment", "1": "neutral", "2": "contradiction"}


@pytest.mark.parametrize("kind", ["electra", "distilbert"])
def test_heads_that_cannot_be_mapped_exactly_are_refused(kind, tmp_path):
    """ELECTRA's head is dense + GELU (not tanh); DistilBERT's pre_classifier + ReLU: no exact mapping."""
    from transformers import AutoConfig, AutoModel

    from mt_dnn.errors import ConfigError
    from mt_dnn.hf_mapping import build_classifier
    from mt_dnn.model import MultiTaskModel
    from mt_dnn.task_def import load_task_defs

    folder = tiny_bert(tmp_path / "bert")  # its tokenizer serves both
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    sizes = dict(vocab_size=len(tokenizer), max_position_embeddings=128)
    if kind == "electra":
        config = AutoConfig.for_model("electra", hidden_size=32, embedding_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, intermediate_size=64, **sizes)
    else:
        config = AutoConfig.for_model("distilbert", dim=32, n_layers=1, n_heads=2, hidden_dim=64, **sizes)
    task = load_task_defs(paths=[REPO_ROOT / "task_defs" / "anli.yml"])["anli"]
    torch.manual_seed(0)
    model = MultiTaskModel(encoder=AutoModel.from_config(config), tasks={"anli": task})
    with torch.no_grad():  # a head whose activation matters: wide weights, not the near-zero default init
        for parameter in model.parameters():
            parameter.normal_(0, 0.5)
    with pytest.raises(ConfigError, match="cannot (be mapped|export)") as caught:
        build_classifier(model=model, task=task, tokenizer=tokenizer)
    assert "\n" not in str(caught.value)


def _snli_dir() -> Path | None:
    if (SHIPPED_SNLI / "snli_train.jsonl").is_file():
        return SHIPPED_SNLI
    value = os.environ.get("SNLI_DIR")
    return Path(value) if value and (Path(value) / "snli_dev.jsonl").is_file() else None


@pytest.mark.slow
def test_packaged_minilm_on_real_snli_same_predictions_through_pipeline(minilm_path, tmp_path):
    from transformers import pipeline

    data = _snli_dir()
    if data is None:
        pytest.skip("no SNLI: neither the shipped sample experiments/data/snli_sample nor $SNLI_DIR")
    train_split = "snli:train" if (data / "snli_train.jsonl").is_file() else "snli:dev"
    run = tmp_path / "run"
    assert train_main(["--model", "packaged-minilm", "--task_def", str(REPO_ROOT / "task_defs" / "snli.yml"),
                       "--data_dir", f"snli={data}", "--cache_dir", str(tmp_path / "cache"),
                       "--train_datasets", train_split, "--test_datasets", "snli:dev", "--max_train_examples", "32",
                       "--max_eval_examples", "16", "--epochs", "1", "--batch_size", "16", "--max_seq_len", "128",
                       "--learning_rate", "5e-5", "--no_progress", "--output_dir", str(run)]) == 0
    exported = run / RUN_EXPORT_FOLDER
    lines = (data / "snli_test.jsonl").read_text().splitlines()[:16]
    pairs = [(json.loads(line)["sentence1"], json.loads(line)["sentence2"]) for line in lines]
    pairs_file = tmp_path / "pairs.jsonl"
    pairs_file.write_text("".join(json.dumps({"sentence1": p, "sentence2": h}) + "\n" for p, h in pairs))
    predicted = tmp_path / "predicted.jsonl"
    assert predict_main(["--run_dir", str(run), "--input", str(pairs_file), "--output", str(predicted)]) == 0
    rows = [json.loads(line) for line in predicted.read_text().splitlines()]
    scored = pipeline("text-classification", model=str(exported))([{"text": p, "text_pair": h} for p, h in pairs],
                                                                    top_k=None)
    for row, scores in zip(rows, scored):
        by_label = {item["label"]: item["score"] for item in scores}
        assert max(by_label, key=by_label.get) == row["prediction"]
        for label, probability in row["probabilities"].items():
            assert by_label[label] == pytest.approx(probability, abs=2e-6)
