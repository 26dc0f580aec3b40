"""The pretrained model's files: where they are, what they hash to, and whether they are whole.

A run's weights are decided by the exact encoder it started from, so a run records the
model folder's resolved path and the SHA-256 of its ``config.json`` and weight files, and
``--resume`` compares those (a trailing ``/`` or a ``~`` in ``--model`` changes nothing).
The files are also checked before ``from_pretrained`` reads them, so that a truncated
``model.safetensors`` or a broken ``config.json`` is one line naming the file, not a
traceback from deep inside a loader; and ``--max_seq_len`` is checked against the number
of positions the model's config says it has.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

from mt_dnn.errors import ConfigError
from mt_dnn.json_input import read_json_object

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".index.json", ".pt", ".pth", ".h5", ".msgpack")
# Encoders that number positions from padding_idx + 1 (RoBERTa's scheme): they lose
# pad_token_id + 1 of their max_position_embeddings.
_PADDING_OFFSET_TYPES = {"roberta", "xlm-roberta", "camembert", "longformer", "data2vec-text", "xmod",
                         "roberta-prelayernorm", "mpnet", "ibert", "luke", "xlm-roberta-xl", "markuplm"}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_folder(model_path: str) -> Path | None:
    """The local folder ``from_pretrained`` reads: the folder itself, or a hub name's cached snapshot."""
    local = Path(model_path).expanduser()
    if local.is_dir():
        return local.resolve()
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id=model_path, filename="config.json")
    except Exception:  # not a valid repo id: no cached snapshot to describe
        return None
    return Path(found).parent if isinstance(found, str) else None


def weight_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES))


def check_safetensors(path: Path) -> None:
    """Raise ConfigError when ``path`` is not a whole safetensors file (header + every tensor's bytes)."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as handle:
            (header_size,) = struct.unpack("<Q", handle.read(8))
            if header_size > size - 8:
                raise ValueError(f"its header claims {header_size} bytes but the file has {size}")
            header = json.loads(handle.read(header_size))
        ends = [entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"]
    except (struct.error, ValueError, KeyError, TypeError, IndexError, RecursionError, AttributeError) as exc:
        reason = str(exc) if isinstance(exc, ValueError) and "header claims" in str(exc) else "unreadable header"
        raise ConfigError(f"{path}: not a valid safetensors file ({reason}); download the model again") from None
    expected = 8 + header_size + max(ends, default=0)
    if size < expected:
        raise ConfigError(f"{path}: truncated safetensors file ({size} bytes, its header describes {expected}); "
                          "download the model again")


def model_identity(*, model_path: str, tokenizer_fingerprint: str) -> dict:
    """What --resume compares: resolved folder, SHA-256 of config.json and weight files, tokenizer.

    The weight files are checked to be whole first (a clear error instead of a loader's traceback).
    """
    folder = model_folder(model_path)
    identity: dict = {"name": model_path, "path": str(folder) if folder else None, "files": {},
                      "tokenizer": tokenizer_fingerprint}
    if folder is None:
        return identity
    for path in [folder / "config.json", *weight_files(folder)]:
        if not path.is_file():
            continue
        if path.suffix == ".safetensors":
            check_safetensors(path)
        identity["files"][path.name] = file_sha256(path)
    return identity


def load_model_config(model_path: str, *, flag: str = "--model"):
    """The encoder's transformers config; one line naming the file when it is missing or broken."""
    from transformers import AutoConfig

    folder = model_folder(model_path)
    if folder is not None:
        config_file = folder / "config.json"
        if not config_file.is_file():
            raise ConfigError(f"{flag} {model_path}: {config_file} is missing (not a model folder)")
        read_json_object(config_file, what="the model's config")  # a clear line for a broken file
    try:
        return AutoConfig.from_pretrained(model_path)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{flag} {model_path}: cannot load its config ({first})") from None


def max_positions(model_config) -> int | None:
    """How many tokens one input may have, from the config (None when it does not say)."""
    positions = getattr(model_config, "max_position_embeddings", None)
    if not isinstance(positions, int) or positions <= 0:
        return None
    if getattr(model_config, "model_type", None) in _PADDING_OFFSET_TYPES:
        positions -= (getattr(model_config, "pad_token_id", None) or 0) + 1
    return positions


def check_max_seq_len(*, max_seq_len: int, tokenizer, model_config, model_path: str) -> None:
    """Room for the pair's special tokens plus one token of each text, and no more than the model's positions."""
    special = tokenizer.num_special_tokens_to_add(pair=True)
    low = special + 2
    high = max_positions(model_config)
    if max_seq_len < low:
        raise ConfigError(f"--max_seq_len: expected at least {low} ({special} special tokens plus one token each "
                          f"for premise and hypothesis), got {max_seq_len}")
    if high is not None and max_seq_len > high:
        raise ConfigError(f"--max_seq_len: expected at most {high} (the positions of --model {model_path}), "
                          f"got {max_seq_len}")
