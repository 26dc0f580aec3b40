"""The model: logits from ids equal logits from token embeddings; heads per task; pooler reuse."""

from __future__ import annotations

import pytest
import torch

from mt_dnn.model import build_model
from mt_dnn.task_def import load_task_defs
from conftest import REPO_ROOT
from tiny_models import tiny_bert, tiny_roberta

TASKS = load_task_defs(paths=[REPO_ROOT / "task_defs" / "anli.yml", REPO_ROOT / "task_defs" / "mnli_example.yml"])


def _batch(tokenizer, pairs):
    return tokenizer([p for p, _ in pairs], [h for _, h in pairs], padding=True, return_tensors="pt",
                     return_token_type_ids=True)


PAIRS = [("the man drives a red car in the city .", "a man drives ."), ("she is happy .", "he is sad today .")]


@pytest.mark.numerics
@pytest.mark.parametrize("builder", [tiny_bert, tiny_roberta], ids=["bert", "roberta"])
def test_ids_and_token_embeddings_give_identical_logits(tmp_path, builder):
    from transformers import AutoTokenizer

    folder = builder(tmp_path / "m")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = build_model(model_name=str(folder), tasks=TASKS, tokenizer=tokenizer).eval()
    batch = _batch(tokenizer, PAIRS)
    assert (batch["attention_mask"] == 0).any(), "the batch must contain padding to test position ids"
    common = dict(task="anli", attention_mask=batch["attention_mask"], token_type_ids=batch["token_type_ids"])
    with torch.no_grad():
        from_ids = model(input_ids=batch["input_ids"], **common)
        from_embeds = model(inputs_embeds=model.token_embeddings(batch["input_ids"]), **common)
    assert from_ids.shape == (2, 3)
    assert torch.equal(from_ids, from_embeds)


@pytest.mark.numerics
def test_packaged_minilm_equivalence_and_heads(minilm_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    model = build_model(model_name=str(minilm_path), tasks=TASKS, tokenizer=tokenizer).eval()
    assert set(model.heads) == {"anli", "mnli"}
    assert model.encoder.pooler is None and model.pooler is not None  # the trained pooler is reused, once
    batch = _batch(tokenizer, PAIRS)
    common = dict(attention_mask=batch["attention_mask"], token_type_ids=batch["token_type_ids"])
    with torch.no_grad():
        a = model(task="anli", input_ids=batch["input_ids"], **common)
        b = model(task="anli", inputs_embeds=model.token_embeddings(batch["input_ids"]), **common)
        c = model(task="mnli", input_ids=batch["input_ids"], **common)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)  # separate heads
    with pytest.raises(ValueError, match="exactly one"):
        model(task="anli", **common)


def test_tokenizer_that_does_not_match_the_model(tmp_path, minilm_path):
    from transformers import AutoTokenizer

    from mt_dnn.errors import ConfigError

    small = tiny_bert(tmp_path / "m")
    with pytest.raises(ConfigError, match="the tokenizer has 30522 tokens but the embedding matrix has"):
        build_model(model_name=str(small), tasks=TASKS, tokenizer=AutoTokenizer.from_pretrained(minilm_path))
