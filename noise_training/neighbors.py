"""Top-k cosine neighbour table of a vocabulary (paper section 3.1), cached on disk.

Why this file exists
--------------------
Experiments 1 and 2 move a token embedding toward "the most similar other token" (method 1-1)
or one of its 10 most similar tokens (method 1-2).  The paper computes cosine similarity
between every pair of token embeddings and sorts every row; only the top 10 are ever used, so
this module keeps a top-k table instead (30,522^2 int32 indices alone would be 3.7 GB).  The
table is computed once per (embedding matrix, k, excluded tokens) before training and cached.

Which tokens may never be a neighbour (``never_neighbor_token_ids``)
--------------------------------------------------------------------
* The tokenizer's special tokens (``tokenizer.all_special_ids``: BERT ``[CLS] [SEP] [PAD]
  [UNK] [MASK]``, RoBERTa ``<s> </s> <pad> <unk> <mask>``).  They are not words: [CLS]/<s>,
  [SEP]/</s> and [PAD]/<pad> mark structure, and moving a word toward [MASK] would feed the
  model its pre-training objective (a partly masked input) instead of a word-level change.
* Never-used placeholder tokens: BERT's ``[unused0]`` ... ``[unused993]`` and fairseq/RoBERTa's
  ``madeupword0000`` ...  Their embeddings were never trained on text (they stayed near their
  random initialisation), so moving a word toward them moves it toward noise, not toward a
  similar word.
Excluded tokens still get their own neighbours (the provider leaves special tokens alone, but
a complete table costs little and keeps ``indices[token]`` valid for every token id); they
simply never appear in anyone's list.

Algorithm (``topk_cosine_neighbors``)
-------------------------------------
Rows are L2-normalised in float32 (a row of zero norm stays zero, so its cosine with
everything is 0: no NaN), and the similarity matrix S = Xn Xn^T is visited in b x b blocks,
never materialised.  Extra memory: the normalised copy (V x D floats), one panel of 16,384
rows x b (64 MB at b = 1024), the running [V, k] table and the candidate lists.

* Symmetry: S is symmetric, so a block S[J, I] (J > I) is computed once and updates the rows
  of block J (its rows) and the rows of block I (its columns).  Only the lower block triangle
  is multiplied: half the flops of the V x V matmul.  Blocks J = j0..j1 of one block column I
  are stacked into a panel so that each selection op below covers several blocks.
* Selection without a sort and (almost) without torch.topk: every row keeps a running exact
  top-k, whose k-th value tau_r is a lower bound of the row's final k-th value (it is the k-th
  best of a subset of the row).  So only entries >= tau_r can enter the final top-k, and they
  are found cheaply: the panel is cut into tiles of g = 32 consecutive entries (along rows for
  the row direction, down columns for the column direction), one vectorised ``amax`` per
  direction gives each tile's maximum (a few % of the matmul time), and only the rare tiles
  whose maximum reaches tau_r are read entry by entry.  Diagonal blocks are visited first;
  there a ``torch.topk`` of the block seeds tau (the k-th value of a block is a valid lower
  bound too), so every later block is filtered.  Candidates are merged once per block column
  (more often when many pile up), which keeps the number of small torch calls low.
* Exact, deterministic ties: the candidates (all entries >= tau, so ties at the boundary are
  never lost) are merged into the running table with ``torch.topk`` on a unique int64 key
  (order-preserving bits of the float32 score in the high half, ``2^31 - 1 - token_id`` in the
  low half): decreasing similarity, then the lower token id first, exactly as a stable sort of
  the full row would order them.  The table itself is kept as these keys.
* Excluded tokens are moved behind the others (order kept), the symmetric pass runs over the
  candidate tokens only, and the excluded rows get a plain (non-symmetric) pass over the
  candidates.  Because the order of candidates is kept, a tie broken on the permuted index is
  broken on the token id.
* Every similarity is one entry of a GEMM ``A @ B.T`` whose inner dimension is D and whose
  operands are whole blocks of the same padded, normalised matrix (the last block padded with
  rows whose similarities are set to -inf).  MKL sums each entry in the same order whatever
  the panel's height and whichever operand a block is, so a similarity does not depend on the
  panel it falls in: the table equals the straightforward table (every row block against every
  column block), bit for bit; the benchmark checks this at full size, the tests against a
  full-matrix brute force.
* Threads: products use torch's thread count; the selection ops run on one thread.  They are
  small, and on a shared 2-core machine a 2-thread op waits at its barrier whenever another
  process holds the second core (measured: 2-3x slower builds under load, no gain when idle).
* The table is always built on the CPU, so the cached result does not depend on the device.

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
import re
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

FORMAT_VERSION = "1"
# 1024: a b x D x b GEMM already runs at full speed, a block (4 MB) stays in the L2 caches
# while its tile maxima are taken, and 2 x 1024 rows of padding at most are wasted.
DEFAULT_BLOCK_SIZE = 1024
# Tile width of the maximum prefilter: 32 floats = two AVX-512 vectors, and measured the
# cheapest width for a contiguous amax (16 is 5x slower, 64 no faster).
_TILE = 32
# Rows per similarity panel (16,384 x 1024 floats = 64 MB at the default block size): large
# GEMMs, and the per-op cost of the selection amortised over 16 blocks, while the panel stays
# far below the memory target (measured on 30,522 x 768 against 4- and 8-block panels).
_PANEL_ROWS = 16384
# Candidates per row allowed to pile up before a merge raises the thresholds.
_MAX_PENDING = 4 * 10
# Threads of the selection ops (0: torch's count); see the module docstring.
_SELECTION_THREADS = 1
_FLOAT_MIN = torch.finfo(torch.float32).min
# The order key of (score -inf, id -1): below every real candidate, and it decodes to -inf.
_LOWEST_KEY = ((-0x7F800001) << 32) + 0x80000000
_PLACEHOLDER_TOKEN = re.compile(r"^(\[unused\d+\]|madeupword\d+)$")


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


def never_neighbor_token_ids(*, tokenizer) -> list[int]:
    """Token ids that may never be anyone's neighbour: special and placeholder tokens.

    Special tokens come from ``tokenizer.all_special_ids``; placeholders are vocabulary entries
    named ``[unused<N>]`` (BERT) or ``madeupword<N>`` (RoBERTa/fairseq).  Why: see the module
    docstring.  Returns a sorted list without duplicates.
    """
    ids = {int(i) for i in tokenizer.all_special_ids if i is not None}
    ids.update(int(i) for token, i in tokenizer.get_vocab().items() if _PLACEHOLDER_TOKEN.match(token))
    return sorted(ids)


# --------------------------------------------------------------------------- the computation


def _order_key(values: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Unique int64 key: a larger key is a higher score, then a lower id (ids in [-1, 2^31 - 1)).

    High 32 bits: the float32 bit pattern with the magnitude bits of negative numbers flipped,
    which orders like the float (``+ 0.0`` first turns -0.0 into +0.0 so that the two zeros
    tie, as in a float sort).  Low 32 bits: ``2^31 - 1 - id``.
    """
    bits = (values + 0.0).view(torch.int32).to(torch.int64)
    ordered = torch.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)
    return (ordered << 32) + (0x7FFFFFFF - ids)


