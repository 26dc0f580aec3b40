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
never materialised.  Extra memory: the normalised copy (V x D floats), one panel of 8,192
rows x b per worker (32 MB at b = 1024), the running [V, k] table and the candidate lists.

* Symmetry: S is symmetric, so a block S[J, I] (J > I) is computed once and updates the rows
  of block J (its rows) and the rows of block I (its columns).  Only the lower block triangle
  is multiplied: half the flops of the V x V matmul.  Blocks J = j0..j1 of one block column I
  are stacked into a panel so that each selection op below covers several blocks.
* Selection without a sort and (almost) without torch.topk: every row keeps a running exact
  top-k, whose k-th value tau_r is a lower bound of the row's final k-th value (it is the k-th
  best of a subset of the row).  So only entries >= tau_r can enter the final top-k, and they
  are found cheaply: the panel is cut into tiles of g = 16 entries (16 columns of one row for
  the row direction, 16 consecutive rows of one column for the column direction), one
  vectorised ``amax`` per direction gives each tile's maximum, and only the rare tiles whose
  maximum reaches tau_r are read entry by entry.  Thresholds are seeded from tile maxima too:
  the k largest tile maxima are k distinct entries, so the k-th of them is a valid lower
  bound.  Diagonal blocks are visited first and seed every row; each panel seeds the columns
  it covers (a panel holds 8 blocks of a column, which its running value has not seen).
  Measured at 30,522 x 768: selection and merging cost about a third of the CPU time of the half-size
  GEMMs, where a ``torch.topk`` of every block along rows and along columns measured 1.2-1.5x
  the block's GEMM time.
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
  column block), bit for bit; the benchmark checks this at full size, the tests compare with
  a full-matrix brute force (bit for bit on exactly representable data full of ties).
* Threads: torch's own threads are switched off (restored on return) and as many Python
  worker threads as torch had take panels in turn, each doing its GEMM, selection and merge
  single-threaded (see ``_Workers``).  On a free 2-core machine both cores stay busy; when
  other processes hold a core the workers just take turns, where a 2-thread torch op would
  wait at its barrier (measured with other jobs on the machine: builds 1.6-2.7x slower with
  2-thread selection).  Other Python threads running torch ops meanwhile see 1 thread.
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
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from mt_dnn.run_files import atomic_write_bytes

logger = logging.getLogger(__name__)

