"""Audits of dedupe decisions after the fact: accepted frames that should not both be in the dataset.

Two accepted frames violate when their dhash distance is at most the smaller of the two thresholds they
were judged with. A frame whose threshold is negative (too little structure for its hash alone to be
final: dedupe kept it apart by colour and shift) is judged by no hash audit, so it is kept out of the
search altogether: dark or flat footage puts thousands of such frames within a few bits of each other.

Memory stays bounded by the *distinct* hashes, not by the pairs of frames: identical hashes are
collapsed first (a cluster of near-identical frames has few distinct codes: at most 2 081 within 2 bits of
one), the pairs among distinct codes are counted chunk by chunk with the number of frames behind each,
and only the first ``limit`` violating pairs are spelled out; :class:`Violations` carries the total.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice

import numpy as np
import pandas as pd

from samantics_dagster.core.dataset.schema import DedupeStatus
from samantics_dagster.core.dedupe.hamming import HammingIndex, hamming, hex_to_codes, pairs_within

AUDIT_COLUMNS = ["rel_path", "status", "dhash", "dhash_threshold"]  # what the audits read of deduped_images
EXAMPLES = 1000  # violating pairs spelled out; the rest are counted
_CHUNK = 1 << 20  # distinct pairs handled at once
_COLUMNS = ["a", "b", "distance"]


@dataclass(frozen=True)
class Violations:
    """The first ``len(examples)`` violating pairs (``a``, ``b``: ``category:rel_path``; ``distance``) and
    how many there are in all."""

    examples: pd.DataFrame
    total: int

    def __len__(self) -> int:
        return self.total

    @property
    def empty(self) -> bool:
        return self.total == 0


def _none() -> Violations:
    return Violations(pd.DataFrame(columns=_COLUMNS), 0)


def _judged(table: pd.DataFrame) -> pd.DataFrame:
    """Accepted frames a hash audit applies to (threshold >= 0; a missing threshold counts as 0)."""
    accepted = table[table["status"] == DedupeStatus.ACCEPTED]
    thresholds = accepted["dhash_threshold"].fillna(0)
    return accepted[thresholds >= 0].assign(dhash_threshold=thresholds[thresholds >= 0]).reset_index(drop=True)


def _judged_frames(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    judged = [_judged(t).assign(category=c) for c, t in tables.items() if len(t)]
    judged = [j for j in judged if len(j)]
    return pd.concat(judged, ignore_index=True) if judged else pd.DataFrame(columns=[*AUDIT_COLUMNS, "category"])


def near_duplicate_violations(tables: dict[str, pd.DataFrame], limit: int = EXAMPLES) -> Violations:
    """Accepted pairs across the dataset closer than the threshold either of them was judged with."""
    frames = _judged_frames(tables)
    if len(frames) < 2:
        return _none()
    names = (frames["category"] + ":" + frames["rel_path"]).to_numpy()
    return _among(hex_to_codes(frames["dhash"].tolist()), frames["dhash_threshold"].to_numpy(dtype=np.int64),
                  names, limit)


def _among(codes: np.ndarray, thresholds: np.ndarray, names: np.ndarray, limit: int) -> Violations:
    """Violating pairs among frames (all with thresholds >= 0), counted on distinct codes."""
    uniq, inverse = np.unique(codes, return_inverse=True)
    u = uniq.size
    # Per distinct code, its frames by threshold, highest first: those that can violate at distance d are a
    # prefix (threshold >= d), and ge[code, k] counts them for the k-th distinct threshold level.
    order = np.lexsort((-thresholds, inverse))
    start = np.searchsorted(inverse[order], np.arange(u))
    levels = np.unique(thresholds)
    ge = np.zeros((u, levels.size + 1), dtype=np.int64)  # last column: no frame reaches above the top level
    for k, level in enumerate(levels):
        ge[:, k] = np.bincount(inverse[thresholds >= level], minlength=u)

    total = 0
    examples: list[tuple[int, int, int]] = []
    # Identical codes: every pair of a group violates (distance 0, thresholds >= 0).
    n = ge[:, 0]
    total += int((n * (n - 1) // 2).sum())
    for g in np.flatnonzero(n > 1):
        if len(examples) >= limit:
            break
        members = order[start[g]:start[g] + n[g]].tolist()
        pairs_in = ((a, b, 0) for i, a in enumerate(members) for b in members[i + 1:])
        examples.extend(islice(pairs_in, limit - len(examples)))
    # Distinct codes within the largest threshold, a chunk of pairs at a time.
    pairs = pairs_within(uniq, int(levels[-1])) if u > 1 else np.empty((0, 2), dtype=np.int64)
    for c in range(0, len(pairs), _CHUNK):
        a, b = pairs[c:c + _CHUNK, 0], pairs[c:c + _CHUNK, 1]
        dist = hamming(uniq[a], uniq[b]).astype(np.int64)
        level = np.searchsorted(levels, dist)  # the lowest threshold level that reaches this distance
        na, nb = ge[a, level], ge[b, level]
        bad = np.flatnonzero((na > 0) & (nb > 0))
        total += int((na[bad] * nb[bad]).sum())
        for p in bad:
            if len(examples) >= limit:
                break
            fa = order[start[a[p]]:start[a[p]] + na[p]].tolist()
            fb = order[start[b[p]]:start[b[p]] + nb[p]].tolist()
            d = int(dist[p])
            examples.extend(islice(((x, y, d) for x in fa for y in fb), limit - len(examples)))
    del pairs
    return Violations(pd.DataFrame({"a": [names[i] for i, _, _ in examples], "b": [names[j] for _, j, _ in examples],
                                    "distance": [d for _, _, d in examples]}, columns=_COLUMNS), total)


def partition_violations(tables: dict[str, pd.DataFrame], category: str, limit: int = EXAMPLES) -> Violations:
    """``near_duplicate_violations`` restricted to pairs with at least one frame of ``category``: its judged
    frames among themselves and against the rest of the dataset (``HammingIndex``).

    Exact under the same rule (distance <= the smaller of the two thresholds): the rest is searched per
    distinct threshold ``t`` (a dataset has one or a few), where the nearest code within ``t`` is the only
    candidate that matters; a farther one of the same ``t`` cannot pass where the nearest did not."""
    mine = _judged(tables[category]) if category in tables and len(tables[category]) else None
    if mine is None or not len(mine):
        return _none()
    q_names = (category + ":" + mine["rel_path"]).to_numpy()
    q_codes = hex_to_codes(mine["dhash"].tolist())
    q_thr = mine["dhash_threshold"].to_numpy(dtype=np.int64)
    inside = _among(q_codes, q_thr, q_names, limit) if len(mine) > 1 else _none()
    found = [inside.examples]
    total = inside.total
    rest = _judged_frames({c: t for c, t in tables.items() if c != category})
    if len(rest):
        r_thr = rest["dhash_threshold"].to_numpy(dtype=np.int64)
        r_names = (rest["category"] + ":" + rest["rel_path"]).to_numpy()
        for t in np.unique(r_thr):
            members = np.flatnonzero(r_thr == t)
            index = HammingIndex(hex_to_codes(rest["dhash"].iloc[members].tolist()))
            pos, dist = index.nearest_within(q_codes, int(t))
            bad = (pos >= 0) & (dist <= np.minimum(q_thr, t))
            total += int(bad.sum())
            found.append(pd.DataFrame({"a": q_names[bad], "b": r_names[members[pos[bad]]], "distance": dist[bad]}))
    found = [f for f in found if len(f)]
    examples = pd.concat(found, ignore_index=True).head(limit) if found else pd.DataFrame(columns=_COLUMNS)
    return Violations(examples, total)
