"""``predict.py``: score a trained checkpoint on a named split, or label new premise/hypothesis pairs.

It rebuilds the model from what the run saved in ``RUN/model`` (encoder config and
tokenizer), ``RUN/task_defs`` (its copy of the task definitions) and
``RUN/run_config.json`` (absolute paths), so it needs no network, no copy of the
pretrained weights, and works from any working directory (:mod:`mt_dnn.run_reader`).

``--input`` is read exactly as the task reads its own split files (its definition's
``reader``: a JSON object per line, or a tab-separated file with a header), so a TSV task
wants TSV; a file that does not parse says which format was expected. ``--output`` is
checked before any scoring: it may not be the input, a folder, or a file inside the run
folder (or any run folder), whose files the predictions would replace.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from mt_dnn.cli_train import OneLineErrorParser, positive_int
from mt_dnn.checkpoint import CheckpointManager, read_checkpoint
from mt_dnn.datasets import SplitRef, check_files_exist, load_splits, resolve_data_dirs
from mt_dnn.errors import ConfigError, DataError, UserError
from mt_dnn.evaluation import predict_split, prediction_records
from mt_dnn.features import load_tokenized_split
from mt_dnn.model import build_model
from mt_dnn.run_files import atomic_write_jsonl
from mt_dnn.model_files import load_model_config
from mt_dnn.run_reader import read_run_config, run_task_defs
from mt_dnn.run_setup import first_line, load_tokenizer, pick_device
from mt_dnn.substitution import DEFAULT_RATES, SUBSTITUTIONS, Substituter, pretrained_input_embeddings, substitute_split
from noise_training.errors import ProviderError


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="predict.py", description=__doc__.split("\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--run_dir", required=True, help="a training run's --output_dir")
    parser.add_argument("--checkpoint", default="best",
                        help="'best', 'latest', or a path to a checkpoint file")
    parser.add_argument("--task", default=None, help="which task head to use (default: the run's only task)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--split", help="evaluate a split of the task definition, e.g. r3_test")
    what.add_argument("--input", help="examples in the task's own file format (its task definition's reader: jsonl, "
                                       "one JSON object per line, or TSV; fields as the task defines; labels optional)")
    parser.add_argument("--data_dir", nargs="+", action="extend", default=None,
                        help="as train.py (default: the run's data folders)")
    parser.add_argument("--task_def", nargs="+", default=None, metavar="YAML",
                        help="read --split/--input as this file defines the task (same name, kind and labels as the "
                             "run's), e.g. task_defs/advglue.yml to score a GLUE-trained run on AdvGLUE")
    parser.add_argument("--output", required=True,
                        help="where to write the predictions (jsonl); not --input, a folder, or a file in a run folder")
    parser.add_argument("--batch_size", type=positive_int, default=64)
    parser.add_argument("--max_examples", type=positive_int, default=None,
                        help="score only the first N examples (as train.py's --max_eval_examples)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--substitute", choices=SUBSTITUTIONS, default=None,
                        help="score the split with tokens substituted (robust accuracy; mt_dnn/substitution.py): "
                             "wordnet synonyms of whole words, or each token's nearest vocabulary neighbour")
    parser.add_argument("--substitution_rate", type=unit_interval, default=None,
                        help="probability that an eligible token is substituted "
                             f"(default: wordnet {DEFAULT_RATES['wordnet']}, neighbour {DEFAULT_RATES['neighbour']})")
    parser.add_argument("--substitution_seed", type=int, default=0)
    parser.add_argument("--debug", action="store_true")
    return parser


def unit_interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def _substituted(data, *, args, config: dict, tokenizer):
    """``data`` with tokens substituted as --substitute asks, and the report of what changed."""
    from mt_dnn.packaged_model import resolve_model_name
    from mt_dnn.run_setup import default_cache_dir

    cache_dir = Path(config.get("cache_dir") or default_cache_dir())
    embeddings = None
    if args.substitute == "neighbour":
        base = config.get("model_path") or resolve_model_name(config["model"])
        embeddings = pretrained_input_embeddings(model_name=base)
    substituter = Substituter(kind=args.substitute, tokenizer=tokenizer, embeddings=embeddings, cache_dir=cache_dir)
    rate = DEFAULT_RATES[args.substitute] if args.substitution_rate is None else args.substitution_rate
    return substitute_split(data=data, substituter=substituter, rate=rate, seed=args.substitution_seed)


def _load_weights(run_dir: Path, which: str, device) -> dict:
    if which == "best":
        path = run_dir / "checkpoints" / "best.pt"
        if not path.exists():
            raise UserError(f"--checkpoint best: {path} does not exist (no dev split was evaluated?); try latest")
        return read_checkpoint(path, map_location=device)["model"]
    if which == "latest":
        found = CheckpointManager(run_dir / "checkpoints").load_latest(map_location=device)
        if found is None:
            raise UserError(f"--checkpoint latest: no checkpoint in {run_dir / 'checkpoints'}")
        return found[1]["model"]
    state = read_checkpoint(Path(which), map_location=device)
    if not isinstance(state, dict) or "model" not in state:
        raise UserError(f"--checkpoint {which}: not a checkpoint of this program (no model weights)")
    return state["model"]


def input_format(task) -> str:
    """What ``--input`` must look like for ``task``, in words."""
    keys = [key for key in ("premise", "hypothesis") if key in task.fields]
    fields = ", ".join(f"{task.fields[key]!r}" for key in keys)
    if task.reader == "tsv":
        if all(task.fields[key].isdigit() for key in keys):
            return f"tab-separated values without a header, text in columns {fields} (task {task.name}'s reader tsv)"
        return f"tab-separated values with a header line naming the columns {fields} (task {task.name}'s reader tsv)"
    return f"one JSON object per line with the fields {fields} (task {task.name}'s reader {task.reader})"


def check_output(*, output: Path, run_dir: Path, input_path: str | None) -> None:
    """``--output`` replaces nothing of value: checked before anything is loaded or scored."""
    from mt_dnn.run_folder import is_run_folder

    if output.is_dir():
        raise ConfigError(f"--output {output}: is a folder; expected the predictions' file name")
    where = output.resolve()
    if input_path is not None and Path(input_path).exists() and Path(input_path).resolve() == where:
        raise ConfigError(f"--output {output}: is the --input file, which the predictions would replace; "
                          "give another file")
    run = run_dir.resolve()
    for folder in where.parents:
        if folder == run or is_run_folder(folder):
            raise ConfigError(f"--output {output}: lies inside the run folder {folder}, whose files it could "
                              "replace; give a file outside it")


def _input_task(*, paths: list[str], trained):
    """The task as ``--task_def`` defines it, for reading only: the head's outputs must mean the same."""
    from mt_dnn.task_def import load_task_defs

    defined = load_task_defs(paths=paths)
    if trained.name not in defined:
        raise ConfigError(f"--task_def {' '.join(paths)}: defines no task {trained.name!r} "
                          f"(defines {', '.join(defined)})")
    task = defined[trained.name]
    if (task.task_type, task.labels) != (trained.task_type, trained.labels):
        raise ConfigError(f"--task_def {task.source}: task {task.name} is {task.task_type} with labels "
                          f"{list(task.labels)}; the run's head is {trained.task_type} with {list(trained.labels)}")
    return task


