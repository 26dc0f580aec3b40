"""The top-k cosine neighbour table equals a brute-force table, is cached safely, and is sane on MiniLM."""

from __future__ import annotations

import json
import logging
import struct

import pytest
import torch

from noise_training.neighbors import (
    NeighborTable,
    load_or_build_neighbor_table,
    never_neighbor_token_ids,
    topk_cosine_neighbors,
)

LOGGER = "noise_training.neighbors"


# --------------------------------------------------------------------------- references


def brute_force(x: torch.Tensor, k: int, excluded=()):
    """The straightforward table: the full similarity matrix, a stable sort of every row.

    Returns (indices [V, k], scores [V, k], full similarity matrix with self/excluded = -inf).
    """
    x = x.float()
    norms = x.norm(dim=1, keepdim=True)
    xn = torch.where(norms > 0, x / norms.clamp_min(1e-38), torch.zeros_like(x))
    sim = xn @ xn.T
    sim.fill_diagonal_(float("-inf"))
    if len(excluded):
        sim[:, list(excluded)] = float("-inf")
    scores, indices = torch.sort(sim, dim=1, descending=True, stable=True)
    return indices[:, :k], scores[:, :k], sim


def assert_table_equal_tolerant(indices, scores, ref_indices, ref_scores, sim, tol=1e-6):
    """Equal to the reference, except that two neighbours whose reference similarities are
    within ``tol`` (float32 rounding of different GEMM calls) may come in either order."""
    assert indices.dtype == torch.int64 and scores.dtype == torch.float32
    assert indices.shape == ref_indices.shape and scores.shape == ref_scores.shape
    assert torch.allclose(scores, ref_scores, atol=tol, rtol=0)
    # The neighbour we return really has (about) the score we return.
    assert torch.allclose(sim.gather(1, indices), scores, atol=tol, rtol=0)
    differ = indices != ref_indices
    if differ.any():
        near_tie = (sim.gather(1, indices) - ref_scores).abs() <= tol
        assert bool(near_tie[differ].all()), "indices differ where the reference has no near-tie"
    assert all(len(set(row.tolist())) == indices.shape[1] for row in indices)


def exact_arithmetic_matrix(vocab: int, dim: int, seed: int) -> torch.Tensor:
    """Rows with 4 entries of +-1/2 (unit norm exactly), so every cosine is a multiple of 1/4,
    computed exactly in any summation order: masses of exact ties, compared bit for bit.
    Includes duplicate rows, rows that are scalar multiples (x3, x0.25) and zero rows."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.zeros(vocab, dim)
    for r in range(vocab):
        cols = torch.randperm(dim, generator=gen)[:4]
        signs = torch.randint(0, 2, (4,), generator=gen).float() * 2 - 1
        x[r, cols] = 0.5 * signs
    x[5] = x[1]
    x[vocab - 1] = x[1]
    x[7] = 3.0 * x[2]
    x[vocab // 2] = 0.25 * x[2]
    x[3] = 0.0
    x[vocab - 2] = 0.0
    return x


def gaussian_matrix(vocab: int, dim: int, seed: int) -> torch.Tensor:
    """Random rows plus a duplicate, two scalar multiples and a zero row."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(vocab, dim, generator=gen)
    x[4] = x[vocab - 3]
    x[6] = 2.0 * x[0]
    x[vocab - 1] = 3.0 * x[1]
    x[2] = 0.0
    return x


# --------------------------------------------------------------------------- correctness

EXACT_CASES = [
    # (vocab, dim, block, k): blocks that do not divide V, a block >= V, multiples of 32.
    (37, 16, 5, 10),
    (37, 16, 5, 1),
    (100, 16, 7, 10),
    (100, 16, 7, 1),
    (50, 16, 64, 10),
    (300, 16, 64, 10),
    (300, 16, 96, 3),
]


@pytest.mark.numerics
@pytest.mark.parametrize("vocab,dim,block,k", EXACT_CASES)
@pytest.mark.parametrize("with_excluded", [False, True])
def test_exact_ties_equal_brute_force_bit_for_bit(vocab, dim, block, k, with_excluded):
    x = exact_arithmetic_matrix(vocab, dim, seed=vocab + block)
    excluded = [0, 1, 9, vocab - 4] if with_excluded else []
    indices, scores = topk_cosine_neighbors(x, k=k, block_size=block, excluded_ids=excluded)
    ref_indices, ref_scores, _ = brute_force(x, k, excluded)
    assert torch.equal(scores, ref_scores)
    assert torch.equal(indices, ref_indices)
    assert not bool((indices == torch.arange(vocab)[:, None]).any())
    if excluded:
        assert not bool(torch.isin(indices, torch.tensor(excluded)).any())


GAUSSIAN_CASES = [
    (37, 24, 5, 10),
    (100, 8, 7, 10),
    (100, 8, 7, 1),
    (60, 32, 64, 10),
    (500, 64, 64, 10),
    (700, 48, 128, 5),
]


