"""The neighbour table's on-disk cache: its key, its file format, and validation on load.

Why this file exists: building the top-k table of a 30k-50k vocabulary takes many CPU-seconds,
so it is built once per (embedding matrix, k, excluded tokens) and reused; a cache is only
safe if a stale, truncated or foreign file can never be taken for the right table.

Cache (``load_or_build_neighbor_table``)
----------------------------------------
Key = sha256 over (format version, shape, k, sorted excluded ids, embedding bytes as float32);
the block size is not part of it because the result does not depend on it.  The file is a
safetensors file (``indices`` int64 [V, k], ``scores`` float32 [V, k], string metadata with the
key and format version: no pickle), written atomically (temporary file in the same folder,
flush + fsync, ``os.replace``) and validated on load (key, format version, dtypes, shapes,
index range, no self-neighbour, no excluded neighbour, finite non-increasing scores).  A file
that fails any check is reported with one warning line naming it and rebuilt.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from noise_training.atomic_files import atomic_write_bytes
from noise_training.neighbors_topk import DEFAULT_BLOCK_SIZE, topk_cosine_neighbors

# Named after the public module: users and tests filter the "loaded/built/unusable" lines by it.
logger = logging.getLogger("noise_training.neighbors")

FORMAT_VERSION = "1"


@dataclass(frozen=True)
class NeighborTable:
    """Top-k neighbours of every token: ``indices[t]`` are token ids, most similar first.

    ``scores[t]`` are the matching cosine similarities; ``key`` is the cache key the table was
    computed for (see the module docstring).
    """

    indices: torch.Tensor
    scores: torch.Tensor
    k: int
    key: str

    def to(self, device: torch.device | str) -> NeighborTable:
        """The same table on ``device`` (the provider moves it once, then gathers with it)."""
        return NeighborTable(
            indices=self.indices.to(device), scores=self.scores.to(device), k=self.k, key=self.key
        )


class _InvalidCache(Exception):
    """A cache file that cannot be used; the message says why."""


def neighbor_table_key(*, embeddings: torch.Tensor, k: int, excluded_ids: Iterable[int] = ()) -> str:
    """sha256 over (format version, shape, k, sorted excluded ids, embedding bytes as float32).

    The block size is left out on purpose: it never changes the table.
    """
    x = embeddings.detach().to("cpu", torch.float32).contiguous()
    excluded = sorted({int(i) for i in excluded_ids})
    digest = hashlib.sha256()
    digest.update(f"noise_training.neighbors format={FORMAT_VERSION}\n".encode())
    digest.update(f"shape={list(x.shape)}\nk={k}\nexcluded={excluded}\n".encode())
    digest.update(memoryview(x.numpy()).cast("B"))
    return digest.hexdigest()


def _cache_path(cache_dir: Path, key: str, k: int) -> Path:
    return cache_dir / f"neighbors_k{k}_{key[:24]}.safetensors"


def save_neighbor_table(*, table: NeighborTable, cache_dir: str | os.PathLike) -> Path:
    """Write ``table`` where ``load_or_build_neighbor_table`` will look for it; returns the path.

    For a table built outside that function (e.g. timed on its own by the benchmark); its
    ``key`` must be ``neighbor_table_key`` of the embeddings, k and excluded ids it was built
    from, or the next load will reject it and rebuild.
    """
    folder = Path(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = _cache_path(folder, table.key, table.k)
    _write_table(path, table)
    return path


def _write_table(path: Path, table: NeighborTable) -> None:
    """Atomic write: temporary file in the same folder, flush + fsync, os.replace."""
    from safetensors.torch import save

    data = save(
        {"indices": table.indices.contiguous(), "scores": table.scores.contiguous()},
        metadata={"key": table.key, "format_version": FORMAT_VERSION, "k": str(table.k)},
    )
    atomic_write_bytes(path, data)


def _read_table(path: Path, *, key: str, vocab: int, k: int, excluded: list[int]) -> NeighborTable:
    """Load and validate a cache file; any problem raises _InvalidCache saying what."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            names = set(handle.keys())
            if names != {"indices", "scores"}:
                raise _InvalidCache(f"tensors {sorted(names)}, expected ['indices', 'scores']")
            indices = handle.get_tensor("indices")
            scores = handle.get_tensor("scores")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise _InvalidCache(f"unreadable safetensors file: {exc}") from exc
    if meta.get("format_version") != FORMAT_VERSION:
        raise _InvalidCache(f"format version {meta.get('format_version')!r}, expected {FORMAT_VERSION!r}")
    if meta.get("key") != key:
        raise _InvalidCache("key does not match the embeddings, k and excluded ids")
    if indices.dtype != torch.int64 or scores.dtype != torch.float32:
        raise _InvalidCache(f"dtypes {indices.dtype}/{scores.dtype}, expected torch.int64/torch.float32")
    if tuple(indices.shape) != (vocab, k) or tuple(scores.shape) != (vocab, k):
        raise _InvalidCache(f"shapes {tuple(indices.shape)}/{tuple(scores.shape)}, expected {(vocab, k)}")
    if bool((indices < 0).any()) or bool((indices >= vocab).any()):
        raise _InvalidCache(f"neighbour ids outside [0, {vocab})")
    if bool((indices == torch.arange(vocab)[:, None]).any()):
        raise _InvalidCache("a token is its own neighbour")
    if excluded and bool(torch.isin(indices, torch.tensor(excluded, dtype=torch.int64)).any()):
        raise _InvalidCache("an excluded token is a neighbour")
    if not bool(torch.isfinite(scores).all()) or bool((scores[:, 1:] > scores[:, :-1]).any()):
        raise _InvalidCache("scores are not finite and non-increasing along each row")
    return NeighborTable(indices=indices, scores=scores, k=k, key=key)