def predict(args) -> dict:
    run_dir = Path(args.run_dir)
    config = read_run_config(run_dir)
    tasks = run_task_defs(run_dir, config)
    trained = sorted({item.split(":")[0] for item in config["train_datasets"].split(",") if item})
    unknown = [name for name in trained if name not in tasks]
    if unknown:
        raise UserError(f"--run_dir {run_dir}: the run trained task {unknown[0]}, which its task definitions lack")
    task_name = args.task or (trained[0] if len(trained) == 1 else None)
    if task_name not in trained:
        raise ConfigError(f"--task: expected one of {', '.join(trained)}, got {args.task!r}")
    task = tasks[task_name]
    device = pick_device(args.device)
    model_dir = str(run_dir / "model")
    tokenizer = load_tokenizer(model_dir)
    load_model_config(model_dir, flag="--run_dir")
    try:
        model = build_model(model_name=model_dir, tasks={t: tasks[t] for t in trained}, from_config_only=True)
    except (OSError, ValueError) as exc:
        raise UserError(f"--run_dir {run_dir}: cannot rebuild the model from {model_dir} ({first_line(exc)})") from None
    try:
        model.load_state_dict(_load_weights(run_dir, args.checkpoint, device))
    except (RuntimeError, KeyError, TypeError) as exc:
        raise UserError(f"--checkpoint {args.checkpoint}: does not fit the model in {model_dir} "
                        f"({first_line(exc)})") from None
    model.to(device)
    if args.task_def:
        task = _input_task(paths=args.task_def, trained=task)
        tasks = {**tasks, task_name: task}

    if args.split:
        recorded = config.get("data_dirs") if isinstance(config.get("data_dirs"), dict) else {}
        data_dirs = resolve_data_dirs(values=args.data_dir or ([recorded[task_name]] if task_name in recorded else None),
                                      tasks=tasks)
        ref = SplitRef(task=task_name, split=args.split)
        if args.split not in task.splits:
            raise ConfigError(f"--split {args.split}: task {task_name} has no such split ({', '.join(task.splits)})")
        check_files_exist(refs=[ref], tasks=tasks, data_dirs=data_dirs)
        data = load_splits(refs=[ref], tasks=tasks, data_dirs=data_dirs, tokenizer=tokenizer,
                           max_seq_len=config["max_seq_len"], cache_dir=None)[ref]
    else:
        source = Path(args.input)
        if source.exists() and not source.is_file():
            raise DataError(f"--input {source}: not a regular file; expected {input_format(task)}")
        try:
            data = load_tokenized_split(path=source, task=task, split="input", tokenizer=tokenizer,
                                        max_seq_len=config["max_seq_len"], cache_dir=None, require_label=False)
        except DataError as exc:
            raise DataError(f"--input: {exc}; expected {input_format(task)}") from None
    if args.max_examples:
        data = data.take(args.max_examples)
    substitution = None
    if args.substitute:
        data, substitution = _substituted(data, args=args, config=config, tokenizer=tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    result = predict_split(model=model, data=data, task=task, batch_size=args.batch_size, device=device,
                           pad_token_id=pad)
    atomic_write_jsonl(Path(args.output), prediction_records(data=data, task=task, result=result))
    summary = {"examples": len(data), "output": args.output}
    if "accuracy" in result:
        summary["accuracy"] = result["accuracy"]
    if "metrics" in result:
        summary["metrics"] = result["metrics"]
    if substitution is not None:
        summary["substitution"] = substitution
    return summary


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args = build_parser().parse_args(argv)
        # The command line's --output only: the grid's robust phase writes into RUN/predictions/ itself.
        check_output(output=Path(args.output), run_dir=Path(args.run_dir), input_path=args.input)
        summary = predict(args)
    except (UserError, ProviderError) as exc:  # the providers' own errors too
        if "--debug" in argv:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. --output in a folder that cannot be written
        if "--debug" in argv:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0

