"""Fine-tune a Hugging Face classifier on SNLI with ``transformers.Trainer`` and noise toward similar words.

The whole integration is one class: ``noise_training.hf.PerturbationTrainer`` instead of
``Trainer``, with a provider name and its options. Everything else is plain Hugging Face
(AutoModelForSequenceClassification, TrainingArguments, DataCollatorWithPadding), so this
script is also a template for a user's own data. Defaults: the packaged MiniLM (offline),
the SNLI sample shipped in experiments/data/snli_sample (real SNLI 1.0 lines), method 1-1.

    pip install -e .[hf]
    python examples/hf_trainer_snli.py --perturbation 1-1
    python examples/hf_trainer_snli.py --perturbation smart --adv_step_size 1e-3 --model bert-base-uncased

It prints the Trainer's logs (with the perturbation's statistics: noise_share, changed_share,
adv_loss, ...), then one JSON line: test accuracy, seconds per update, what the provider did.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a file from a checkout
    sys.path.insert(0, str(REPO_ROOT))

LABELS = ("entailment", "neutral", "contradiction")
DEFAULT_DATA = REPO_ROOT / "experiments" / "data" / "snli_sample"


def read_snli(path: Path, *, limit: int | None) -> list[dict]:
    """SNLI 1.0 jsonl lines (sentence1, sentence2, gold_label); pairs without a gold label are dropped."""
    pairs = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                premise, hypothesis, label = row["sentence1"], row["sentence2"], row["gold_label"]
            except (ValueError, KeyError, TypeError):
                raise SystemExit(f"{path}:{number}: expected an SNLI jsonl line (sentence1, sentence2, gold_label)")
            if label in LABELS:
                pairs.append({"premise": premise, "hypothesis": hypothesis, "label": LABELS.index(label)})
            if limit and len(pairs) >= limit:
                break
    return pairs


def encode(pairs: list[dict], tokenizer, *, max_seq_len: int) -> list[dict]:
    encoded = tokenizer([p["premise"] for p in pairs], [p["hypothesis"] for p in pairs], truncation=True,
                        max_length=max_seq_len)
    return [{**{key: values[i] for key, values in encoded.items()}, "labels": pair["label"]}
            for i, pair in enumerate(pairs)]


def parse_args(argv=None) -> argparse.Namespace:
    from noise_training.registry import add_provider_arguments

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="packaged-minilm", help="hub name or folder; packaged-minilm works offline")
    parser.add_argument("--data_dir", type=Path, default=DEFAULT_DATA,
                        help="folder with snli_train.jsonl and snli_test.jsonl (SNLI 1.0 field names)")
    parser.add_argument("--train_file", default="snli_train.jsonl")
    parser.add_argument("--test_file", default="snli_test.jsonl")
    parser.add_argument("--max_train_examples", type=int, default=None)
    parser.add_argument("--max_eval_examples", type=int, default=None)
    parser.add_argument("--max_seq_len", type=int, default=128)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--logging_steps", type=int, default=20)
    parser.add_argument("--output_dir", type=Path, default=Path("runs/examples/hf_trainer_snli"))
    parser.add_argument("--report_to", default="none", help="Trainer's report_to, e.g. tensorboard")
    add_provider_arguments(parser)  # --perturbation and every provider option, as train.py has them
    parser.set_defaults(perturbation="1-1")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding
    from transformers import TrainingArguments, set_seed

    from mt_dnn.packaged_model import resolve_model_name
    from noise_training.errors import ProviderError
    from noise_training.hf import PerturbationTrainer
    from noise_training.registry import all_options

    args = parse_args(argv)
    for name in ("train_file", "test_file"):
        if not (args.data_dir / getattr(args, name)).is_file():
            raise SystemExit(f"--data_dir {args.data_dir}: no {getattr(args, name)} there")
    set_seed(args.seed)
    model_path = resolve_model_name(args.model)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_path, num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)})
    train = encode(read_snli(args.data_dir / args.train_file, limit=args.max_train_examples), tokenizer,
                   max_seq_len=args.max_seq_len)
    test = encode(read_snli(args.data_dir / args.test_file, limit=args.max_eval_examples), tokenizer,
                  max_seq_len=args.max_seq_len)
    training_args = TrainingArguments(
        output_dir=str(args.output_dir), num_train_epochs=args.epochs, per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=64, learning_rate=args.learning_rate, weight_decay=0.01, warmup_steps=0.1,
        max_grad_norm=1.0, logging_steps=args.logging_steps, save_strategy="no", report_to=args.report_to,
        seed=args.seed, use_cpu=not torch.cuda.is_available(), disable_tqdm=True,
    )
    options = {name: getattr(args, name) for name in all_options() if getattr(args, name) is not None}
    try:
        trainer = PerturbationTrainer(model=model, args=training_args, train_dataset=train,
                                      data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer,
                                      perturbation=args.perturbation, perturbation_options=options)
    except ProviderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = trainer.train()
    logged = [entry for entry in trainer.state.log_history if "task_loss" in entry]
    predictions = trainer.predict(test)
    accuracy = float((np.argmax(predictions.predictions, axis=-1) == predictions.label_ids).mean())
    summary = {"perturbation": trainer.perturbation, "options": trainer.perturbation_options,
               "train_examples": len(train), "test_examples": len(test), "test_accuracy": round(accuracy, 4),
               "updates": result.global_step,
               "seconds_per_update": round(result.metrics["train_runtime"] / max(1, result.global_step), 4),
               "train_loss": round(result.training_loss, 4)}
    if logged:
        last = logged[-1]
        summary["last_log"] = {key: round(value, 6) for key, value in last.items()
                               if key in ("task_loss", "adv_loss", "noise_share", "changed_share", "skipped_steps",
                                          "forward_passes_per_step", "backward_passes_per_step")}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