FORMAT_VERSION = "1"
# 1024: panel GEMMs (8 blocks x D x b) run at full speed, a diagonal block seeds thresholds
# from 1,023 columns, and at most 1,023 padding rows are computed for nothing (CPU time of a
# 30,522 x 768 build: 2048 measured no faster and needs twice the panel memory, 512 slower).
DEFAULT_BLOCK_SIZE = 1024
# Entries per tile of the maximum prefilter: narrower tiles mean fewer entries read per active
# tile, wider ones cheaper maxima; 16 measured ~5% cheaper builds than 32 and than 8.
_TILE = 16
# Rows per similarity panel (8,192 x 1024 floats = 32 MB per worker at the default block
# size): the per-op cost of the selection is amortised over 8 blocks; 16,384 rows measured no
# faster (CPU time on 30,522 x 768) and would cost 64 MB more with two workers.
_PANEL_ROWS = 8192
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
    sort of a row: the only sort is of the candidate list by row id).  A row's only candidate
    is inserted by comparison instead (the commonest case).  Rows are padded in classes of
    similar candidate counts (2-16, 17-64, 65-256, ...): one row with hundreds of candidates
    (a row whose threshold is still loose) must not widen the pad of 50,000 rows with a few
    each (measured: a 200 MB transient on 50,265 x 1,024 without the classes).
    """
    rows, order = torch.sort(rows)
    keys = _order_key(v[order], nbrs[order])
    uniq, counts = torch.unique_consecutive(rows, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    single = counts == 1
    if bool(single.any()):
        # Insert it: keys before it stay, the rest shift right by one and the last drops out.
        one_rows, one_keys = uniq[single], keys[starts[single]][:, None]
        old = table.keys[one_rows]
        at = (old > one_keys).sum(dim=1, keepdim=True)
        col = torch.arange(table.k)
        shifted = torch.cat([old[:, :1], old[:, :-1]], dim=1)
        new = torch.where(col < at, old, torch.where(col == at, one_keys, shifted))
        table.keys[one_rows] = new
        table.tau[one_rows] = _key_scores(new[:, -1])
    group = torch.repeat_interleave(torch.arange(uniq.numel()), counts)
    pos = torch.arange(rows.numel()) - starts[group]
    low, high = 1, 16
    largest = int(counts.max())
    while low < largest:
        in_class = (counts > low) & (counts <= high)
        low, high = high, high * 4
        members = in_class.nonzero().squeeze(1)
        if members.numel() == 0:
            continue
        # Position of each row of the class among the class's rows.
        slot = torch.cumsum(in_class, 0) - 1
        picked = in_class[group]
        pad = torch.full((members.numel(), int(counts[members].max())), _LOWEST_KEY, dtype=torch.int64)
        pad[slot[group[picked]], pos[picked]] = keys[picked]
        class_rows = uniq[members]
        best = torch.topk(torch.cat([table.keys[class_rows], pad], dim=1), table.k, dim=1).values
        table.keys[class_rows] = best
        table.tau[class_rows] = _key_scores(best[:, -1])


def _threshold(tau: torch.Tensor, block_kth: torch.Tensor | None) -> torch.Tensor:
    """Threshold for one panel: the running k-th value, raised by a k-th value of the panel.

    Clamped to the lowest finite float so that -inf entries (self, padding) never qualify.
    Returns a new tensor: a snapshot, whatever merges other workers do meanwhile.
    """
    if block_kth is not None:
        tau = torch.maximum(tau, block_kth)
    return tau.clamp_min(_FLOAT_MIN)


def _kth_of_maxima(maxima: torch.Tensor, k: int, dim: int) -> torch.Tensor | None:
    """k-th largest tile maximum along ``dim``, or None when there are fewer than k tiles.

    The k largest tile maxima are k distinct entries, so the k-th of them is at most the k-th
    largest entry: a valid threshold, from a topk over a fraction of the entries.
    """
    if maxima.shape[dim] < k:
        return None
    return torch.topk(maxima, k, dim=dim).values.select(dim, k - 1)


def _row_candidates(s: torch.Tensor, tau: torch.Tensor, k: int, tile: int, *, seed: bool = False):
    """Entries s[r, c] >= threshold of row r, as (r, c, value); None when there are none.

    Tiles are ``tile`` columns spaced b / tile apart (c = w * b / tile + t): reducing over the
    strided axis vectorises across tiles (measured 1.2-1.5x faster than tiles of consecutive
    columns).  ``seed``: raise the thresholds to the k-th tile maximum of each row (diagonal
    blocks, and any panel holding a row without a finite threshold yet, which would let every
    entry in).
    """
    br, bc = s.shape
    tiles = s.view(br, tile, bc // tile)
    maxima = tiles.amax(dim=1)
    block_kth = None
    if seed or bool(torch.isneginf(tau).any()):
        block_kth = _kth_of_maxima(maxima, k, dim=1)
    thr = _threshold(tau, block_kth)
    active = (maxima >= thr[:, None]).nonzero()
    if active.numel() == 0:
        return None
    r, t = active.unbind(1)
    picked = tiles[r, :, t]
    which, off = (picked >= thr[r, None]).nonzero().unbind(1)
    return r[which], off * (bc // tile) + t[which], picked[which, off]


def _col_candidates(s: torch.Tensor, tau: torch.Tensor, k: int, tile: int):
    """Entries s[r, c] >= threshold of column c, as (c, r, value); None when there are none.

    Tiles are ``tile`` consecutive rows of one column (reducing over them vectorises along the
    row).
    """
    br, bc = s.shape
    tiles = s.view(br // tile, tile, bc)
    maxima = tiles.amax(dim=1)
    # Seed every column with the panel itself: a panel holds many blocks of each column, so the
    # running k-th value lags far behind the panel's own (measured: 2.4x fewer candidates).
    # Maxima of 64 row groups are enough (the k-th largest of them is at most the column's k-th
    # largest entry) and take a topk over 64 values per column instead of one per tile.
    coarse = maxima
    if maxima.shape[0] > 64 and maxima.shape[0] % 64 == 0:
        coarse = maxima.view(64, maxima.shape[0] // 64, bc).amax(dim=1)
    thr = _threshold(tau, _kth_of_maxima(coarse, k, dim=0))
    active = (maxima >= thr[None, :]).nonzero()
    if active.numel() == 0:
        return None
    t, c = active.unbind(1)
    picked = tiles[t, :, c]
    which, off = (picked >= thr[c, None]).nonzero().unbind(1)
    return c[which], t[which] * tile + off, picked[which, off]


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
        if not bool(torch.isfinite(norms).all()):
            # A row's norm is NaN/inf iff it holds NaN/inf or squares past float32 (|x| > ~1e19).
            raise ValueError(
                "topk_cosine_neighbors: embeddings contain NaN, infinite or too large values "
                "(a row's float32 norm is not finite)"
            )
        part.div_(norms.clamp_min(torch.finfo(torch.float32).tiny))
        zero = norms.squeeze(1) == 0
        if bool(zero.any()):
            # Zero rows, or rows so tiny that their squares underflow: all zero, cosine 0.
            part[zero] = 0.0
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


def _panel(buf: torch.Tensor, rows: _Table, j0: int, j1: int, cols: _Table, i: int) -> torch.Tensor:
    """Similarities of ``rows``' blocks j0..j1 with ``cols``' block i, in ``buf``; padding -inf.

    One GEMM per panel ((j1 - j0) b x D x b) rather than one per block: fewer, larger calls.
    """
    b = rows.b
    panel = buf[: (j1 - j0) * b]
    torch.mm(rows.xn[j0 * b : j1 * b], cols.xn[i * b : (i + 1) * b].t(), out=panel)
    if j1 * b > rows.n_valid:
        panel[max(0, rows.n_valid - j0 * b) :] = float("-inf")
    if (i + 1) * b > cols.n_valid:
        panel[:, max(0, cols.n_valid - i * b) :] = float("-inf")
    return panel


class _Workers:
    """Runs panel tasks on ``count`` Python threads, every torch op single-threaded.

    Why not torch's own threads: a 2-thread op waits at a barrier whenever another process
    holds the second core, and the selection is many small ops (measured with other jobs on
    the machine: builds 1.6-2.7x slower with 2-thread selection), while the selection on one
    thread after 2-thread GEMMs leaves a core idle on a quiet machine.  Independent workers,
    each doing its own GEMMs and selection with one thread, keep both cores busy when they are
    free and merely take turns when they are not.  Torch ops release the GIL.  Each worker has
    its own panel buffer; merges into the shared table are serialised by a lock, while reads of
    the thresholds need none (a threshold only grows, and any value it had is a valid bound).
    """

    def __init__(self, count: int, block: int, progress) -> None:
        self.count = max(1, count)
        self.panel_blocks = max(1, _PANEL_ROWS // block)
        self.block = block
        self.progress = progress
        self.lock = threading.Lock()

    def merge(self, table: _Table, found: list) -> None:
        parts = [f for f in found if f is not None]
        if parts:
            rows, nbrs, v = (torch.cat(p) for p in zip(*parts))
            with self.lock:
                # Thresholds may have risen since the panel was read: drop what no longer fits.
                keep = v >= table.tau[rows]
                if not bool(keep.all()):
                    rows, nbrs, v = rows[keep], nbrs[keep], v[keep]
                if rows.numel():
                    _merge(table, rows, nbrs, v)

    def run(self, tasks: list, work) -> None:
        """Call ``work(task, buffer)`` for every task; tasks are taken in order."""
        pending = iter(tasks)
        take = threading.Lock()
        failed = threading.Event()

        def loop() -> None:
            # Per thread: OpenMP's and MKL's thread counts are thread-local, and a new thread
            # would otherwise run its first GEMMs on all cores (measured), oversubscribing them.
            torch.set_num_threads(1)
            buf = torch.empty(self.panel_blocks * self.block, self.block)
            while not failed.is_set():
                with take:
                    task = next(pending, None)
                if task is None:
                    return
                try:
                    work(task, buf)
                except BaseException:
                    failed.set()  # the other workers stop at their next task
                    raise
                with self.lock:
                    self.progress.update(task[2] - task[1])

        if self.count == 1:
            loop()
            return
        with ThreadPoolExecutor(max_workers=self.count) as pool:
            for future in [pool.submit(loop) for _ in range(self.count)]:
                future.result()


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
    ``block_size`` changes speed and memory, never the result (use a multiple of 16).
    ``show_progress`` shows a tqdm bar over row blocks (tqdm hides it when not on a terminal).
    """
    excluded = sorted({int(i) for i in excluded_ids}) if excluded_ids is not None else []
    _check_inputs(embeddings, k, block_size, excluded)
    threads = torch.get_num_threads()
    # torch's own threads off: _Workers runs that many single-threaded workers instead.
    torch.set_num_threads(1)
    try:
        return _build(embeddings.detach().to("cpu"), k, block_size, excluded, threads, show_progress)
    finally:
        torch.set_num_threads(threads)