def _key_scores(keys: torch.Tensor) -> torch.Tensor:
    """The float32 scores held in order keys (inverse of the high half of ``_order_key``)."""
    ordered = keys >> 32
    return torch.where(ordered >= 0, ordered, ordered ^ 0x7FFFFFFF).to(torch.int32).view(torch.float32)


def _key_ids(keys: torch.Tensor) -> torch.Tensor:
    """The token ids held in order keys (inverse of the low half of ``_order_key``)."""
    return 0x7FFFFFFF - (keys & 0xFFFFFFFF)


def _merge(table: _Table, rows: torch.Tensor, nbrs: torch.Tensor, v: torch.Tensor) -> None:
    """Merge candidates (row ids, neighbour ids, scores) into the running top-k table in place.

    The candidates are grouped by row and laid out in a padded key matrix next to each row's
    running top-k keys; one ``torch.topk`` of the unique keys keeps the exact top-k (no full
    sort of a row: the only sort is of the candidate list by row id).
    """
    rows, order = torch.sort(rows)
    uniq, counts = torch.unique_consecutive(rows, return_counts=True)
    group = torch.repeat_interleave(torch.arange(uniq.numel()), counts)
    pos = torch.arange(rows.numel()) - (torch.cumsum(counts, 0) - counts)[group]
    pad = torch.full((uniq.numel(), int(counts.max())), _LOWEST_KEY, dtype=torch.int64)
    pad[group, pos] = _order_key(v[order], nbrs[order])
    best = torch.topk(torch.cat([table.keys[uniq], pad], dim=1), table.k, dim=1).values
    table.keys[uniq] = best
    table.tau[uniq] = _key_scores(best[:, -1])


def _threshold(tau: torch.Tensor, block_kth: torch.Tensor | None) -> torch.Tensor:
    """Threshold for one block: the running k-th value, raised by the block's own k-th value.

    Clamped to the lowest finite float so that -inf entries (self, padding) never qualify.
    """
    if block_kth is not None:
        tau = torch.maximum(tau, block_kth)
    return tau.clamp_min(_FLOAT_MIN)


