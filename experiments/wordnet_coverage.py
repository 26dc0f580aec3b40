"""How many tokens the WordNet methods replace, per vocabulary and reading of "has a synonym".

The paper reports that about 30% (BERT) and 40% (RoBERTa) of a sentence's tokens found a
WordNet synonym and were replaced. This measures the same share with the code the providers
run (the synonym table and the whole-word rule), on the first pairs of a real ANLI split:
replaced tokens / perturbable tokens (not special tokens, not padding).

    python -m experiments.wordnet_coverage --data_dir $ANLI_DIR --pairs 64 \\
        --tokenizer packaged-minilm --tokenizer ../shared/tokenizers/roberta
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch


def load_tokenizer(name: str):
    """'packaged-minilm', a model folder, or a folder with RoBERTa's vocab.json + merges.txt."""
    from transformers import AutoTokenizer

    folder = Path(name)
    if name == "packaged-minilm":
        from mt_dnn.packaged_model import resolve_model_name

        return AutoTokenizer.from_pretrained(resolve_model_name(name))
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file() and not (folder / "tokenizer.json").exists():
        from tokenizers import AddedToken
        from transformers import RobertaTokenizer

        return RobertaTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"),
                                mask_token=AddedToken("<mask>", lstrip=True))
    return AutoTokenizer.from_pretrained(name)


def read_pairs(path: Path, *, count: int) -> list[tuple[str, str]]:
    pairs = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            pairs.append((record["context"], record["hypothesis"]))
            if len(pairs) == count:
                break
    return pairs


def replaced_share(*, tokenizer, pairs, lookup: str, cache_dir: Path) -> float:
    from noise_training.base import perturbable_token_mask
    from noise_training.synonyms import load_or_build_synonym_table
    from noise_training.word_boundaries import whole_word_positions, word_piece_rules

    table = load_or_build_synonym_table(tokenizer=tokenizer, cache_dir=cache_dir, lookup=lookup)
    rules = word_piece_rules(tokenizer=tokenizer)
    batch = tokenizer([p for p, _ in pairs], [h for _, h in pairs], padding=True, truncation=True,
                      max_length=512, return_tensors="pt")
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)))
    real = perturbable_token_mask(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                  special_ids=special)
    whole = whole_word_positions(input_ids=batch["input_ids"], real_tokens=real, rules=rules)
    has_synonym = table.counts()[batch["input_ids"]] > 0
    return float((whole & has_synonym).sum() / real.sum())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.wordnet_coverage", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", required=True, help="ANLI v1.0 folder ($ANLI_DIR)")
    parser.add_argument("--split", default="R1/dev.jsonl")
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--tokenizer", action="append", default=None, help="repeatable; default packaged-minilm")
    parser.add_argument("--cache_dir", default=None)
    args = parser.parse_args(argv)
    path = Path(args.data_dir) / args.split
    if not path.is_file():
        print(f"wordnet_coverage: error: --data_dir {args.data_dir}: no {args.split}", file=sys.stderr)
        return 2
    pairs = read_pairs(path, count=args.pairs)
    cache = Path(args.cache_dir or tempfile.mkdtemp(prefix="wordnet-coverage-"))
    print(f"WordNet replaced share on the first {len(pairs)} pairs of {args.split} "
          "(replaced / perturbable tokens; paper: ≈30% BERT, ≈40% RoBERTa)\n")
    print("| tokenizer | exact (default) | morphy |\n|---|---|---|")
    for name in args.tokenizer or ["packaged-minilm"]:
        tokenizer = load_tokenizer(name)
        shares = [replaced_share(tokenizer=tokenizer, pairs=pairs, lookup=lookup, cache_dir=cache)
                  for lookup in ("exact", "morphy")]
        print(f"| {Path(name).name} | {100 * shares[0]:.1f}% | {100 * shares[1]:.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