def _build(x: torch.Tensor, k: int, b: int, excluded: list[int], threads: int, show_progress: bool):
    vocab = x.shape[0]
    keep = torch.ones(vocab, dtype=torch.bool)
    keep[torch.tensor(excluded, dtype=torch.int64)] = False
    cand_ids = keep.nonzero().squeeze(1)
    excl_ids = (~keep).nonzero().squeeze(1)
    tile = _tile_width(b)
    cand = _Table(_normalised_blocks(x, cand_ids if excluded else None, b), cand_ids.numel(), k, b)
    excl = _Table(_normalised_blocks(x, excl_ids, b), excl_ids.numel(), k, b) if excluded else None

    from tqdm.auto import tqdm

    n = cand.n_blocks
    with tqdm(
        total=n * (n + 1) // 2 + (excl.n_blocks * n if excl else 0),
        desc="neighbour table",
        unit="block",
        disable=None if show_progress else True,
    ) as progress:
        workers = _Workers(threads, b, progress)
        _symmetric_pass(cand, k, tile, workers)
        if excl is not None:
            _rectangular_pass(excl, cand, k, tile, workers)

    indices = torch.empty(vocab, k, dtype=torch.int64)
    scores = torch.empty(vocab, k, dtype=torch.float32)
    # Neighbours are positions among the candidates; cand_ids maps them back to token ids.
    for table, ids in ((cand, cand_ids), (excl, excl_ids)):
        if table is not None:
            table_scores, positions = table.scores_and_ids()
            indices[ids] = cand_ids[positions]
            scores[ids] = table_scores
    return indices, scores


