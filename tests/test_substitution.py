"""Robust accuracy's substitutions (mt_dnn/substitution.py, predict.py --substitute) on real data:
the packaged MiniLM's tokenizer and embeddings, real WordNet, and a trained tiny run for predict.py."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from mt_dnn.features import TokenizedSplit
from mt_dnn.substitution import Substituter, substitute_split

PAIRS = [("the car is red and the man is happy .", "a big dog sleeps in the house ."),
         ("she drives a fast car .", "the woman is glad .")]


@pytest.fixture(scope="module")
def minilm(minilm_path, tmp_path_factory):
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path))
    embeddings = AutoModel.from_pretrained(str(minilm_path)).get_input_embeddings().weight.detach()
    return {"tokenizer": tokenizer, "embeddings": embeddings, "cache": tmp_path_factory.mktemp("substitution")}


def _split(tokenizer, order=(0, 1)) -> TokenizedSplit:
    rows = [tokenizer(*PAIRS[i])["input_ids"] for i in order]
    offsets = np.cumsum([0] + [len(r) for r in rows])
    return TokenizedSplit(task="snli", split="test", input_ids=np.concatenate(rows).astype(np.int32),
                          token_type_ids=np.zeros(offsets[-1], dtype=np.int8), offsets=offsets.astype(np.int64),
                          labels=np.array(list(order)), uids=np.array([f"pair-{i}" for i in order]))


def _tokens(tokenizer, split, index):
    return tokenizer.convert_ids_to_tokens(split.input_ids[split.offsets[index]:split.offsets[index + 1]].tolist())


def test_wordnet_substitution_replaces_words_by_their_synonyms(minilm):
    tokenizer = minilm["tokenizer"]
    substituter = Substituter(kind="wordnet", tokenizer=tokenizer, embeddings=None, cache_dir=minilm["cache"])
    clean = _split(tokenizer)
    changed, report = substitute_split(data=clean, substituter=substituter, rate=1.0, seed=0)
    before, after = _tokens(tokenizer, clean, 0), _tokens(tokenizer, changed, 0)
    replaced = {b: a for b, a in zip(before, after) if a != b}
    assert {"car", "red", "happy"} <= set(replaced), replaced
    from nltk.corpus import wordnet

    for word, synonym in replaced.items():  # each replacement is a WordNet synonym of the word
        lemmas = {name.lower() for synset in wordnet.synsets(word)
                  if word in {n.lower() for n in synset.lemma_names()} for name in synset.lemma_names()}
        assert synonym in lemmas, (word, synonym)
    for token in ("[CLS]", "[SEP]", "the", "."):  # special tokens and words without synonyms stay
        assert token not in replaced
    assert after[0] == "[CLS]" and after.count("[SEP]") == 2
    assert 0 < report["changed_token_share"] < 1 and report["changed_example_share"] == 1.0


def test_neighbour_substitution_uses_the_nearest_vocabulary_token(minilm):
    tokenizer, embeddings = minilm["tokenizer"], minilm["embeddings"]
    substituter = Substituter(kind="neighbour", tokenizer=tokenizer, embeddings=embeddings, cache_dir=minilm["cache"])
    clean = _split(tokenizer)
    changed, _ = substitute_split(data=clean, substituter=substituter, rate=1.0, seed=0)
    # By hand: cosine similarity against the whole vocabulary, itself and special/placeholder tokens excluded.
    unit = torch.nn.functional.normalize(embeddings, dim=-1)
    vocab = tokenizer.get_vocab()
    excluded = [i for t, i in vocab.items() if t.startswith("[unused")] + list(tokenizer.all_special_ids)
    car = vocab["car"]
    scores = unit @ unit[car]
    scores[[car, *excluded]] = -2
    position = _tokens(tokenizer, clean, 0).index("car")
    assert changed.input_ids[position] == int(scores.argmax()) != car
    special = np.isin(clean.input_ids, tokenizer.all_special_ids)
    assert (changed.input_ids[special] == clean.input_ids[special]).all()
    assert (changed.input_ids[~special] != clean.input_ids[~special]).mean() > 0.9  # rate 1: (nearly) every token


def test_same_seed_same_substitutes_rate_zero_changes_nothing(minilm):
    tokenizer, embeddings = minilm["tokenizer"], minilm["embeddings"]
    substituter = Substituter(kind="neighbour", tokenizer=tokenizer, embeddings=embeddings, cache_dir=minilm["cache"])
    clean = _split(tokenizer)
    first, _ = substitute_split(data=clean, substituter=substituter, rate=0.5, seed=7)
    again, _ = substitute_split(data=clean, substituter=substituter, rate=0.5, seed=7)
    other, _ = substitute_split(data=clean, substituter=substituter, rate=0.5, seed=8)
    assert np.array_equal(first.input_ids, again.input_ids)
    assert not np.array_equal(first.input_ids, other.input_ids)
    # one example's substitutes do not depend on the others around it, nor on its place in the split
    alone, _ = substitute_split(data=clean.take(1), substituter=substituter, rate=0.5, seed=7)
    assert np.array_equal(alone.input_ids, first.input_ids[: clean.offsets[1]])
    swapped, _ = substitute_split(data=_split(tokenizer, order=(1, 0)), substituter=substituter, rate=0.5, seed=7)
    second_first = swapped.input_ids[: swapped.offsets[1]]
    assert np.array_equal(second_first, first.input_ids[clean.offsets[1]:])
    unchanged, report = substitute_split(data=clean, substituter=substituter, rate=0.0, seed=7)
    assert np.array_equal(unchanged.input_ids, clean.input_ids) and report["changed_token_share"] == 0


def test_predict_with_rate_zero_equals_clean_accuracy(tmp_path):
    from mt_dnn.cli_predict import main as predict_main
    from mt_dnn.cli_train import main as train_main
    from tiny_models import tiny_bert, write_anli_like

    model, data = tiny_bert(tmp_path / "bert"), write_anli_like(tmp_path / "anli")
    run = tmp_path / "run"
    assert train_main(["--model", str(model), "--data_dir", str(data), "--cache_dir", str(tmp_path / "cache"),
                       "--train_datasets", "anli:r1_train", "--test_datasets", "anli:r1_dev", "--epochs", "1",
                       "--batch_size", "8", "--max_seq_len", "48", "--learning_rate", "1e-3", "--no_progress",
                       "--output_dir", str(run)]) == 0
    common = ["--run_dir", str(run), "--split", "r1_dev", "--checkpoint", "latest"]
    assert predict_main([*common, "--output", str(tmp_path / "clean.jsonl")]) == 0
    assert predict_main([*common, "--output", str(tmp_path / "zero.jsonl"), "--substitute", "wordnet",
                         "--substitution_rate", "0"]) == 0
    assert (tmp_path / "clean.jsonl").read_text() == (tmp_path / "zero.jsonl").read_text()
    assert predict_main([*common, "--output", str(tmp_path / "bad.jsonl"), "--substitute", "wordnet",
                         "--substitution_rate", "1.5"]) == 2
    assert not (tmp_path / "bad.jsonl").exists()
