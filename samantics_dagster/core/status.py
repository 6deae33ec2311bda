"""The status overview the old ``pipeline.db`` answered, read from the per-frame tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from samantics_dagster.core.tables import read_all


def status_table(dataset_dir: Path) -> pd.DataFrame:
    """One row per category: frames seen, accepted, rejected by reason, and not yet deduped."""
    ingress = read_all(dataset_dir, "ingress_frames")
    deduped = read_all(dataset_dir, "deduped_images")
    rows = []
    for category in sorted(set(ingress) | set(deduped)):
        frames = ingress.get(category)
        dd = deduped.get(category)
        seen = set(frames["rel_path"]) if frames is not None else set()
        decided = set(dd["rel_path"]) if dd is not None else set()
        reasons = dd[dd["status"] == "rejected"]["reason"].value_counts() if dd is not None else pd.Series(dtype=int)
        rows.append({
            "category": category,
            "frames": len(seen),
            "pending_dedupe": len(seen - decided),
            "accepted": int((dd["status"] == "accepted").sum()) if dd is not None else 0,
            **{f"rejected_{r}": int(reasons.get(r, 0)) for r in ("exact", "dhash", "orb", "decode_error", "unparsed")},
        })
    return pd.DataFrame(rows)