@pytest.mark.numerics
@pytest.mark.parametrize("vocab,dim,block,k", GAUSSIAN_CASES)
@pytest.mark.parametrize("with_excluded", [False, True])
def test_gaussian_equals_brute_force(vocab, dim, block, k, with_excluded):
    x = gaussian_matrix(vocab, dim, seed=vocab * dim)
    excluded = [1, 3, vocab - 2] if with_excluded else []
    indices, scores = topk_cosine_neighbors(x, k=k, block_size=block, excluded_ids=excluded)
    ref_indices, ref_scores, sim = brute_force(x, k, excluded)
    assert_table_equal_tolerant(indices, scores, ref_indices, ref_scores, sim)
    assert not bool((indices == torch.arange(vocab)[:, None]).any())
    if excluded:
        assert not bool(torch.isin(indices, torch.tensor(excluded)).any())
    # The duplicate of row 0 (row 6 = 2 x row 0) is row 0's nearest neighbour and vice versa.
    if 0 not in excluded and 6 not in excluded:
        assert int(indices[0, 0]) == 6 and int(indices[6, 0]) == 0
        assert float(scores[0, 0]) == pytest.approx(1.0, abs=1e-6)


def test_zero_row_has_cosine_zero_and_lowest_ids_first():
    x = exact_arithmetic_matrix(40, 16, seed=3)  # rows 3 and 38 are zero
    indices, scores = topk_cosine_neighbors(x, k=5, block_size=7)
    assert not bool(torch.isnan(scores).any())
    assert torch.equal(scores[3], torch.zeros(5))
    assert indices[3].tolist() == [0, 1, 2, 4, 5]
    # Nobody's similarity with a zero row is above 0.
    assert not bool(((indices == 3) & (scores > 0)).any())


@pytest.mark.numerics
def test_block_size_never_changes_the_result():
    x = gaussian_matrix(333, 64, seed=11)
    first = topk_cosine_neighbors(x, k=10, block_size=32)
    _, _, sim = brute_force(x, 10)
    for block in (64, 100, 1024):
        other = topk_cosine_neighbors(x, k=10, block_size=block)
        assert_table_equal_tolerant(other[0], other[1], first[0], first[1], sim)


def test_worker_count_never_changes_the_result_and_threads_are_restored():
    # Enough blocks that two workers really interleave their merges.
    x = gaussian_matrix(2000, 32, seed=13)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = topk_cosine_neighbors(x, k=10, block_size=64, excluded_ids=[5, 6])
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        one = topk_cosine_neighbors(x, k=10, block_size=64, excluded_ids=[5, 6])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert torch.equal(two[0], one[0]) and torch.equal(two[1], one[1])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_any_float_dtype_is_computed_in_float32(dtype):
    x = gaussian_matrix(120, 32, seed=5).to(dtype)
    indices, scores = topk_cosine_neighbors(x, k=4, block_size=32)
    ref = topk_cosine_neighbors(x.float(), k=4, block_size=32)
    assert scores.dtype == torch.float32 and indices.dtype == torch.int64
    assert torch.equal(indices, ref[0]) and torch.equal(scores, ref[1])


def test_bad_input_is_one_clear_error():
    x = torch.randn(10, 4)
    with pytest.raises(ValueError, match="k=10 needs at least"):
        topk_cosine_neighbors(x, k=10)
    with pytest.raises(ValueError, match=r"excluded_ids must lie in \[0, 10\)"):
        topk_cosine_neighbors(x, k=2, excluded_ids=[10])
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        topk_cosine_neighbors(x, k=0)
    with pytest.raises(ValueError, match="2-D float tensor"):
        topk_cosine_neighbors(torch.arange(10), k=1)
    for bad in (float("nan"), float("inf"), 1e30):
        broken = x.clone()
        broken[2, 1] = bad
        with pytest.raises(ValueError, match="NaN, infinite or too large"):
            topk_cosine_neighbors(broken, k=2)


# --------------------------------------------------------------------------- the cache


def _messages(caplog, level):
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]


def _build_or_load(x, cache_dir, caplog, k=5, excluded=(7,)):
    caplog.clear()
    table = load_or_build_neighbor_table(
        embeddings=x, k=k, cache_dir=cache_dir, excluded_ids=excluded, block_size=64, show_progress=False
    )
    infos = _messages(caplog, logging.INFO)
    assert len(infos) == 1
    return table, infos[0].split()[0]  # "built" or "loaded"


