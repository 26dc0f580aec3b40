"""Selection primitives of the top-k kernel: order keys, per-panel candidates, the running top-k.

Why this file exists: noise_training.neighbors_topk visits the similarity matrix panel by
panel; what is done with one panel lives here, pure tensor operations with no threads and no
I/O. Every row keeps a running exact top-k (:class:`RunningTopK`) whose k-th value is a lower
bound of the row's final k-th value, so only entries at or above it can enter; they are
found through tile maxima (:func:`row_candidates`, :func:`col_candidates`) and merged with one
``torch.topk`` on a unique int64 order key (:func:`merge_candidates`), which breaks ties on
the lower token id exactly as a stable sort of the full row would. The algorithm as a whole
is described in noise_training.neighbors_topk.
"""

from __future__ import annotations

import torch

_FLOAT_MIN = torch.finfo(torch.float32).min
# The order key of (score -inf, id -1): below every real candidate, and it decodes to -inf.
_LOWEST_KEY = ((-0x7F800001) << 32) + 0x80000000


class RunningTopK:
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


def merge_candidates(table: RunningTopK, rows: torch.Tensor, nbrs: torch.Tensor, v: torch.Tensor) -> None:
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


def row_candidates(s: torch.Tensor, tau: torch.Tensor, k: int, tile: int, *, seed: bool = False):
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


def col_candidates(s: torch.Tensor, tau: torch.Tensor, k: int, tile: int):
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
