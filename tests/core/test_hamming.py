"""Exactness of the Hamming search against plain numpy references (whole file runs in seconds)."""

from __future__ import annotations

import numpy as np
import pytest

import samantics_dagster.core.dedupe.hamming as hamming_module
from benchmarks.dedupe_reference import brute_force_pairs, planted_codes
from samantics_dagster.core.dedupe.hamming import (
    HammingIndex,
    codes_to_hex,
    hamming,
    hex_to_codes,
    pairs_within,
)

U64 = np.uint64


def reference_pairs(codes: np.ndarray, radius: int) -> np.ndarray:
    """The most literal definition, independent of the module's own chunking."""
    d = np.bitwise_count(codes[:, None] ^ codes[None, :])
    i, j = np.nonzero(np.triu(d <= radius, k=1))
    return np.stack([i, j], axis=1).astype(np.int64)


def reference_nearest(index: np.ndarray, queries: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    pos = np.full(queries.size, -1, dtype=np.int64)
    dist = np.full(queries.size, -1, dtype=np.int64)
    for q, code in enumerate(queries.tolist()):
        ds = [bin(code ^ c).count("1") for c in index.tolist()]
        best = min(range(len(ds)), key=lambda k: (ds[k], k), default=None)
        if best is not None and ds[best] <= radius:
            pos[q], dist[q] = best, ds[best]
    return pos, dist


def random_codes(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, np.iinfo(U64).max, size=n, dtype=U64, endpoint=True)


def with_duplicates(codes: np.ndarray, seed: int) -> np.ndarray:
    """Copy some codes over others, so exact duplicates (distance 0) appear in groups of 2+."""
    rng = np.random.default_rng(seed)
    out = codes.copy()
    out[rng.choice(codes.size, codes.size // 20, replace=False)] = codes[rng.integers(0, 10, codes.size // 20)]
    return out


def dense_cluster(n: int, seed: int, max_flips: int = 2) -> np.ndarray:
    """n distinct-ish codes within a few bits of one centre: one run far longer than a bucket."""
    rng = np.random.default_rng(seed)
    centre = random_codes(1, seed)[0]
    bits = rng.integers(0, 64, size=(n, max_flips))
    keep = rng.integers(0, 2, size=(n, max_flips)).astype(bool)
    flips = np.bitwise_or.reduce(np.where(keep, U64(1) << bits.astype(U64), U64(0)), axis=1)
    return centre ^ flips


DATASETS = {
    "uniform": lambda: random_codes(2000, 1),
    "planted": lambda: planted_codes(2000, 2),
    "planted+dups": lambda: with_duplicates(planted_codes(2000, 3), 4),
    "tight clusters": lambda: planted_codes(2000, 5, cluster_size=100, flips_mean=1.0, clustered_fraction=0.8),
}


@pytest.mark.parametrize("name", list(DATASETS))
@pytest.mark.parametrize("radius", [0, 1, 4, 8, 10, 12])
def test_pairs_within_equals_brute_force(name: str, radius: int) -> None:
    codes = DATASETS[name]()
    expected = brute_force_pairs(codes, radius)
    assert np.array_equal(expected, reference_pairs(codes, radius))
    if name != "uniform":
        assert len(expected) > 0  # the planted data must actually exercise the search
    # Default block choice, and forced block counts so the pigeonhole path runs even where the
    # cost model would pick a scan at this small size.
    for blocks in (None, radius + 1, radius + 2, radius + 3):
        try:
            got = pairs_within(codes, radius, blocks=blocks)
        except ValueError as exc:  # r=1 with 3+ blocks: a 48-bit key leaves no room for the index
            assert "no room" in str(exc) and radius == 1 and blocks >= 3
            continue
        assert got.dtype == np.int64 and got.shape[1] == 2
        assert np.array_equal(got, expected), f"blocks={blocks}"


def test_long_runs_take_the_dense_path() -> None:
    """A cluster of 1500 codes within 2 bits puts >512 codes in one key bucket."""
    codes = np.concatenate([dense_cluster(1500, 6), random_codes(500, 7)])
    np.random.default_rng(8).shuffle(codes)
    for radius in (2, 4):
        expected = reference_pairs(codes, radius)
        assert len(expected) > 100_000
        assert np.array_equal(pairs_within(codes, radius, blocks=radius + 3), expected)


def test_dense_path_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the long-run threshold at 3, most buckets go through the dense path instead."""
    monkeypatch.setattr(hamming_module, "_LONG_RUN", 3)
    codes = with_duplicates(planted_codes(2000, 19), 20)
    for radius in (3, 8):
        assert np.array_equal(pairs_within(codes, radius, blocks=radius + 2), reference_pairs(codes, radius))


def test_pairs_edge_cases() -> None:
    empty = np.empty(0, dtype=U64)
    one = np.array([5], dtype=U64)
    for radius in (0, 8, 64):
        for codes in (empty, one):
            assert pairs_within(codes, radius).shape == (0, 2)
            assert brute_force_pairs(codes, radius).shape == (0, 2)
    dups = np.array([7, 7, 9, 7, 9], dtype=U64)
    expected = np.array([[0, 1], [0, 3], [1, 3], [2, 4]])
    assert np.array_equal(pairs_within(dups, 0), expected)
    assert np.array_equal(brute_force_pairs(dups, 0), expected)
    # 7 ^ 9 = 0b1110: three bits apart.
    assert len(pairs_within(dups, 3)) == 10 and len(pairs_within(dups, 2)) == 4
    codes = random_codes(300, 9)
    everything = reference_pairs(codes, 64)
    assert len(everything) == 300 * 299 // 2
    for radius in (63, 64, 100):
        assert np.array_equal(pairs_within(codes, radius), reference_pairs(codes, radius))
    assert np.array_equal(pairs_within(codes, 64), everything)
    assert pairs_within(codes, -1).shape == (0, 2)
    extremes = np.array([0, np.iinfo(U64).max, 0], dtype=U64)
    assert np.array_equal(pairs_within(extremes, 63), [[0, 2]])
    assert np.array_equal(pairs_within(extremes, 64), [[0, 1], [0, 2], [1, 2]])


def test_pairs_within_rejects_bad_blocks() -> None:
    codes = random_codes(100, 10)
    with pytest.raises(ValueError):
        pairs_within(codes, 8, blocks=8)  # blocks must exceed the radius
    with pytest.raises(ValueError):
        pairs_within(np.zeros((2, 2), dtype=U64), 1)


@pytest.mark.parametrize("radius", [0, 3, 8, 10])
def test_nearest_within_matches_reference(radius: int) -> None:
    base = planted_codes(600, 11)
    base[100:110] = base[50]  # exact ties: the lowest position must win
    queries = np.concatenate([planted_codes(150, 12), base[[50, 105, 3]], base[[7]] ^ U64(0b111)])
    index = HammingIndex(base)
    pos, dist = index.nearest_within(queries, radius)
    exp_pos, exp_dist = reference_nearest(base, queries, radius)
    assert np.array_equal(pos, exp_pos) and np.array_equal(dist, exp_dist)
    assert pos[-4] == 50 and pos[-3] == 50  # tie on distance 0 -> position 50, not 105
    assert (pos >= 0).any() and (radius < 3 or pos[-1] == 7)


def test_nearest_within_faiss_path_breaks_ties_low(monkeypatch: pytest.MonkeyPatch) -> None:
    """Big enough to go to faiss; many exact and near ties."""
    base = planted_codes(20_000, 13)
    base[15_000:15_050] = base[10]
    base[19_000] = base[10] ^ U64(1)
    queries = np.concatenate([base[[15_020, 19_000, 10]], planted_codes(100, 14), base[:100] ^ U64(1 << 63)])
    index = HammingIndex(base)
    monkeypatch.setattr(HammingIndex, "_FAISS_BATCH", 50)  # several batches
    assert queries.size * len(index) > HammingIndex._NUMPY_MAX
    for radius in (0, 1, 8):
        pos, dist = index.nearest_within(queries, radius)
        d = np.bitwise_count(queries[:, None] ^ base[None, :]).astype(np.int64)
        best = d.argmin(axis=1)
        bd = d[np.arange(queries.size), best]
        assert np.array_equal(pos, np.where(bd <= radius, best, -1))
        assert np.array_equal(dist, np.where(bd <= radius, bd, -1))
        assert pos[0] == 10 and pos[2] == 10


def test_nearest_within_empty_and_incremental() -> None:
    index = HammingIndex()
    assert len(index) == 0
    pos, dist = index.nearest_within(np.array([1, 2], dtype=U64), 10)
    assert pos.tolist() == [-1, -1] and dist.tolist() == [-1, -1]
    pos, dist = HammingIndex(np.array([1], dtype=U64)).nearest_within(np.empty(0, dtype=U64), 4)
    assert pos.shape == dist.shape == (0,)

    first, second = planted_codes(5000, 15), planted_codes(5000, 16)
    queries = np.concatenate([second[:300], first[:300] ^ U64(0b11)])
    index.add(first)
    pos1, _ = index.nearest_within(queries, 6)  # searches build the faiss copy ...
    index.add(second)  # ... which must catch up with later additions
    assert len(index) == 10_000
    pos2, dist2 = index.nearest_within(queries, 6)
    exp_pos, exp_dist = reference_nearest(np.concatenate([first, second]), queries[::15], 6)
    assert np.array_equal(pos2[::15], exp_pos) and np.array_equal(dist2[::15], exp_dist)
    assert (dist2[:300] == 0).all() and (pos2[:300] >= 5000).sum() > 250  # found in the added codes
    assert (pos1[:300] < 5000).all() and (pos1[:300] == -1).sum() > 250  # not there before the add
    assert (pos2[300:] == pos1[300:]).all()


def test_hex_round_trip_and_hamming() -> None:
    codes = np.concatenate([random_codes(1000, 17), np.array([0, 1, np.iinfo(U64).max], dtype=U64)])
    hexes = codes_to_hex(codes)
    assert hexes[-3:] == ["0000000000000000", "0000000000000001", "ffffffffffffffff"]
    assert all(len(h) == 16 and h == h.lower() for h in hexes)
    assert [int(h, 16) for h in hexes] == codes.tolist()
    assert np.array_equal(hex_to_codes(hexes), codes)
    assert hex_to_codes(["FFFFFFFFFFFFFFFF"]).tolist() == [2**64 - 1]
    assert hex_to_codes([]).dtype == U64 and codes_to_hex(np.empty(0, dtype=U64)) == []
    with pytest.raises(ValueError):
        hex_to_codes(["abc"])
    with pytest.raises(ValueError):
        hex_to_codes(["zzzzzzzzzzzzzzzz"])
    a, b = codes[:500], codes[500:1000]
    assert hamming(a, b).tolist() == [bin(x ^ y).count("1") for x, y in zip(a.tolist(), b.tolist())]
    assert hamming(np.array([0], dtype=U64), np.array([np.iinfo(U64).max], dtype=U64)).tolist() == [64]


def test_planted_codes_have_near_duplicates() -> None:
    codes = planted_codes(10_000, 18)
    assert codes.dtype == U64 and codes.size == 10_000
    assert np.array_equal(codes, planted_codes(10_000, 18))
    # Half in clusters of 20 at ~3 flips from their centre: ~6 bits apart pairwise, far below random (32).
    near = len(pairs_within(codes, 8))
    assert 250 * 190 * 0.5 < near < 250 * 190 * 1.1
    assert len(pairs_within(planted_codes(10_000, 18, clustered_fraction=0.0), 8)) < 10


@pytest.mark.parametrize("n", [300, 20_000])  # numpy, then faiss
def test_nearest_k_within_lists_the_k_nearest_in_order(n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    base = planted_codes(n, 17)
    base[n // 2 : n // 2 + 5] = base[3]  # exact ties: lowest positions first
    queries = np.concatenate([base[[3, 7]], planted_codes(40, 18), base[:20] ^ U64(0b101)])
    monkeypatch.setattr(HammingIndex, "_FAISS_BATCH", 16)
    index = HammingIndex(base)
    for radius, k in ((0, 3), (4, 2), (9, 5)):
        pos, dist = index.nearest_k_within(queries, radius, k)
        d = np.bitwise_count(queries[:, None] ^ base[None, :]).astype(np.int64)
        for i in range(queries.size):
            order = np.lexsort((np.arange(n), d[i]))[:k]
            order = order[d[i][order] <= radius]
            assert pos[i].tolist() == order.tolist() + [-1] * (k - order.size)
            assert dist[i].tolist() == d[i][order].tolist() + [-1] * (k - order.size)
        assert pos[0].tolist()[:3] == [3, n // 2, n // 2 + 1][: min(k, 3)]