def test_cache_second_call_loads_and_changes_invalidate(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    x = gaussian_matrix(200, 32, seed=1)
    first, how = _build_or_load(x, tmp_path, caplog)
    assert how == "built" and isinstance(first, NeighborTable)
    again, how = _build_or_load(x, tmp_path, caplog)
    assert how == "loaded"
    assert torch.equal(again.indices, first.indices) and torch.equal(again.scores, first.scores)
    assert again.key == first.key and again.k == 5

    changed = x.clone()
    changed[17, 3] += 0.25
    table, how = _build_or_load(changed, tmp_path, caplog)
    assert how == "built" and table.key != first.key
    _, how = _build_or_load(x, tmp_path, caplog, k=6)
    assert how == "built"
    _, how = _build_or_load(x, tmp_path, caplog, excluded=(7, 8))
    assert how == "built"
    _, how = _build_or_load(x, tmp_path, caplog)
    assert how == "loaded"
    assert not list(tmp_path.glob("*.tmp")), "temporary files left behind"


@pytest.mark.parametrize("damage", ["truncate", "garbage", "self_neighbour"])
def test_damaged_cache_is_reported_and_rebuilt(tmp_path, caplog, damage):
    caplog.set_level(logging.INFO, logger=LOGGER)
    x = gaussian_matrix(150, 16, seed=2)
    first, _ = _build_or_load(x, tmp_path, caplog)
    (path,) = tmp_path.glob("*.safetensors")
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"this is not a safetensors file" * 40)
    else:
        from safetensors.torch import save_file

        bad = first.indices.clone()
        bad[10, 0] = 10
        meta = {"key": first.key, "format_version": "1", "k": "5"}
        save_file({"indices": bad, "scores": first.scores}, str(path), metadata=meta)
    table, how = _build_or_load(x, tmp_path, caplog)
    warnings = _messages(caplog, logging.WARNING)
    assert how == "built"
    assert len(warnings) == 1 and path.name in warnings[0] and "\n" not in warnings[0]
    assert torch.equal(table.indices, first.indices)
    _, how = _build_or_load(x, tmp_path, caplog)
    assert how == "loaded"


def test_cache_file_is_safetensors_without_pickle(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    x = gaussian_matrix(90, 16, seed=4)
    table, _ = _build_or_load(x, tmp_path, caplog)
    (path,) = tmp_path.glob("*.safetensors")
    data = path.read_bytes()
    assert not data.startswith(b"\x80"), "pickle protocol header"
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    assert header["indices"]["dtype"] == "I64" and header["indices"]["shape"] == [90, 5]
    assert header["scores"]["dtype"] == "F32" and header["scores"]["shape"] == [90, 5]
    assert header["__metadata__"]["key"] == table.key
    # Nothing but the header and the raw tensor bytes.
    assert len(data) == 8 + header_len + 90 * 5 * (8 + 4)


# --------------------------------------------------------------------------- the real MiniLM


@pytest.fixture(scope="module")
def minilm(minilm_path):
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    model = AutoModel.from_pretrained(minilm_path)
    return tokenizer, model.get_input_embeddings().weight.detach()


def test_never_neighbor_ids_on_minilm(minilm):
    tokenizer, _ = minilm
    ids = never_neighbor_token_ids(tokenizer=tokenizer)
    tokens = set(tokenizer.convert_ids_to_tokens(ids))
    assert {"[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]", "[unused0]", "[unused993]"} <= tokens
    assert len(ids) == 5 + 994 and ids == sorted(set(ids))
    assert not tokens & {"car", "the", "[", "unused"}


def test_minilm_full_table(minilm, tmp_path, capsys):
    tokenizer, embeddings = minilm
    excluded = never_neighbor_token_ids(tokenizer=tokenizer)
    table = load_or_build_neighbor_table(
        embeddings=embeddings, k=10, cache_dir=tmp_path, excluded_ids=excluded, show_progress=False
    )
    vocab = embeddings.shape[0]
    assert table.indices.shape == (vocab, 10) == (30522, 10)
    assert not bool(torch.isin(table.indices, torch.tensor(excluded)).any())
    assert not bool((table.indices == torch.arange(vocab)[:, None]).any())
    assert bool((table.scores[:, 1:] <= table.scores[:, :-1]).all())

    def top(word, n=5):
        row = table.indices[tokenizer.convert_tokens_to_ids(word)]
        return tokenizer.convert_ids_to_tokens(row[:n].tolist())

    with capsys.disabled():
        for word in ("car", "happy", "she"):
            print(f"\nMiniLM top-5 of {word!r}: {top(word)}", end="")
    assert top("car", 1) == ["cars"] and "vehicle" in top("car")
    assert top("she", 1) == ["her"]
    assert {"happier", "happiness"} & set(top("happy"))

    # 300 rows against a brute-force computation of theirs.
    rows = torch.randperm(vocab, generator=torch.Generator().manual_seed(0))[:300]
    xn = torch.nn.functional.normalize(embeddings.float(), dim=1)
    sim = xn[rows] @ xn.T
    sim[torch.arange(300), rows] = float("-inf")
    sim[:, excluded] = float("-inf")
    ref_scores, ref_indices = torch.sort(sim, dim=1, descending=True, stable=True)
    assert_table_equal_tolerant(
        table.indices[rows], table.scores[rows], ref_indices[:, :10], ref_scores[:, :10], sim
    )