def _symmetric_pass(table: _Table, k: int, tile: int, workers: _Workers) -> None:
    """Top-k of every row among the same rows: the lower block triangle, used both ways.

    Panel (blocks j0..j1) x (block i) with j > i: its rows update blocks j0..j1, its columns
    block i; the transposed panel is never computed.  Diagonal blocks go first: their own k-th
    values seed every row's threshold.  A task is (i, j0, j1).
    """
    n, b = table.n_blocks, table.b

    def diagonal(task, buf) -> None:
        i = task[0]
        s = _panel(buf, table, i, i + 1, table, i)
        s.fill_diagonal_(float("-inf"))
        found = _row_candidates(s, table.tau[table.rows(i, i + 1)], k, tile, seed=True)
        workers.merge(table, [_shift(found, i * b, i * b)])

    def off_diagonal(task, buf) -> None:
        i, j0, j1 = task
        s = _panel(buf, table, j0, j1, table, i)
        found_rows = _row_candidates(s, table.tau[table.rows(j0, j1)], k, tile)
        found_cols = _col_candidates(s, table.tau[table.rows(i, i + 1)], k, tile)
        workers.merge(table, [_shift(found_rows, j0 * b, i * b), _shift(found_cols, i * b, j0 * b)])

    workers.run([(i, i, i + 1) for i in range(n)], diagonal)
    step = workers.panel_blocks
    workers.run([(i, j0, min(n, j0 + step)) for i in range(n) for j0 in range(i + 1, n, step)], off_diagonal)


def _rectangular_pass(table: _Table, cols: _Table, k: int, tile: int, workers: _Workers) -> None:
    """Top-k of every row of ``table`` among the rows of ``cols`` (excluded tokens: no symmetry).

    Every panel seeds the thresholds of the excluded rows it covers (see _col_candidates).
    """
    b = table.b
    step = workers.panel_blocks

    def work(task, buf) -> None:
        i, j0, j1 = task
        s = _panel(buf, cols, j0, j1, table, i)
        found = _col_candidates(s, table.tau[table.rows(i, i + 1)], k, tile)
        workers.merge(table, [_shift(found, i * b, j0 * b)])

    n = cols.n_blocks
    workers.run([(i, j0, min(n, j0 + step)) for i in range(table.n_blocks) for j0 in range(0, n, step)], work)


def _shift(found, row_base: int, col_base: int):
    """Candidates with block-local row/column indices -> table-wide indices."""
    if found is None:
        return None
    r, c, v = found
    return r + row_base, c + col_base, v


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
