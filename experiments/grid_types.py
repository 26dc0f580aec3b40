"""What a grid is made of: its constants, models, methods, cells, presets and shared settings.

One job: the vocabulary of experiments.grid. A :class:`Cell` is one (model, method, seed)
training run with its folder RUNS/<model_tag>/<method>/seed<k>/; a :class:`Method` is a
--perturbation name plus the options that differ from the provider's defaults (so a
default-valued option never makes a second folder); :data:`PRESETS` are the paper's and
the CPU pipeline-check settings. Nothing here runs or reads anything.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from experiments.run_loading import model_tag, parse_method

REPO_ROOT = Path(__file__).resolve().parents[1]
TRAIN_SCRIPT = REPO_ROOT / "train.py"
DEFAULT_ANLI_DIR = "data/anli_v1.0"
ROUNDS = ("R1", "R2", "R3")
# Every dev and test split, named, so a run's evaluation does not depend on train.py's default.
EVAL_SPLITS = ",".join(f"anli:r{i}_{role}" for role in ("dev", "test") for i in (1, 2, 3))

# Run statuses, as names.
FINISHED = "finished"  # run_summary.json says finished: nothing to do
RESUME = "resume"  # unfinished, has a step checkpoint: continue it
RESTART = "restart"  # unfinished, no checkpoint to continue from: start afresh in the same folder
NEW = "new"  # no run yet

COMMAND_LOG = "grid_commands.jsonl"
TRAIN_LOG = "train.log"
LOCK_FILE = ".grid.lock"


class GridError(Exception):
    """A grid that cannot run as asked; the message is one line naming the flag or file."""


# ---------------------------------------------------------------- what a grid is made of


@dataclass(frozen=True)
class ModelSetting:
    """A --model value and the batch size the paper used with it."""

    name: str
    batch_size: int

    @property
    def tag(self) -> str:
        return model_tag(model=self.name)


@dataclass(frozen=True)
class Method:
    """A method folder: the --perturbation name and the options that differ from its defaults."""

    perturbation: str
    options: tuple[tuple[str, str], ...] = ()  # (option, value as written in the folder name)

    @property
    def folder(self) -> str:
        if not self.options:
            return self.perturbation
        return self.perturbation + "@" + ",".join(f"{key}={value}" for key, value in self.options)

    def flags(self) -> list[str]:
        out = ["--perturbation", self.perturbation]
        for key, value in self.options:
            out += [f"--{key}", value]
        return out


@dataclass(frozen=True)
class Cell:
    model: ModelSetting
    method: Method
    seed: int

    def run_dir(self, runs_dir: Path) -> Path:
        return Path(runs_dir) / self.model.tag / self.method.folder / f"seed{self.seed}"

    def label(self) -> str:
        return f"{self.model.tag} / {self.method.folder} / seed {self.seed}"


@dataclass(frozen=True)
class Preset:
    name: str
    models: tuple[ModelSetting, ...]
    seeds: tuple[int, ...]
    epochs: int
    learning_rate: float
    warmup: float
    max_seq_len: int
    max_train_examples: int | None
    max_eval_examples: int | None
    save_every: int  # checkpoint every N updates, so an interrupted run loses at most N
    runs_dir: str
    # Train on r1_dev when the training files are absent (the offline release has dev/test only).
    dev_fallback: bool
    summary: str


PRESETS: dict[str, Preset] = {
    "paper": Preset(
        name="paper",
        models=(ModelSetting("bert-base-uncased", 32), ModelSetting("roberta-large", 16)),
        seeds=(1, 2, 3, 4, 5, 6), epochs=6, learning_rate=2e-5, warmup=0.1, max_seq_len=512,
        max_train_examples=None, max_eval_examples=None, save_every=1000, runs_dir="runs/paper",
        dev_fallback=False,
        summary="the paper's setting: A1+A2+A3 train, lr 2e-5, 6 epochs, 10% warm-up, 6 seeds",
    ),
    "cpu": Preset(
        name="cpu",
        models=(ModelSetting("packaged-minilm", 16),),
        # A higher lr than the paper's: one short epoch at 2e-5 with warm-up barely moves the weights.
        seeds=(1,), epochs=1, learning_rate=5e-5, warmup=0.1, max_seq_len=128,
        max_train_examples=256, max_eval_examples=100, save_every=0, runs_dir="runs/cpu",
        dev_fallback=True,
        summary="pipeline check: packaged MiniLM, 256 training examples, 1 epoch, 1 seed, 100 eval examples per split",
    ),
}


# Options swept over powers of ten read best as 1e-3; shares (noise_size) as 0.3.
SCIENTIFIC_OPTIONS = frozenset({"adv_step_size", "adv_noise_var", "adv_epsilon"})


def format_setting(value: float, *, scientific: bool = False) -> str:
    """Folder-name text of a swept value, one spelling per number: '1e-3', '0.3', '1'."""
    if scientific and value != 0:
        mantissa, exponent = f"{value:e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exponent)}"
    return f"{value:g}"


def method(*, perturbation: str, **options: float | int | str) -> Method:
    """A Method; options equal to the provider's defaults are dropped, so the folder is shared."""
    from noise_training import registry
    from noise_training.errors import ProviderError

    try:
        spec = registry.get_spec(perturbation)
    except ProviderError as exc:
        raise GridError(str(exc)) from None
    defaults = {option.name: option.default for option in spec.options}
    kept = []
    for key, value in sorted(options.items()):
        if key not in defaults:
            raise GridError(f"method {perturbation}: it has no option {key!r} "
                            f"(it takes {', '.join(defaults) or 'none'})")
        if _same_value(value, defaults[key]):
            continue
        text = format_setting(value, scientific=key in SCIENTIFIC_OPTIONS) if isinstance(value, float) else str(value)
        kept.append((key, text))
    return Method(perturbation=spec.name, options=tuple(kept))


