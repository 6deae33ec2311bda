"""Exact Hamming-distance search over 64-bit perceptual hashes (numpy + faiss, no Dagster).

Two jobs, two tools:

* ``pairs_within``: every pair of codes within distance ``r`` (the cold start: 1 M hashes).
  A linear scan is N²/2 comparisons (5e11 at 1 M: minutes even in faiss), so we use the
  generalized pigeonhole of Manku et al.'s simhash tables: cut the 64 bits into ``m = r + t``
  contiguous blocks; two codes within distance ``r`` differ in at most ``r`` blocks, so they agree
  exactly on at least ``t`` of them. For each of the C(m, t) block combinations we sort the codes by
  those blocks' bits, verify every pair inside an equal-key run with a popcount, and keep a pair
  only in the first combination (lowest block indices) on which it agrees, so no pair is reported
  twice and no global dedupe is needed.
* ``HammingIndex.nearest_within``: new frames against the accepted set (the steady state: 10 k
  against 1 M). That is one batched scan, which faiss' ``IndexBinaryFlat`` does at billions of
  comparisons per second; small cases use numpy broadcasting.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from itertools import combinations
from math import comb
from types import ModuleType
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from samantics_dagster.core.dedupe.hashcodes import CHUNK as _CHUNK
from samantics_dagster.core.dedupe.hashcodes import U64 as _U64
from samantics_dagster.core.dedupe.hashcodes import as_codes as _as_codes
from samantics_dagster.core.dedupe.hashcodes import codes_to_hex, hamming, hex_to_codes
from samantics_dagster.core.dedupe.hashcodes import n_threads as _n_threads

if TYPE_CHECKING:  # imported lazily at run time (slow import, only big searches need it)
    import faiss as faiss_module

__all__ = [
    "HammingIndex",
    "codes_to_hex",
    "hamming",
    "hex_to_codes",
    "pairs_within",
]

_LONG_RUN = 512  # runs longer than this (near-identical clusters) are verified densely, not offset by offset
_FIELD_BITS = 10  # sort-key bits for the run-length field (values 1 .. _LONG_RUN + 1)
_HIST_BITS = 21  # run lengths come from a histogram of at most 2**21 bins (16 MB)
# Cost model (seconds, measured on the 2-core dev machine) used to pick the block count:
_TABLE_COST = 3e-4  # per table: Python and numpy call overhead
_SORT_COST = 55e-9  # per code per table: key, histogram, pack, sort, gather (CPU seconds)
_CAND_COST = 6e-9  # per candidate pair: ~2 slots of xor, popcount, compare
_BRUTE_COST = 5e-9  # per pair in the broadcast scan (CPU seconds)


def _sorted_pairs(i: np.ndarray, j: np.ndarray, n: int) -> np.ndarray:
    """Normalise to i < j, sort rows lexicographically: the one output contract for all methods."""
    lo, hi = np.minimum(i, j).astype(np.int64), np.maximum(i, j).astype(np.int64)
    key = np.sort(lo * n + hi)
    return np.stack([key // n, key % n], axis=1) if key.size else np.empty((0, 2), dtype=np.int64)


def _brute_rows(codes: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i, j > i) by broadcasting blocks of rows against the later columns, on all cores."""
    n = codes.size
    step = max(1, _CHUNK // max(n, 1))

    def block(a: int) -> tuple[np.ndarray, np.ndarray]:
        b = min(a + step, n)
        ii, jj = np.nonzero(np.bitwise_count(codes[a:b, None] ^ codes[None, a:]) <= radius)
        ii += a
        jj += a
        upper = jj > ii
        return ii[upper], jj[upper]

    with ThreadPoolExecutor(max_workers=_n_threads()) as pool:
        parts = list(pool.map(block, range(0, n, step)))
    if not parts:
        return np.empty(0, np.intp), np.empty(0, np.intp)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _block_bounds(m: int) -> list[tuple[int, int]]:
    """(low bit, width) of m contiguous blocks covering 64 bits, widths differing by at most one."""
    widths = [64 // m + (1 if k < 64 % m else 0) for k in range(m)]
    lows = np.cumsum([0, *widths[:-1]]).tolist()
    return list(zip(lows, widths))


class _Table(NamedTuple):
    """One block combination: how to build its key, and how to tell whether it is a pair's first."""

    segments: list[tuple[int, int, int]]  # (low bit, width, position in key), adjacent blocks merged
    key_bits: int
    key_mask: int  # the combination's bits in the code
    low: int  # per earlier block outside the combination: all its bits but the top one ...
    high: int  # ... and its top bit (SWAR test that every such block differs, see _first_table)


def _tables(m: int, t: int) -> list[_Table]:
    """The C(m, t) block combinations, in lexicographic order."""
    bounds = _block_bounds(m)
    out = []
    for combo in combinations(range(m), t):
        segments: list[tuple[int, int, int]] = []
        pos = 0
        for b in combo:
            lo, w = bounds[b]
            if segments and segments[-1][0] + segments[-1][1] == lo:
                plo, pw, ppos = segments[-1]
                segments[-1] = (plo, pw + w, ppos)
            else:
                segments.append((lo, w, pos))
            pos += w
        earlier = [bounds[b] for b in range(combo[-1]) if b not in combo]
        low = sum(((1 << (w - 1)) - 1) << lo for lo, w in earlier)
        high = sum(1 << (lo + w - 1) for lo, w in earlier)
        key_mask = sum(((1 << w) - 1) << lo for lo, w, _ in segments)
        out.append(_Table(segments, pos, key_mask, low, high))
    return out


def _first_table(x: np.ndarray, table: _Table) -> np.ndarray:
    """For xors x of pairs within the radius: is ``table`` the first combination the pair agrees on?

    It must agree on the table's blocks and differ somewhere in every earlier block outside it, so
    each pair is reported by exactly one table. "Block nonzero" for all blocks at once: adding each
    block's low-bits mask to its low bits carries into the block's top bit iff any low bit is set,
    and never beyond the block.
    """
    nonzero = (((x & _U64(table.low)) + _U64(table.low)) | x) & _U64(table.high)
    return ((x & _U64(table.key_mask)) == 0) & (nonzero == _U64(table.high))


def _table_pairs(codes: np.ndarray, radius: int, table: _Table, idx_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Verified, first-agreeing pairs (as code indices) among codes with equal keys in one table.

    One uint64 sort of (run-length field | key | index) lays the equal-key runs out longest first,
    so for every offset d the positions whose run is longer than d form a prefix and the candidates
    (p, p + d) are two contiguous slices: no per-candidate gathers, ~4x faster than an index list.
    """
    segments, key_bits = table.segments, table.key_bits
    n = codes.size
    key = np.zeros(n, dtype=_U64)
    for lo, w, pos in segments:
        key |= ((codes >> _U64(lo)) & _U64((1 << w) - 1)) << _U64(pos)
    # Run length per code from a histogram of the key (hashed to fewer bins when wide: a collision
    # only overstates a length, which costs a little work, never a pair).
    hist_bits = min(_HIST_BITS, idx_bits + 1)  # ~2 bins per code: few collisions, table fits in cache
    bins = key if key_bits <= hist_bits else (key * _U64(0x9E3779B97F4A7C15)) >> _U64(64 - hist_bits)
    hist = np.bincount(bins.astype(np.intp))
    length = hist[bins]
    field = np.where(length > _LONG_RUN, _LONG_RUN + 1, _LONG_RUN + 1 - length).astype(_U64)
    shift = idx_bits + key_bits
    packed = (field << _U64(shift)) | (key << _U64(idx_bits)) | np.arange(n, dtype=_U64)
    packed.sort()
    idx = (packed & _U64((1 << idx_bits) - 1)).astype(np.intp)
    sk = packed >> _U64(idx_bits)  # field | key: equal within a run, different across runs
    sc = codes[idx]

    found_p: list[np.ndarray] = []
    found_d: list[np.ndarray | int] = []
    found_x: list[np.ndarray] = []
    # prefix[d]: positions in (short) runs of length >= d; they come first, longest runs first.
    by_len = np.bincount(np.minimum(length, _LONG_RUN + 1), minlength=_LONG_RUN + 2)[: _LONG_RUN + 1]
    prefix = np.append(np.cumsum(by_len[::-1])[::-1], 0)
    x_buf = np.empty(prefix[2], dtype=_U64)  # reused across offsets: no page faults per pass
    c_buf = np.empty(prefix[2], dtype=np.uint8)
    ok_buf = np.empty(prefix[2], dtype=bool)
    for d in range(1, _LONG_RUN):
        k = int(prefix[d + 1]) - d  # pairs (p, p + d) with p < k; some cross into the next run
        if k <= 0:
            break
        x = np.bitwise_xor(sc[:k], sc[d : k + d], out=x_buf[:k])
        ok = np.less_equal(np.bitwise_count(x, out=c_buf[:k]), radius, out=ok_buf[:k])
        hit = np.flatnonzero(ok)
        found_p.append(hit)
        found_d.append(d)
        found_x.append(x[hit])

    # Long runs (near-identical clusters) sit at the end: dense upper triangle per run, in blocks.
    tail = n - int(np.count_nonzero(length > _LONG_RUN))
    if tail < n:
        cut = np.flatnonzero(sk[tail + 1 :] != sk[tail:-1]) + tail + 1
        for s, e in zip([tail, *cut.tolist()], [*cut.tolist(), n]):
            block = sc[s:e]
            step = max(1, _CHUNK // (e - s))
            for a in range(0, e - s, step):
                x = block[a : a + step, None] ^ block[None, :]
                ii, jj = np.nonzero(np.bitwise_count(x) <= radius)
                ii += a
                upper = jj > ii
                ii, jj = ii[upper], jj[upper]
                found_p.append(ii + s)
                found_d.append(jj - ii)
                found_x.append(x[ii - a, jj])

    if not found_p:
        return np.empty(0, np.intp), np.empty(0, np.intp)
    pp = np.concatenate(found_p)
    dd = np.concatenate([np.broadcast_to(np.asarray(d, dtype=np.intp), h.shape) for d, h in zip(found_d, found_p)])
    first = _first_table(np.concatenate(found_x), table)  # also drops pairs straddling two runs
    pp, dd = pp[first], dd[first]
    return idx[pp], idx[pp + dd]


def _choose_blocks(n: int, radius: int) -> int | None:
    """Block count m minimising the cost model, or None when a brute-force scan is cheaper."""
    idx_bits = max(1, (n - 1).bit_length())
    best_cost, best_m = n * n / 2 * _BRUTE_COST, None
    for t in range(1, 64 - radius + 1):
        m = radius + t
        key_bits = sum(sorted((w for _, w in _block_bounds(m)), reverse=True)[:t])
        if _FIELD_BITS + key_bits + idx_bits > 64:
            break
        cost = comb(m, t) * (_TABLE_COST + n * _SORT_COST + n * n / 2 * 2.0 ** (-t * 64 / m) * _CAND_COST)
        if cost < best_cost:
            best_cost, best_m = cost, m
    return best_m


def pairs_within(codes: np.ndarray, radius: int, *, blocks: int | None = None) -> np.ndarray:
    """All pairs i < j with hamming <= radius; exactly a brute-force scan's output, much faster.

    Exact duplicates are collapsed first (static video makes many; each group then costs only its
    output), the pigeonhole tables run on the distinct codes in parallel threads (numpy releases the
    GIL in sorts and ufuncs), and pairs are expanded back to the original positions. ``blocks``
    forces the block count m (> radius) for tests and tuning; by default a cost model picks it.
    """
    codes = _as_codes(codes)
    n = codes.size
    if radius < 0 or n < 2:
        return np.empty((0, 2), dtype=np.int64)
    uniq, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="stable")  # original positions grouped by distinct code
    group_start = np.concatenate(([0], np.cumsum(counts)[:-1]))

    # Pairs among distinct codes.
    u = uniq.size
    if radius == 0 or u < 2:
        ui = uj = np.empty(0, np.intp)
    else:
        m = blocks if blocks is not None else _choose_blocks(u, radius)
        if m is None or m > 64 or radius >= 64:
            ui, uj = _brute_rows(uniq, radius)
        else:
            if m <= radius:
                raise ValueError(f"blocks must exceed the radius ({m} <= {radius})")
            tables = _tables(m, m - radius)
            idx_bits = max(1, (u - 1).bit_length())
            if _FIELD_BITS + max(tb.key_bits for tb in tables) + idx_bits > 64:
                raise ValueError(f"{m} blocks leave no room for {u} indices in a 64-bit sort key")
            workers = min(_n_threads(), len(tables))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                parts = list(pool.map(lambda tb: _table_pairs(uniq, radius, tb, idx_bits), tables))
            ui = np.concatenate([p[0] for p in parts])
            uj = np.concatenate([p[1] for p in parts])

    # Expand each distinct pair (a, b) to counts[a] * counts[b] original pairs ...
    reps = counts[ui] * counts[uj]
    pair = np.repeat(np.arange(ui.size), reps)
    local = np.arange(pair.size) - np.repeat(np.cumsum(reps) - reps, reps)
    cb = counts[uj][pair]
    i_all = [order[group_start[ui][pair] + local // cb]]
    j_all = [order[group_start[uj][pair] + local % cb]]
    # ... plus all pairs inside each group of identical codes (distance 0).
    rem = np.repeat(group_start + counts, counts) - 1 - np.arange(n)  # later members of my group
    p = np.flatnonzero(rem >= 1)
    rem, d = rem[p], 1
    while p.size:
        i_all.append(order[p])
        j_all.append(order[p + d])
        keep = rem > d
        p, rem, d = p[keep], rem[keep], d + 1
    return _sorted_pairs(np.concatenate(i_all), np.concatenate(j_all), n)


def _faiss() -> ModuleType:
    """Import faiss on first use and let its OpenMP pool use this process's cores."""
    import faiss

    faiss.omp_set_num_threads(_n_threads())
    return faiss


class HammingIndex:
    """Exact radius search of query codes against a growing set of accepted codes (the global dedupe index).

    Positions are insertion order, so a caller can map them back to its own list of hashes. Big
    searches go to a faiss ``IndexBinaryFlat`` kept in step with the codes (appends only); small
    ones use numpy, which avoids building the faiss index at all.
    """

    _NUMPY_MAX = 1 << 20  # queries x codes up to which numpy beats faiss (which scans ~3e9/s on 2 cores)
    _FAISS_BATCH = 4096

    def __init__(self, codes: np.ndarray | None = None) -> None:
        self._codes = np.empty(0, dtype=_U64)
        self._faiss_index: faiss_module.IndexBinaryFlat | None = None  # built on the first faiss search
        self._faiss_n = 0  # how many of self._codes the faiss index holds
        if codes is not None:
            self.add(codes)

    def add(self, codes: np.ndarray) -> None:
        """Append codes; they get positions len(self), len(self) + 1, ..."""
        self._codes = np.concatenate([self._codes, _as_codes(codes)])

    def __len__(self) -> int:
        return self._codes.size

    def nearest_within(self, queries: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
        """Per query: (position of the nearest code with distance <= radius, else -1; that distance,
        else -1). Ties go to the lowest position, so the answer does not depend on the search path."""
        pos, dist = self.nearest_k_within(queries, radius, 1)
        return pos[:, 0], dist[:, 0]

    def nearest_k_within(self, queries: np.ndarray, radius: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Per query, the ``k`` nearest codes within ``radius``, nearest first (ties: lowest position first):
        positions and distances as ``(len(queries), k)`` arrays, padded with -1 where fewer are that close."""
        q = _as_codes(queries)
        pos = np.full((q.size, k), -1, dtype=np.int64)
        dist = np.full((q.size, k), -1, dtype=np.int64)
        if q.size == 0 or self._codes.size == 0 or radius < 0 or k < 1:
            return pos, dist
        if q.size * self._codes.size <= self._NUMPY_MAX:
            self._numpy_search(q, radius, pos, dist)
        else:
            self._faiss_search(q, radius, pos, dist)
        return pos, dist

    def _numpy_search(self, q: np.ndarray, radius: int, pos: np.ndarray, dist: np.ndarray) -> None:
        n, k = self._codes.size, pos.shape[1]
        step = max(1, _CHUNK // n)
        for a in range(0, q.size, step):
            d = np.bitwise_count(q[a : a + step, None] ^ self._codes[None, :]).astype(np.int64)
            if k == 1:
                best = d.argmin(axis=1)[:, None]  # first minimum = lowest position among ties
            else:  # distance, then position: one integer key per code, the k smallest in order
                key = d * n + np.arange(n)
                part = np.partition(key, k - 1, axis=1)[:, :k] if k < n else key
                best = np.sort(part, axis=1) % n
            bd = np.take_along_axis(d, best, axis=1)
            ok = bd <= radius
            pos[a : a + step, : best.shape[1]] = np.where(ok, best, -1)
            dist[a : a + step, : best.shape[1]] = np.where(ok, bd, -1)

    def _faiss_search(self, q: np.ndarray, radius: int, pos: np.ndarray, dist: np.ndarray) -> None:
        faiss = _faiss()
        index = self._faiss_index
        if index is None:
            index = self._faiss_index = faiss.IndexBinaryFlat(64)
        if self._faiss_n < self._codes.size:
            index.add(self._codes[self._faiss_n :].view(np.uint8).reshape(-1, 8))
            self._faiss_n = self._codes.size
        k = pos.shape[1]
        for a in range(0, q.size, self._FAISS_BATCH):  # batches bound the memory of the match lists
            batch = q[a : a + self._FAISS_BATCH]
            # faiss' binary range search keeps distances strictly below the radius: pass radius + 1.
            lims, d, ids = index.range_search(batch.view(np.uint8).reshape(-1, 8), int(radius) + 1)
            if ids.size == 0:
                continue
            lims = lims.astype(np.int64)
            qi = np.repeat(np.arange(batch.size), np.diff(lims))
            o = np.lexsort((ids, d, qi))  # per query: smallest distance, then lowest position
            rank = np.arange(o.size) - lims[qi[o]]  # place within its query's run
            keep = o[rank < k]
            pos[a + qi[keep], rank[rank < k]] = ids[keep]
            dist[a + qi[keep], rank[rank < k]] = d[keep]
