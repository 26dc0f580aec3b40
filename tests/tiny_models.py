"""Tiny real models and tokenizers built in the tests (seconds, no download).

A 2-layer BERT with a WordPiece vocabulary made from the words of the test data, and a
2-layer RoBERTa with a byte-level BPE tokenizer trained on the same text.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

WORDS = (
    "the a an man woman child dog cat car auto automobile house city river boat plane train "
    "is was are were has had will not never always happy glad sad big large small little red blue "
    "green old new young fast slow runs walks drives sleeps eats sits stands reads writes sings "
    "in on at near under over with without and or but because park street school garden kitchen "
    "she he you they it we morning night today yesterday born died lived played won lost team "
    "game music film book song one two three four five".split()
)
LABELS = ("e", "n", "c")
# A random init this wide makes a tiny model's predictions depend on its input (at 0.02 the
# three classes' probabilities agree to 3 decimals across inputs, and a perturbation's
# symmetric KL is ~1e-8): the tests of the adversarial term use it.
SIGNAL_INIT = 0.2


def synthetic_sentences(count: int, *, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14))) + "." for _ in range(count)]


def write_anli_like(folder: Path, *, rounds=("R1",), sizes=None, seed: int = 0) -> Path:
    """ANLI-format jsonl files (uid, context, hypothesis, label) for train/dev/test of each round."""
    sizes = sizes or {"train": 48, "dev": 24, "test": 24}
    rng = random.Random(seed)
    for r in rounds:
        for split, n in sizes.items():
            path = folder / r / f"{split}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w", encoding="utf-8") as handle:
                for i in range(n):
                    premise, hypothesis = synthetic_sentences(2, seed=rng.randint(0, 10**9))
                    handle.write(json.dumps({"uid": f"{r}-{split}-{i}", "context": premise,
                                             "hypothesis": hypothesis, "label": rng.choice(LABELS)}) + "\n")
    return folder


def tiny_bert(folder: Path, *, seed: int = 0, layers: int = 2, hidden: int = 32,
              initializer_range: float = 0.02) -> Path:
    """A random-init BERT and its WordPiece tokenizer saved as a model folder.

    ``initializer_range`` 0.02 (BERT's) gives a model whose predictions barely depend on the
    input; tests of a perturbation's effect use a larger one (see ``SIGNAL_INIT``)."""
    from transformers import BertConfig, BertModel, BertTokenizer

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    pieces = sorted(set(WORDS) | set(".,") | set("abcdefghijklmnopqrstuvwxyz")) + [
        "##" + c for c in "abcdefghijklmnopqrstuvwxyz"]
    vocab = {token: i for i, token in enumerate(specials + pieces)}
    tokenizer = BertTokenizer(vocab=vocab)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=128, pad_token_id=0,
                        initializer_range=initializer_range)
    model = BertModel(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_roberta(folder: Path, *, seed: int = 0, hidden: int = 32, initializer_range: float = 0.02) -> Path:
    """A random-init RoBERTa with a byte-level BPE tokenizer trained on the test words."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaModel

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(synthetic_sentences(400, seed=seed), vocab_size=400,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], show_progress=False)
    from tokenizers.processors import RobertaProcessing

    bpe._tokenizer.post_processor = RobertaProcessing(("</s>", 2), ("<s>", 0))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>",
        pad_token="<pad>", unk_token="<unk>", mask_token="<mask>",
    )
    torch.manual_seed(seed)
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=2 * hidden, max_position_embeddings=130, pad_token_id=1,
                           type_vocab_size=1, initializer_range=initializer_range)
    RobertaModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def mnli_like(folder: Path, *, seed: int = 1) -> Path:
    """A second task in the generic jsonl format (premise/hypothesis/label names)."""
    rng = random.Random(seed)
    labels = ("entailment", "neutral", "contradiction")
    for split, n in (("train", 40), ("dev_matched", 20)):
        path = folder / f"{split}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            for i in range(n):
                p, h = synthetic_sentences(2, seed=rng.randint(0, 10**9))
                handle.write(json.dumps({"idx": i, "premise": p, "hypothesis": h, "label": rng.choice(labels)}) + "\n")
    return folder


def tiny_anli_setup(root: Path, *, train: int, dev: int = 8, test: int = 8,
                    initializer_range: float = 0.02) -> dict:
    """What a train.py test needs under ``root``: a tiny BERT, a cache folder and ANLI-like R1 data."""
    return {"model": tiny_bert(root / "bert", initializer_range=initializer_range), "cache": root / "cache",
            "root": root, "data": write_anli_like(root / "anli", rounds=("R1",),
                                                  sizes={"train": train, "dev": dev, "test": test})}
