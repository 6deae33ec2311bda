"""Audits of dedupe decisions after the fact: accepted frames that should not both be in the dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd

from samantics_dagster.core.dataset.schema import DedupeStatus
from samantics_dagster.core.dedupe.hamming import hamming, hex_to_codes, pairs_within


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
