"""The step-cost benchmark's model and batches: a named or random-init encoder, ANLI or synthetic pairs.

One job of benchmarks.bench_step_cost, kept apart so that bench_data and gpu_check reuse it:
every method is timed on the same model and the same batches, built here.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from mt_dnn.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[1]
# Encoders built from a config with random weights: the step costs of the paper's models
# (BERT-base, RoBERTa-large) without a download. "tiny" is for smoke tests of this script.
RANDOM_INIT_SIZES = {
    "bert-base": {"arch": "bert", "hidden": 768, "layers": 12, "heads": 12, "ffn": 3072},
    "roberta-large": {"arch": "roberta", "hidden": 1024, "layers": 24, "heads": 16, "ffn": 4096},
    "tiny": {"arch": "bert", "hidden": 64, "layers": 2, "heads": 2, "ffn": 128},
}
ANLI_EVAL_FILES = tuple(f"R{r}/{s}.jsonl" for r in (1, 2, 3) for s in ("dev", "test"))


def default_anli_dir() -> Path:
    """$ANLI_DIR, else data/anli_v1.0, else the shared copy beside the checkout."""
    for candidate in (os.environ.get("ANLI_DIR"), "data/anli_v1.0", REPO_ROOT.parent / "shared/data/anli_v1.0"):
        if candidate and (Path(candidate) / "R1" / "dev.jsonl").is_file():
            return Path(candidate)
    return Path(os.environ.get("ANLI_DIR") or "data/anli_v1.0")


# ----------------------------------------------------------------------------- model and data


def load_model(*, model_name: str, random_init: str | None, tokenizer_name: str | None, task):
    """(MultiTaskModel, tokenizer, description) for a named/packaged model or a random-init size."""
    from transformers import AutoModel, AutoTokenizer, BertConfig, RobertaConfig

    from mt_dnn.model import MultiTaskModel, build_model
    from mt_dnn.packaged_model import resolve_model_name

    if random_init is None:
        path = resolve_model_name(model_name)
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_name or path)
        return build_model(model_name=path, tasks={task.name: task}, tokenizer=tokenizer), tokenizer, model_name
    size = RANDOM_INIT_SIZES[random_init]
    # The BERT uncased vocabulary (the packaged MiniLM's): BERT-base's own, and for the
    # RoBERTa-sized encoder a stand-in for its 50k BPE vocabulary (only the embedding table's
    # row count differs; the step cost is in the layers).
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_name or resolve_model_name("packaged-minilm"))
    common = dict(vocab_size=len(tokenizer), hidden_size=size["hidden"], num_hidden_layers=size["layers"],
                  num_attention_heads=size["heads"], intermediate_size=size["ffn"],
                  pad_token_id=tokenizer.pad_token_id)
    if size["arch"] == "roberta":
        config = RobertaConfig(max_position_embeddings=514, type_vocab_size=1, **common)
    else:
        config = BertConfig(max_position_embeddings=512, type_vocab_size=2, **common)
    torch.manual_seed(0)
    encoder = AutoModel.from_config(config)
    description = (f"random-init {random_init} ({size['arch']}, {size['layers']} layers, hidden {size['hidden']}, "
                   f"vocab {len(tokenizer)})")
    return MultiTaskModel(encoder=encoder, tasks={task.name: task}), tokenizer, description


GLUE_BENCH_TASKS = ("rte", "mrpc", "cola", "stsb", "sst2")


def benchmark_task(*, data: str):
    """The task whose head the timed model carries: the GLUE task for --data glue:TASK (its loss: MSE for STS-B),
    else ANLI's three-way head (SNLI, ANLI and synthetic batches all have three labels)."""
    from mt_dnn.task_def import load_task_defs

    if data.startswith("glue:"):
        return load_task_defs(paths=[REPO_ROOT / "task_defs" / "glue.yml"])[data.removeprefix("glue:")]
    return load_task_defs(paths=[REPO_ROOT / "task_defs" / "anli.yml"])["anli"]


def anli_examples(*, tokenizer, task, data_dir: Path, max_seq_len: int, cache_dir: Path):
    """All ANLI dev and test pairs (R1-R3), tokenised (and cached), as one table."""
    from mt_dnn.batching import concat_splits
    from mt_dnn.features import load_tokenized_split

    splits = [
        load_tokenized_split(path=data_dir / name, task=task, split=name.replace("/", "_").removesuffix(".jsonl"),
                             tokenizer=tokenizer, max_seq_len=max_seq_len, cache_dir=cache_dir / "tokens")
        for name in ANLI_EVAL_FILES
    ]
    return concat_splits(splits, task=task.name)


def snli_examples(*, tokenizer, data_dir: Path | None, max_seq_len: int, cache_dir: Path):
    """The SNLI test pairs ($SNLI_DIR, else the shared copy beside the checkout), tokenised (and cached)."""
    from mt_dnn.features import load_tokenized_split
    from mt_dnn.task_def import load_task_defs

    candidates = (data_dir, os.environ.get("SNLI_DIR"), "data/snli", REPO_ROOT.parent / "shared/data/snli")
    folder = next((Path(c) for c in candidates if c and (Path(c) / "snli_test.jsonl").is_file()), None)
    if folder is None:
        raise UserError("--data snli: no snli_test.jsonl found (set $SNLI_DIR or --data_dir)")
    task = load_task_defs(paths=[REPO_ROOT / "task_defs" / "snli.yml"])["snli"]
    return load_tokenized_split(path=folder / "snli_test.jsonl", task=task, split="test", tokenizer=tokenizer,
                                max_seq_len=max_seq_len, cache_dir=cache_dir / "tokens")


