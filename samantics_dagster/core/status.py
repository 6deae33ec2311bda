"""The status overview the old ``pipeline.db`` answered, read from the per-frame tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from samantics_dagster.core.tables import read_all


def _accepted(deduped: pd.DataFrame | None) -> set[str]:
    return set(deduped.loc[deduped["status"] == "accepted", "dhash"]) if deduped is not None else set()


def status_table(dataset_dir: Path) -> pd.DataFrame:
    """One row per category: frames seen, not yet deduped, accepted, rejected by reason, labelled,
    failed labelling, and accepted but not yet labelled."""
    ingress = read_all(dataset_dir, "ingress_frames")
    deduped = read_all(dataset_dir, "deduped_images")
    labels = read_all(dataset_dir, "sam3_labels")
    rows = []
    for category in sorted(set(ingress) | set(deduped)):
        frames = ingress.get(category)
        dd = deduped.get(category)
        lb = labels.get(category)
        seen = set(frames["rel_path"]) if frames is not None else set()
        decided = set(dd["rel_path"]) if dd is not None else set()
        reasons = dd[dd["status"] == "rejected"]["reason"].value_counts() if dd is not None else pd.Series(dtype=int)
        rows.append({
            "category": category,
            "frames": len(seen),
            "pending_dedupe": len(seen - decided),
            "accepted": int((dd["status"] == "accepted").sum()) if dd is not None else 0,
            **{f"rejected_{r}": int(reasons.get(r, 0)) for r in ("exact", "dhash", "orb", "decode_error", "unparsed")},
            "labelled": int((lb["status"] == "done").sum()) if lb is not None else 0,
            "label_failed": int((lb["status"] == "failed").sum()) if lb is not None else 0,
            "pending_label": len(_accepted(dd) - (set(lb["dhash"]) if lb is not None else set())),
        })
    return pd.DataFrame(rows)
