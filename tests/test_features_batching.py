"""Tokenisation (premise truncated first), the token cache, batch planning and dynamic padding."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from mt_dnn.batching import collate, concat_splits, plan_epoch, shard_indices
from mt_dnn.features import encode_pairs, load_tokenized_split
from mt_dnn.task_def import load_task_defs
from conftest import REPO_ROOT

ANLI = load_task_defs(paths=[REPO_ROOT / "task_defs" / "anli.yml"])["anli"]


@pytest.fixture(scope="module")
def tokenizer(minilm_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path)


def test_pair_encoding_truncates_premise_first(tokenizer):
    premise = " ".join(["word"] * 50)
    hypothesis = "a short hypothesis"
    ids, types = encode_pairs(tokenizer=tokenizer, premises=[premise], hypotheses=[hypothesis], max_seq_len=20)
    tokens = tokenizer.convert_ids_to_tokens(ids[0])
    assert len(ids[0]) == 20
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    assert tokens[-5:] == ["a", "short", "hypothesis", "[SEP]"][-5:] or tokens[-4:] == ["a", "short", "hypothesis", "[SEP]"]
    assert sum(types[0]) == 4  # hypothesis + its [SEP] untouched
    # a hypothesis longer than the limit on its own is cut too, and the pair still fits
    ids, _ = encode_pairs(tokenizer=tokenizer, premises=["p"], hypotheses=[premise], max_seq_len=20)
    assert len(ids[0]) == 20


def test_real_split_cache_roundtrip_and_invalidation(tmp_path, tokenizer, anli_dir, caplog):
    data_file = tmp_path / "dev.jsonl"
    lines = (anli_dir / "R1" / "dev.jsonl").read_text(encoding="utf-8").splitlines()[:50]
    data_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cache = tmp_path / "cache"
    first = load_tokenized_split(path=data_file, task=ANLI, split="r1_dev", tokenizer=tokenizer, max_seq_len=128,
                                 cache_dir=cache)
    files = list(cache.iterdir())
    assert len(first) == 50 and len(files) == 1 and files[0].suffix == ".npz"
    with np.load(files[0], allow_pickle=False) as stored:  # no pickle inside
        assert "input_ids" in stored.files
    expected = tokenizer(json.loads(lines[3])["context"], json.loads(lines[3])["hypothesis"], truncation="only_first",
                         max_length=128)["input_ids"]
    assert first.example(3)["input_ids"].tolist() == expected

    with caplog.at_level(logging.INFO, logger="mt_dnn.features"):
        second = load_tokenized_split(path=data_file, task=ANLI, split="r1_dev", tokenizer=tokenizer, max_seq_len=128,
                                      cache_dir=cache)
    assert "from the token cache" in caplog.text
    assert np.array_equal(first.input_ids, second.input_ids) and np.array_equal(first.uids, second.uids)

    # another max_seq_len or changed content -> another key, a new file
    load_tokenized_split(path=data_file, task=ANLI, split="r1_dev", tokenizer=tokenizer, max_seq_len=64, cache_dir=cache)
    data_file.write_text("\n".join(lines[:49]) + "\n", encoding="utf-8")
    third = load_tokenized_split(path=data_file, task=ANLI, split="r1_dev", tokenizer=tokenizer, max_seq_len=128,
                                 cache_dir=cache)
    assert len(third) == 49 and len(list(cache.iterdir())) == 3

    # a corrupt cache file is rebuilt with a warning
    target = next(p for p in cache.iterdir() if p.stat().st_mtime == max(q.stat().st_mtime for q in cache.iterdir()))
    target.write_bytes(b"garbage")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mt_dnn.features"):
        again = load_tokenized_split(path=data_file, task=ANLI, split="r1_dev", tokenizer=tokenizer, max_seq_len=128,
                                     cache_dir=cache)
    assert "unusable token cache" in caplog.text and len(again) == 49
    assert np.load(target, allow_pickle=False)["labels"].shape == (49,)


def _table(lengths, labels=None):
    from mt_dnn.features import TokenizedSplit

    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids = np.arange(1, offsets[-1] + 1, dtype=np.int32)
    return TokenizedSplit(task="t", split="s", input_ids=ids, token_type_ids=np.zeros_like(ids, dtype=np.int8),
                          offsets=offsets, labels=np.array(labels or [0] * len(lengths)),
                          uids=np.array([str(i) for i in range(len(lengths))]))


def test_collate_pads_to_longest_in_batch():
    data = _table([3, 5, 2])
    batch = collate(data, np.array([0, 2]), pad_token_id=0)
    assert batch["input_ids"].shape == (2, 3)  # longest of the two, not of the split
    assert batch["input_ids"].tolist() == [[1, 2, 3], [9, 10, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].dtype == torch.long


def test_plan_is_deterministic_mixes_tasks_and_covers_everything():
    data = {"a": _table([4] * 10), "b": _table([4] * 7)}
    plan = plan_epoch(train_data=data, batch_size=3, seed=5, epoch=0)
    again = plan_epoch(train_data=data, batch_size=3, seed=5, epoch=0)
    other_epoch = plan_epoch(train_data=data, batch_size=3, seed=5, epoch=1)
    assert [(b.task, b.indices.tolist()) for b in plan] == [(b.task, b.indices.tolist()) for b in again]
    assert [(b.task, b.indices.tolist()) for b in plan] != [(b.task, b.indices.tolist()) for b in other_epoch]
    assert len(plan) == 4 + 3
    for task, n in (("a", 10), ("b", 7)):
        seen = np.concatenate([b.indices for b in plan if b.task == task])
        assert sorted(seen.tolist()) == list(range(n))
    assert {b.task for b in plan[:4]} == {"a", "b"} or {b.task for b in plan[3:]} == {"a", "b"}


def test_length_grouped_batches_have_less_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 200, size=600)
    data = {"a": _table(lengths.tolist())}

    def padded(mode):
        plan = plan_epoch(train_data=data, batch_size=16, seed=1, epoch=0, mode=mode)
        return sum(len(b.indices) * lengths[b.indices].max() for b in plan)

    assert padded("length_grouped") < 0.8 * padded("random")


def test_shards_are_disjoint_and_cover_the_batch():
    indices = np.arange(10)
    shards = [shard_indices(indices, rank=r, world_size=3) for r in range(3)]
    assert sorted(np.concatenate(shards).tolist()) == list(range(10))


def test_concat_splits_keeps_examples():
    joined = concat_splits([_table([2, 3]), _table([4])], task="t")
    assert joined.offsets.tolist() == [0, 2, 5, 9] and len(joined) == 3
    assert joined.example(2)["input_ids"].tolist() == [1, 2, 3, 4]
