"""The near-duplicate audits: only judged frames searched, pairs counted on distinct codes, a capped report."""

from __future__ import annotations

import numpy as np
import pandas as pd

from samantics_dagster.core.dedupe.audit import near_duplicate_violations, partition_violations
from samantics_dagster.core.dedupe.hamming import codes_to_hex, hex_to_codes


def _table(hexes, thresholds, prefix, status="accepted"):
    return pd.DataFrame({"rel_path": [f"{prefix}{k}.jpg" for k in range(len(hexes))], "status": status,
                         "dhash": list(hexes), "dhash_threshold": pd.array(list(thresholds), dtype="Int64")})


def _reference(tables):
    """Every violating pair by brute force over all accepted frames (thresholds as recorded)."""
    frames = pd.concat([t[t.status == "accepted"].assign(category=c) for c, t in tables.items()], ignore_index=True)
    codes = hex_to_codes(frames.dhash.tolist())
    thr = frames.dhash_threshold.fillna(0).to_numpy(dtype=np.int64)
    names = (frames.category + ":" + frames.rel_path).to_numpy()
    dist = np.bitwise_count(codes[:, None] ^ codes[None, :]).astype(np.int64)
    i, j = np.nonzero(np.triu(dist <= np.minimum(thr[:, None], thr[None, :]), k=1))
    return {frozenset((names[a], names[b])): int(dist[a, b]) for a, b in zip(i, j)}


def _cluster(rng, n, centre, bits=2):
    """n codes within ``bits`` of ``centre`` (repeats included, as dark footage gives)."""
    flips = rng.integers(0, 64, size=(n, bits)).astype(np.uint64)
    masks = np.bitwise_or.reduce(np.uint64(1) << flips, axis=1) * (rng.random((n, 1)) < 0.7).astype(np.uint64)[:, 0]
    return np.uint64(centre) ^ masks


def test_counts_and_pairs_equal_brute_force_with_mixed_thresholds_and_repeats():
    rng = np.random.default_rng(5)
    dense = _cluster(rng, 120, 0x0F0F_1234_5678_9ABC)
    spread = rng.integers(0, 1 << 63, size=80, dtype=np.uint64)
    near = spread[:30] ^ (np.uint64(1) << rng.integers(0, 64, size=30).astype(np.uint64))
    codes = np.concatenate([dense, spread, near, dense[:10]])
    thresholds = rng.choice([-1, 0, 1, 2, 4], size=codes.size)
    hexes = codes_to_hex(codes)
    tables = {c: _table(hexes[i::3], thresholds[i::3], c) for i, c in enumerate(("a", "b", "c"))}
    tables["a"] = pd.concat([tables["a"], _table(hexes[:5], [9] * 5, "rej", status="rejected")], ignore_index=True)
    want = _reference(tables)
    got = near_duplicate_violations(tables, limit=len(want) + 10)
    assert got.total == len(want) > 100 and len(got.examples) == len(want)
    assert {frozenset(p): d for p, d in zip(zip(got.examples.a, got.examples.b), got.examples.distance)} == want

    capped = near_duplicate_violations(tables, limit=7)
    assert capped.total == len(want) and len(capped.examples) == 7  # the report capped, the total counted
    assert all(want[frozenset(p)] == d for p, d in zip(zip(capped.examples.a, capped.examples.b), capped.examples.distance))
    for c in tables:  # the partition audit: the same pairs that involve the partition
        mine = {p for p in want if any(x.startswith(f"{c}:") for x in p)}
        part = partition_violations(tables, c, limit=10_000)
        inside = {frozenset(p) for p in zip(part.examples.a, part.examples.b)}
        assert inside <= mine and {x for p in mine for x in p if x.startswith(f"{c}:")} == \
            {x for p in inside for x in p if x.startswith(f"{c}:")}  # every violating frame of c is named


def test_low_structure_frames_are_kept_out_of_the_search():
    rng = np.random.default_rng(6)
    dark = codes_to_hex(_cluster(rng, 3000, 0))  # dark footage: thousands within 2 bits, judged by no hash audit
    tables = {"night": _table(dark, [-1] * len(dark), "n")}
    assert near_duplicate_violations(tables).empty and partition_violations(tables, "night").empty
    tables["day"] = _table(dark[:3], [4, 4, 4], "d")  # three judged frames among them: only they count
    got = near_duplicate_violations(tables)
    assert got.total == len(_reference(tables)) == 3
    assert partition_violations(tables, "day").total == got.total


def test_a_dense_judged_cluster_is_counted_without_spelling_out_its_pairs():
    n = 20_000  # 2e8 pairs of frames: counted from the distinct codes, never listed
    codes = np.full(n, 0xABCD, dtype=np.uint64)
    codes[::2] ^= np.uint64(1)
    tables = {"static": _table(codes_to_hex(codes), [3] * n, "s")}
    got = near_duplicate_violations(tables, limit=50)
    assert got.total == n * (n - 1) // 2 and len(got.examples) == 50