def _row_candidates(s: torch.Tensor, tau: torch.Tensor, k: int, tile: int, *, seed: bool = False):
    """Entries s[r, c] >= threshold of row r, as (r, c, value); None when there are none.

    ``seed``: raise the threshold with the block's own k-th value per row (diagonal blocks, and
    any block holding a row that has no finite threshold yet, which would let everything in).
    """
    br, bc = s.shape
    block_kth = None
    if bc >= k and (seed or bool(torch.isneginf(tau).any())):
        block_kth = torch.topk(s, k, dim=1).values[:, -1]
    thr = _threshold(tau, block_kth)
    tiles = s.view(br, bc // tile, tile)
    # Reducing over a strided axis vectorises across tiles: 1.8x faster than amax(dim=2).
    active = (tiles.transpose(1, 2).amax(dim=1) >= thr[:, None]).nonzero()
    if active.numel() == 0:
        return None
    r, t = active.unbind(1)
    picked = tiles[r, t]
    which, off = (picked >= thr[r, None]).nonzero().unbind(1)
    return r[which], t[which] * tile + off, picked[which, off]


def _col_candidates(s: torch.Tensor, tau: torch.Tensor, k: int, tile: int):
    """Entries s[r, c] >= threshold of column c, as (c, r, value); None when there are none."""
    br, bc = s.shape
    block_kth = None
    if br >= k and bool(torch.isneginf(tau).any()):
        block_kth = torch.topk(s, k, dim=0).values[-1]
    thr = _threshold(tau, block_kth)
    tiles = s.view(br // tile, tile, bc)
    active = (tiles.amax(dim=1) >= thr[None, :]).nonzero()
    if active.numel() == 0:
        return None
    t, c = active.unbind(1)
    picked = tiles[t, :, c]
    which, off = (picked >= thr[c, None]).nonzero().unbind(1)
    return c[which], t[which] * tile + off, picked[which, off]


class _Candidates:
    """Candidate (row, neighbour, score) triples gathered over several blocks, merged at once.

    Merging after every block costs ~20 small torch calls per block; merging once per row
    block costs a few more candidates (thresholds are a little staler) and far fewer calls.
    """

    def __init__(self) -> None:
        self.parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.count = 0

    def add(self, found, row_block: int, col_block: int, block: int) -> None:
        """Candidates found in a panel whose first row/column blocks are the given ones."""
        if found is not None:
            r, c, v = found
            self.parts.append((r + row_block * block, c + col_block * block, v))
            self.count += r.numel()

    def merge_into(self, table: _Table) -> None:
        if self.parts:
            rows, nbrs, v = (torch.cat(p) for p in zip(*self.parts))
            _merge(table, rows, nbrs, v)
        self.parts = []
        self.count = 0


def _normalised_blocks(x: torch.Tensor, ids: torch.Tensor | None, block: int) -> torch.Tensor:
    """Rows ``x[ids]`` (all rows when ids is None) in float32, unit norm, zero-padded to blocks.

    A row whose float32 norm is 0 becomes a zero row: its cosine with everything is 0 (no NaN).
    Converted and normalised in chunks, in place, so the only full-size allocation is the
    result itself (no float32 copy of the input next to it).
    """
    n = x.shape[0] if ids is None else ids.numel()
    out = torch.zeros(-(-n // block) * block, x.shape[1], dtype=torch.float32)
    chunk = 4096
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        part = out[start:stop]
        part.copy_(x[start:stop] if ids is None else x[ids[start:stop]])
        norms = torch.linalg.vector_norm(part, dim=1, keepdim=True)
        part.div_(norms.clamp_min(torch.finfo(torch.float32).tiny))
        part[norms.squeeze(1) == 0] = 0.0
    return out


def _check_inputs(embeddings: torch.Tensor, k: int, block_size: int, excluded: list[int]) -> None:
    """One-line ValueError naming the argument and what was expected."""
    if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 2 or not embeddings.is_floating_point():
        raise ValueError(
            "topk_cosine_neighbors: embeddings must be a 2-D float tensor [V, D], got "
            f"{type(embeddings).__name__} {tuple(getattr(embeddings, 'shape', ()))} "
            f"{getattr(embeddings, 'dtype', '')}"
        )
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"topk_cosine_neighbors: k must be an integer >= 1, got {k!r}")
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"topk_cosine_neighbors: block_size must be an integer >= 1, got {block_size!r}")
    vocab = embeddings.shape[0]
    bad = [i for i in excluded if not 0 <= i < vocab]
    if bad:
        raise ValueError(f"topk_cosine_neighbors: excluded_ids must lie in [0, {vocab}), got {bad[:5]}")
    allowed = vocab - len(excluded)
    if k > allowed - 1:
        raise ValueError(
            f"topk_cosine_neighbors: k={k} needs at least k+1={k + 1} tokens that may be neighbours, "
            f"got {allowed} (vocabulary {vocab}, {len(excluded)} excluded)"
        )
    if not bool(torch.isfinite(embeddings).all()):
        raise ValueError("topk_cosine_neighbors: embeddings contain NaN or infinite values")


class _Table:
    """Rows (normalised, padded to whole blocks) and their running top-k, kept as order keys.

    ``keys[r]`` holds row r's best keys so far in decreasing order; ``tau[r]`` is the score of
    the last one, the running k-th value (-inf until k candidates were seen).
    """

    def __init__(self, xn: torch.Tensor, n_valid: int, k: int, block: int) -> None:
        self.xn = xn
        self.n_valid = n_valid
        self.k = k
        self.b = block
        self.n_blocks = xn.shape[0] // block
        self.keys = torch.full((xn.shape[0], k), _LOWEST_KEY, dtype=torch.int64)
        self.tau = torch.full((xn.shape[0],), float("-inf"))
        # Padding rows get +inf thresholds: they never accept a candidate, never need seeding.
        self.tau[n_valid:] = float("inf")

    def rows(self, first_block: int, end_block: int) -> slice:
        return slice(first_block * self.b, end_block * self.b)

    def scores_and_ids(self) -> tuple[torch.Tensor, torch.Tensor]:
        keys = self.keys[: self.n_valid]
        return _key_scores(keys), _key_ids(keys)


class _Panels:
    """Similarity panels: row blocks j0..j1 of one table against one column block of another.

    One GEMM per panel ((j1 - j0) b x D x b): on a shared 2-core machine large GEMMs lose far
    less to other processes than many block-sized ones (measured: the lower triangle as 1024 x
    1024 blocks took 0.76-0.83 of the whole V x V product, as 8-block panels 0.52-0.71).  A
    panel holds up to _PANEL_ROWS rows, so each selection op covers several blocks too.
    """

    def __init__(self, block: int, threads: int) -> None:
        self.b = block
        self.threads = threads
        self.blocks = max(1, _PANEL_ROWS // block)
        self.buf = torch.empty(self.blocks * block, block)

    def compute(self, rows: _Table, j0: int, j1: int, cols: _Table, i: int) -> torch.Tensor:
        """Similarities of rows' blocks j0..j1 with cols' block i; padding set to -inf."""
        b = self.b
        panel = self.buf[: (j1 - j0) * b]
        torch.set_num_threads(self.threads)
        torch.mm(rows.xn[j0 * b : j1 * b], cols.xn[i * b : (i + 1) * b].t(), out=panel)
        torch.set_num_threads(_SELECTION_THREADS or self.threads)
        if j1 * b > rows.n_valid:
            panel[max(0, rows.n_valid - j0 * b) :] = float("-inf")
        if (i + 1) * b > cols.n_valid:
            panel[:, max(0, cols.n_valid - i * b) :] = float("-inf")
        return panel


def _tile_width(block: int) -> int:
    """Largest power of two <= _TILE dividing the block size (1 for odd block sizes)."""
    tile = _TILE
    while block % tile:
        tile //= 2
    return tile


def topk_cosine_neighbors(
    embeddings: torch.Tensor,
    *,
    k: int,
    block_size: int = DEFAULT_BLOCK_SIZE,
    excluded_ids: Iterable[int] | None = None,
    show_progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """For every row of ``embeddings`` [V, D], its top-k other rows by cosine similarity.

    Returns ``(indices, scores)``: int64 [V, k] and float32 [V, k] on the CPU, most similar
    first, ties broken by the lower token id; a row is never its own neighbour and no id of
    ``excluded_ids`` is ever a neighbour (excluded rows still get neighbours).  Computed in
    float32 whatever the input dtype, blockwise and symmetric (see the module docstring);
    ``block_size`` changes speed and memory, never the result (a multiple of 32 is fastest).
    ``show_progress`` shows a tqdm bar over row blocks (tqdm hides it when not on a terminal).
    """
    excluded = sorted({int(i) for i in excluded_ids}) if excluded_ids is not None else []
    _check_inputs(embeddings, k, block_size, excluded)
    x = embeddings.detach().to("cpu")
    vocab = x.shape[0]
    keep = torch.ones(vocab, dtype=torch.bool)
    keep[torch.tensor(excluded, dtype=torch.int64)] = False
    cand_ids = keep.nonzero().squeeze(1)
    excl_ids = (~keep).nonzero().squeeze(1)
    b = block_size
    tile = _tile_width(b)
    cand = _Table(_normalised_blocks(x, cand_ids if excluded else None, b), cand_ids.numel(), k, b)
    excl = _Table(_normalised_blocks(x, excl_ids, b), excl_ids.numel(), k, b) if excluded else None

    from tqdm.auto import tqdm

    progress = tqdm(
        total=cand.n_blocks + (excl.n_blocks if excl else 0),
        desc="neighbour table",
        unit="row block",
        disable=None if show_progress else True,
    )
    threads = torch.get_num_threads()
    panels = _Panels(b, threads)
    try:
        with progress:
            _symmetric_pass(cand, k, tile, panels, progress)
            if excl is not None:
                _rectangular_pass(excl, cand, k, tile, panels, progress)
    finally:
        torch.set_num_threads(threads)

    indices = torch.empty(vocab, k, dtype=torch.int64)
    scores = torch.empty(vocab, k, dtype=torch.float32)
    # Neighbours are positions among the candidates; cand_ids maps them back to token ids.
    for table, ids in ((cand, cand_ids), (excl, excl_ids)):
        if table is not None:
            table_scores, positions = table.scores_and_ids()
            indices[ids] = cand_ids[positions]
            scores[ids] = table_scores
    return indices, scores


def _symmetric_pass(table: _Table, k: int, tile: int, panels: _Panels, progress) -> None:
    """Top-k of every row among the same rows: the upper block triangle, used both ways.

    Panel (blocks j0..j1) x (block i) with j > i: its rows update blocks j0..j1, its columns
    block i; the transposed panel is never computed.
    """
    n = table.n_blocks
    # Diagonal blocks first: their own k-th values seed every row's threshold.
    for i in range(n):
        s = panels.compute(table, i, i + 1, table, i)
        s.fill_diagonal_(float("-inf"))
        pending = _Candidates()
        pending.add(_row_candidates(s, table.tau[table.rows(i, i + 1)], k, tile, seed=True), i, i, table.b)
        pending.merge_into(table)
    for i in range(n):
        # Two pools: block i's rows collect many candidates each (their thresholds stay put
        # during the loop), the other rows few each; one padded merge of both would waste time.
        own, others = _Candidates(), _Candidates()
        for j0 in range(i + 1, n, panels.blocks):
            j1 = min(n, j0 + panels.blocks)
            s = panels.compute(table, j0, j1, table, i)
            others.add(_row_candidates(s, table.tau[table.rows(j0, j1)], k, tile), j0, i, table.b)
            own.add(_col_candidates(s, table.tau[table.rows(i, i + 1)], k, tile), i, j0, table.b)
            if own.count > _MAX_PENDING * table.b:
                own.merge_into(table)
        own.merge_into(table)
        others.merge_into(table)
        progress.update(1)


def _rectangular_pass(table: _Table, cols: _Table, k: int, tile: int, panels: _Panels, progress) -> None:
    """Top-k of every row of ``table`` among the rows of ``cols`` (excluded tokens: no symmetry)."""
    for i in range(table.n_blocks):
        for j0 in range(0, cols.n_blocks, panels.blocks):
            j1 = min(cols.n_blocks, j0 + panels.blocks)
            s = panels.compute(cols, j0, j1, table, i)
            # Merged after every panel: the first one seeds these rows' thresholds.
            pending = _Candidates()
            pending.add(_col_candidates(s, table.tau[table.rows(i, i + 1)], k, tile), i, j0, table.b)
            pending.merge_into(table)
        progress.update(1)


# --------------------------------------------------------------------------- the cache


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


def _write_table(path: Path, table: NeighborTable) -> None:
    """Atomic write: temporary file in the same folder, flush + fsync, os.replace."""
    from safetensors.torch import save

    data = save(
        {"indices": table.indices.contiguous(), "scores": table.scores.contiguous()},
        metadata={"key": table.key, "format_version": FORMAT_VERSION, "k": str(table.k)},
    )
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:
        # Make the rename itself durable (POSIX); harmless to skip where folders cannot be opened.
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


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
            logger.warning("neighbour table cache %s is unusable (%s); rebuilding it", path, exc)
        else:
            logger.info("loaded neighbour table %s (V=%d, k=%d) in %.2f s", path, vocab, k, time.perf_counter() - start)
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
    _write_table(path, table)
    logger.info("built neighbour table %s (V=%d, k=%d) in %.1f s", path, vocab, k, time.perf_counter() - start)
    return table