def load_or_build_neighbor_table(
    *,
    embeddings: torch.Tensor,
    k: int,
    cache_dir: str | os.PathLike,
    excluded_ids: Iterable[int] = (),
    block_size: int | None = None,
    show_progress: bool = True,
) -> NeighborTable:
    """The top-k neighbour table of ``embeddings``, loaded from ``cache_dir`` or built and saved.

    The file name and its stored key come from ``neighbor_table_key``; a file that fails
    validation (wrong key, truncated, garbage, inconsistent tensors) is reported with one
    warning line naming it and rebuilt.  An INFO line says whether the table was loaded or
    built (with the seconds it took).
    """
    excluded = sorted({int(i) for i in excluded_ids})
    folder = Path(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    key = neighbor_table_key(embeddings=embeddings, k=k, excluded_ids=excluded)
    path = _cache_path(folder, key, k)
    vocab = int(embeddings.shape[0])
    if path.exists():
        start = time.perf_counter()
        try:
            table = _read_table(path, key=key, vocab=vocab, k=k, excluded=excluded)
        except _InvalidCache as exc:
            reason = " ".join(str(exc).split())  # one line, whatever the library said
            logger.warning("neighbour table cache %s is unusable (%s); rebuilding it", path, reason)
        else:
            seconds = time.perf_counter() - start
            logger.info("loaded neighbour table %s (V=%d, k=%d) in %.2f s", path, vocab, k, seconds)
            return table
    start = time.perf_counter()
    indices, scores = topk_cosine_neighbors(
        embeddings,
        k=k,
        block_size=DEFAULT_BLOCK_SIZE if block_size is None else block_size,
        excluded_ids=excluded,
        show_progress=show_progress,
    )
    table = NeighborTable(indices=indices, scores=scores, k=k, key=key)
    save_neighbor_table(table=table, cache_dir=folder)
    logger.info("built neighbour table %s (V=%d, k=%d) in %.1f s", path, vocab, k, time.perf_counter() - start)
    return table