def glue_examples(*, tokenizer, task, data_dir: Path | None, max_seq_len: int, cache_dir: Path):
    """A GLUE task's training examples ($GLUE_DIR, else the shared copy beside the checkout), tokenised: the
    sequence lengths the GLUE head-to-head trains on."""
    from mt_dnn.features import load_tokenized_split

    candidates = (data_dir, os.environ.get("GLUE_DIR"), "data/glue", REPO_ROOT.parent / "shared/data/glue")
    relative = task.splits["train"].path
    folder = next((Path(c) for c in candidates if c and (Path(c) / relative).is_file()), None)
    if folder is None:
        raise UserError(f"--data glue:{task.name}: no {relative} found (set $GLUE_DIR or --data_dir)")
    return load_tokenized_split(path=folder / relative, task=task, split="train", tokenizer=tokenizer,
                                max_seq_len=max_seq_len, cache_dir=cache_dir / "tokens")


def anli_batches(*, data, batch_size: int, count: int, seed: int, pad_token_id: int) -> list[dict]:
    """``count`` random batches of real pairs, padded to their longest pair (as training does)."""
    from mt_dnn.batching import collate

    rng = np.random.default_rng(seed)
    if len(data) < batch_size:
        raise UserError(f"--batch_size {batch_size}: only {len(data)} ANLI pairs available")
    return [collate(data, rng.choice(len(data), size=batch_size, replace=False), pad_token_id=pad_token_id)
            for _ in range(count)]


def synthetic_batches(*, tokenizer, batch_size: int, count: int, seed: int, max_seq_len: int) -> list[dict]:
    """Random whole-word ids with ANLI-like lengths (dev: median 90, 99th percentile 133), for machines without ANLI."""
    rng = np.random.default_rng(seed)
    vocab = tokenizer.get_vocab()
    special = set(tokenizer.all_special_ids)
    words = np.array(sorted(i for t, i in vocab.items() if t.isalpha() and t.isascii() and i not in special))
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    pad_id = tokenizer.pad_token_id
    batches = []
    for _ in range(count):
        lengths = np.clip(rng.normal(92, 20, size=batch_size).round().astype(int), 24, max_seq_len)
        width = int(lengths.max())
        input_ids = np.full((batch_size, width), pad_id, dtype=np.int64)
        token_type_ids = np.zeros((batch_size, width), dtype=np.int64)
        attention_mask = np.zeros((batch_size, width), dtype=np.int64)
        for row, length in enumerate(lengths):
            body = rng.choice(words, size=length - 3)
            split = int(length * 0.7)
            ids = [cls_id, *body[: split - 2], sep_id, *body[split - 2 :], sep_id]
            input_ids[row, :length] = ids
            token_type_ids[row, split:length] = 1
            attention_mask[row, :length] = 1
        batches.append({"input_ids": torch.from_numpy(input_ids), "token_type_ids": torch.from_numpy(token_type_ids),
                        "attention_mask": torch.from_numpy(attention_mask),
                        "labels": torch.from_numpy(rng.integers(0, 3, size=batch_size))})
    return batches


def benchmark_device(*, device_name: str, threads: int) -> torch.device:
    """The benchmark's device, with the thread count and matmul settings training uses."""
    from mt_dnn.precision import enable_fast_matmul

    torch.set_num_threads(threads)
    device = torch.device(device_name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device_name}: no CUDA device is available")
    enable_fast_matmul(device)
    return device


def benchmark_batches(*, data: str, data_dir: Path | None, tokenizer, task, batch_size: int, max_seq_len: int,
                      seed: int, cache_dir: Path, count: int) -> tuple[list[dict], str]:
    """``count`` batches of the ``--data`` kind (anli, snli, glue:TASK or synthetic) and a line saying what they are.

    For glue:TASK, ``task`` is that GLUE task (benchmark_task), whose head the model has."""
    if data == "synthetic":
        return (synthetic_batches(tokenizer=tokenizer, batch_size=batch_size, count=count, seed=seed,
                                  max_seq_len=max_seq_len), "synthetic batches (random words, ANLI-like lengths)")
    if data == "snli":
        examples = snli_examples(tokenizer=tokenizer, data_dir=data_dir, max_seq_len=max_seq_len, cache_dir=cache_dir)
        text = "real SNLI test pairs"
    elif data.startswith("glue:"):
        examples = glue_examples(tokenizer=tokenizer, task=task, data_dir=data_dir, max_seq_len=max_seq_len,
                                 cache_dir=cache_dir)
        text = f"real GLUE {task.name} training examples"
    else:
        data_dir = data_dir or default_anli_dir()
        if not (data_dir / "R1" / "dev.jsonl").is_file():
            raise UserError(f"--data_dir {data_dir}: no R1/dev.jsonl (set $ANLI_DIR or pass --data synthetic)")
        examples = anli_examples(tokenizer=tokenizer, task=task, data_dir=data_dir, max_seq_len=max_seq_len,
                                 cache_dir=cache_dir)
        text = f"real ANLI dev+test pairs from {data_dir}"
    return anli_batches(data=examples, batch_size=batch_size, count=count, seed=seed,
                        pad_token_id=tokenizer.pad_token_id), text
