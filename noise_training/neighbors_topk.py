"""The top-k cosine neighbour kernel: embeddings in, (indices, scores) tensors out.

Why this file exists: the paper (section 3.1) sorts every row of the V x V cosine matrix;
only the top 10 are ever used, so :func:`topk_cosine_neighbors` computes an exact top-k
table blockwise, without materialising the matrix, on worker threads. Pure tensors in and
out: no files, no caching (noise_training.neighbors_cache does that), no tokenizer.

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
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import torch

from noise_training.neighbors_select import RunningTopK, col_candidates, merge_candidates, row_candidates

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


def _panel(buf: torch.Tensor, rows: RunningTopK, j0: int, j1: int, cols: RunningTopK, i: int) -> torch.Tensor:
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

    def merge(self, table: RunningTopK, found: list) -> None:
        parts = [f for f in found if f is not None]
        if parts:
            rows, nbrs, v = (torch.cat(p) for p in zip(*parts))
            with self.lock:
                # Thresholds may have risen since the panel was read: drop what no longer fits.
                keep = v >= table.tau[rows]
                if not bool(keep.all()):
                    rows, nbrs, v = rows[keep], nbrs[keep], v[keep]
                if rows.numel():
                    merge_candidates(table, rows, nbrs, v)

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
    cand = RunningTopK(_normalised_blocks(x, cand_ids if excluded else None, b), cand_ids.numel(), k, b)
    excl = RunningTopK(_normalised_blocks(x, excl_ids, b), excl_ids.numel(), k, b) if excluded else None

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


def _symmetric_pass(table: RunningTopK, k: int, tile: int, workers: _Workers) -> None:
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
        found = row_candidates(s, table.tau[table.rows(i, i + 1)], k, tile, seed=True)
        workers.merge(table, [_shift(found, i * b, i * b)])

    def off_diagonal(task, buf) -> None:
        i, j0, j1 = task
        s = _panel(buf, table, j0, j1, table, i)
        found_rows = row_candidates(s, table.tau[table.rows(j0, j1)], k, tile)
        found_cols = col_candidates(s, table.tau[table.rows(i, i + 1)], k, tile)
        workers.merge(table, [_shift(found_rows, j0 * b, i * b), _shift(found_cols, i * b, j0 * b)])

    workers.run([(i, i, i + 1) for i in range(n)], diagonal)
    step = workers.panel_blocks
    workers.run([(i, j0, min(n, j0 + step)) for i in range(n) for j0 in range(i + 1, n, step)], off_diagonal)


def _rectangular_pass(table: RunningTopK, cols: RunningTopK, k: int, tile: int, workers: _Workers) -> None:
    """Top-k of every row of ``table`` among the rows of ``cols`` (excluded tokens: no symmetry).

    Every panel seeds the thresholds of the excluded rows it covers (see col_candidates).
    """
    b = table.b
    step = workers.panel_blocks

    def work(task, buf) -> None:
        i, j0, j1 = task
        s = _panel(buf, cols, j0, j1, table, i)
        found = col_candidates(s, table.tau[table.rows(i, i + 1)], k, tile)
        workers.merge(table, [_shift(found, i * b, j0 * b)])

    n = cols.n_blocks
    workers.run([(i, j0, min(n, j0 + step)) for i in range(table.n_blocks) for j0 in range(0, n, step)], work)


def _shift(found, row_base: int, col_base: int):
    """Candidates with block-local row/column indices -> table-wide indices."""
    if found is None:
        return None
    r, c, v = found
    return r + row_base, c + col_base, v
