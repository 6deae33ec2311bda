"""Hamming search benchmark: all pairs within r among N planted dhashes, and the incremental lookup.

Against three baselines in the same run, all on every core: a numpy popcount scan (brute force), faiss'
exhaustive ``IndexBinaryFlat`` and faiss' multi-index hashing ``IndexBinaryMultiHash`` (4 tables of 16 bits,
probed with the ``r // 4`` bit flips that make it exact).

    .venv/bin/python benchmarks/bench_hamming.py [--sizes 10000 100000 1000000] [--radii 8 10] [--quick]

Bar: all pairs within 8 among 1 M hashes in < 60 s on 2 cores, the same pairs as
brute force wherever both run. ``--quick`` (10 k only, well under a minute) keeps this from rotting in CI.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from math import comb
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.dedupe_reference import brute_force_pairs, planted_codes  # noqa: E402
from samantics_dagster.core.dedupe import hamming  # noqa: E402
from samantics_dagster.core.dedupe.hamming import HammingIndex, pairs_within  # noqa: E402

BAR_N, BAR_R, BAR_S = 1_000_000, 8, 60.0


def faiss_pairs(codes: np.ndarray, radius: int) -> np.ndarray:
    """All pairs by faiss' exhaustive binary range search (it keeps distances < radius: pass r + 1)."""
    import faiss

    faiss.omp_set_num_threads(len(os.sched_getaffinity(0)))
    index = faiss.IndexBinaryFlat(64)
    as_bytes = codes.view(np.uint8).reshape(-1, 8)
    index.add(as_bytes)
    lims, _, ids = index.range_search(as_bytes, radius + 1)
    qi = np.repeat(np.arange(codes.size), np.diff(lims.astype(np.int64)))
    upper = ids > qi
    key = np.sort(qi[upper] * codes.size + ids[upper])
    return np.stack([key // codes.size, key % codes.size], axis=1)


def faiss_multihash_pairs(codes: np.ndarray, radius: int, nhash: int = 4) -> np.ndarray:
    """All pairs by faiss' multi-index hashing (``IndexBinaryMultiHash``: ``nhash`` tables of 64/nhash bits).

    Exact when every table is probed with ``nflip >= radius // nhash`` flipped bits (pigeonhole: two codes
    within ``radius`` agree on some table up to that many bits); range_search keeps distances < radius."""
    import faiss

    faiss.omp_set_num_threads(len(os.sched_getaffinity(0)))
    index = faiss.IndexBinaryMultiHash(64, nhash, 64 // nhash)
    index.nflip = radius // nhash
    as_bytes = codes.view(np.uint8).reshape(-1, 8)
    index.add(as_bytes)
    lims, _, ids = index.range_search(as_bytes, radius + 1)
    qi = np.repeat(np.arange(codes.size), np.diff(lims.astype(np.int64)))
    upper = ids > qi
    key = np.sort(qi[upper] * codes.size + ids[upper])
    return np.stack([key // codes.size, key % codes.size], axis=1)


def sampled_check(codes: np.ndarray, radius: int, pairs: np.ndarray, rows: int = 200, seed: int = 0) -> bool:
    """Where no full baseline fits: every pair touching `rows` random codes, by a numpy scan each."""
    picked = np.random.default_rng(seed).choice(codes.size, size=min(rows, codes.size), replace=False)
    expected = []
    for i in picked:
        j = np.flatnonzero(np.bitwise_count(codes ^ codes[i]) <= radius)
        j = j[j != i]
        expected.append(np.stack([np.minimum(i, j), np.maximum(i, j)], axis=1))
    expected = np.unique(np.concatenate(expected), axis=0)
    got = pairs[np.isin(pairs[:, 0], picked) | np.isin(pairs[:, 1], picked)]
    return np.array_equal(got, expected)


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--radii", type=int, nargs="+", default=[8, 10])
    ap.add_argument("--quick", action="store_true", help="10 k only (CI smoke run)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--brute-max", type=int, default=100_000, help="largest N for the numpy baseline")
    ap.add_argument("--faiss-max", type=int, default=200_000, help="largest N for faiss all-pairs (1 M: ~3 min)")
    ap.add_argument("--multihash-max", type=int, default=200_000,
                    help="largest N for faiss IndexBinaryMultiHash all-pairs (probes grow combinatorially with r)")
    ap.add_argument("--queries", type=int, default=10_000, help="new codes per incremental lookup")
    args = ap.parse_args()
    sizes = [10_000] if args.quick else args.sizes

    import numpy

    print(f"cores: {len(os.sched_getaffinity(0))}  numpy {numpy.__version__}  seed {args.seed}")
    print("data: planted_codes (half in clusters of 20, Poisson(3) bit flips; half uniform)\n")
    header = f"{'N':>9} {'r':>3}  {'method':<42} {'seconds':>8} {'pairs':>10}  same pairs as baseline"
    print(header)
    print("-" * len(header))
    bar_time = None
    for n in sizes:
        codes = planted_codes(n, args.seed)
        distinct = np.unique(codes).size
        for r in args.radii:
            got, secs = timed(pairs_within, codes, r)
            m = hamming._choose_blocks(distinct, r)
            method = f"pairs_within (m={m}, {comb(m, m - r)} tables)" if m else "pairs_within (scan)"
            rows = [(method, secs, got)]
            base = None
            if n <= args.brute_max:
                base, secs = timed(brute_force_pairs, codes, r)
                rows.append(("brute_force (numpy popcount)", secs, base))
            else:
                rows.append(("brute_force (numpy popcount)", None, None))
            if n <= args.faiss_max:
                out, secs = timed(faiss_pairs, codes, r)
                rows.append(("faiss IndexBinaryFlat range_search", secs, out))
            else:
                rows.append(("faiss IndexBinaryFlat range_search", None, None))
            if n <= args.multihash_max:
                out, secs = timed(faiss_multihash_pairs, codes, r)
                rows.append((f"faiss IndexBinaryMultiHash 4x16, nflip {r // 4}", secs, out))
            else:
                rows.append((f"faiss IndexBinaryMultiHash 4x16, nflip {r // 4}", None, None))
            ref, ref_name = (base, "") if base is not None else (rows[2][2], " (vs faiss)")
            for name, secs, pairs in rows:
                if pairs is None:
                    print(f"{n:>9} {r:>3}  {name:<42} {'–':>8} {'–':>10}  – (N > limit)")
                    continue
                if ref is None:  # neither baseline fits: check the rows of 200 random codes
                    same = ("yes" if sampled_check(codes, r, pairs, seed=args.seed) else "NO") + " (200 sampled rows)"
                elif pairs is ref:
                    same = "(baseline)"
                else:
                    same = ("yes" if np.array_equal(pairs, ref) else "NO") + ref_name
                print(f"{n:>9} {r:>3}  {name:<42} {secs:>8.2f} {len(pairs):>10}  {same}", flush=True)
            if n == BAR_N and r == BAR_R:
                bar_time = rows[0][1]

    # Steady state: a partition's new frames against the accepted index.
    n = max(sizes)
    accepted = planted_codes(n, args.seed)
    new = np.concatenate([planted_codes(args.queries // 2, args.seed + 1),
                          accepted[: args.queries - args.queries // 2] ^ np.uint64(0b101)])  # planted hits
    index = HammingIndex(accepted)
    print()
    for r in args.radii:
        (pos, dist), secs = timed(index.nearest_within, new, r)
        sample = np.arange(0, new.size, max(1, new.size // 300))
        best = np.empty(sample.size, dtype=np.int64)
        bd = np.empty(sample.size, dtype=np.int64)
        for k, q in enumerate(new[sample]):  # one query at a time: 1 M distances, not 300 M
            d = np.bitwise_count(accepted ^ q)
            best[k] = d.argmin()
            bd[k] = d[best[k]]
        same = np.array_equal(pos[sample], np.where(bd <= r, best, -1)) and np.array_equal(
            dist[sample], np.where(bd <= r, bd, -1))
        print(f"HammingIndex.nearest_within: {new.size} queries vs {n} codes, r={r}: {secs:.2f} s, "
              f"{int((pos >= 0).sum())} within r, same as numpy on {sample.size} sampled queries: "
              f"{'yes' if same else 'NO'}")

    print()
    if bar_time is None:
        print(f"bar: 1M r=8 < 60 s: not run (needs --sizes {BAR_N} --radii {BAR_R})")
    else:
        print(f"bar: 1M r=8 < 60 s: {'PASS' if bar_time < BAR_S else 'FAIL'} ({bar_time:.1f} s)")


if __name__ == "__main__":
    main()