def method_from_folder(*, folder: str) -> Method:
    """'smart@adv_step_size=1e-3' -> Method('smart', (('adv_step_size', '1e-3'),))."""
    try:
        base, settings = parse_method(method=folder)
    except ValueError as exc:
        raise GridError(f"--methods: {exc}") from None
    values = {key: _number_or_text(value) for key, value in settings.items()}
    return method(perturbation=base, **values)


def _number_or_text(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def _same_value(a: object, b: object) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    except (TypeError, ValueError):
        return str(a) == str(b)


def build_cells(*, models: Iterable[ModelSetting], methods: Iterable[Method], seeds: Iterable[int]) -> list[Cell]:
    """Seed-major order: after each seed the whole table has one more run per cell."""
    cells, seen = [], set()
    for seed in seeds:
        for model in models:
            for item in methods:
                key = (model.tag, item.folder, seed)
                if key not in seen:
                    seen.add(key)
                    cells.append(Cell(model=model, method=item, seed=seed))
    return cells


@dataclass(frozen=True)
class GridSettings:
    runs_dir: Path
    data_dir: Path
    train_datasets: str
    epochs: int
    learning_rate: float
    warmup: float
    max_seq_len: int
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    test_datasets: str = EVAL_SPLITS
    save_every: int = 0
    gpus: int = 1
    cache_dir: Path | None = None
    extra_train_args: tuple[str, ...] = ()
    keep_step_checkpoints: bool = False
    notes: tuple[str, ...] = ()  # printed before the grid and the tables (e.g. "trained on dev")


def parse_methods(text: str) -> list[Method]:
    """'none,smart@adv_step_size=1e-3,1-1' -> Methods; a folder's own settings may hold commas
    (smart@adv_k=2,adv_step_size=1e-3), so a comma starts a new method only before a name without '='."""
    folders = re.split(r",(?=[^,=@]+(?:@|,|$))", text)
    methods = [method_from_folder(folder=f.strip()) for f in folders if f.strip()]
    if not methods:
        raise GridError(f"--methods {text!r}: expected at least one method")
    return methods
