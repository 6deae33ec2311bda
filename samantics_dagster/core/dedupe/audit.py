"""Audits of dedupe decisions after the fact: accepted frames that should not both be in the dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd

from samantics_dagster.core.dataset.schema import DedupeStatus
from samantics_dagster.core.dedupe.hamming import HammingIndex, hamming, hex_to_codes, pairs_within


def near_duplicate_violations(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Accepted pairs across the dataset closer than the threshold either of them was judged with."""
    accepted = pd.concat(
        [t.assign(category=c) for c, t in tables.items() if len(t)], ignore_index=True
    ) if tables else pd.DataFrame()
    if accepted.empty:
        return pd.DataFrame(columns=["a", "b", "distance"])
    accepted = accepted[accepted["status"] == DedupeStatus.ACCEPTED].reset_index(drop=True)
    codes = hex_to_codes(accepted["dhash"].tolist())
    thresholds = accepted["dhash_threshold"].fillna(0).to_numpy(dtype=np.int64)
    if len(codes) < 2:
        return pd.DataFrame(columns=["a", "b", "distance"])
    pairs = pairs_within(codes, int(thresholds.max()))
    if len(pairs) == 0:
        return pd.DataFrame(columns=["a", "b", "distance"])
    i, j = pairs[:, 0], pairs[:, 1]
    dist = hamming(codes[i], codes[j])
    bad = dist <= np.minimum(thresholds[i], thresholds[j])
    paths = accepted["category"] + ":" + accepted["rel_path"]
    return pd.DataFrame({"a": paths.to_numpy()[i[bad]], "b": paths.to_numpy()[j[bad]], "distance": dist[bad]})


AUDIT_COLUMNS = ["rel_path", "status", "dhash", "dhash_threshold"]  # what the audits read of deduped_images


def partition_violations(tables: dict[str, pd.DataFrame], category: str) -> pd.DataFrame:
    """``near_duplicate_violations`` restricted to pairs with at least one frame of ``category``: its accepted
    frames among themselves (``pairs_within``) and against the rest of the dataset (``HammingIndex``).

    Exact under the same rule (distance <= the smaller of the two thresholds): the rest is searched per
    distinct threshold ``t`` (a dataset has one or a few), where the nearest code within ``t`` is the only
    candidate that matters; a farther one of the same ``t`` cannot pass where the nearest did not."""
    mine = tables.get(category)
    empty = pd.DataFrame(columns=["a", "b", "distance"])
    if mine is None or not len(mine):
        return empty
    mine = mine[mine["status"] == DedupeStatus.ACCEPTED].reset_index(drop=True)
    found = [near_duplicate_violations({category: mine})] if len(mine) > 1 else []
    rest = [t[t["status"] == DedupeStatus.ACCEPTED].assign(category=c) for c, t in tables.items() if c != category and len(t)]
    rest_df = pd.concat(rest, ignore_index=True) if rest else pd.DataFrame()
    if len(mine) and len(rest_df):
        q_codes = hex_to_codes(mine["dhash"].tolist())
        q_thr = mine["dhash_threshold"].fillna(0).to_numpy(dtype=np.int64)
        r_thr = rest_df["dhash_threshold"].fillna(0).to_numpy(dtype=np.int64)
        r_names = (rest_df["category"] + ":" + rest_df["rel_path"]).to_numpy()
        q_names = (category + ":" + mine["rel_path"]).to_numpy()
        for t in np.unique(r_thr):
            if t < 0:  # frames whose hash alone is never final (too little structure): no hash audit applies
                continue
            members = np.flatnonzero(r_thr == t)
            index = HammingIndex(hex_to_codes(rest_df["dhash"].iloc[members].tolist()))
            pos, dist = index.nearest_within(q_codes, int(t))
            bad = (pos >= 0) & (dist <= np.minimum(q_thr, t))
            found.append(pd.DataFrame({"a": q_names[bad], "b": r_names[members[pos[bad]]], "distance": dist[bad]}))
    found = [f for f in found if len(f)]
    return pd.concat(found, ignore_index=True) if found else empty
