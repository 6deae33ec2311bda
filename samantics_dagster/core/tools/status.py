"""The status questions the old ``pipeline.db`` answered, read from the per-frame tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from samantics_dagster.core.dataset.schema import CurateStatus, DedupeReason, DedupeStatus, LabelStatus, TableName
from samantics_dagster.core.dataset.tables import read_all
from samantics_dagster.core.label.precision import precision_counts

_REJECT_REASONS = tuple(r.value for r in DedupeReason)


def _missing(values: pd.Series | None, among: pd.Series | None) -> int:
    """How many distinct ``values`` are not in ``among``: vectorised (a Python set of a million arrow-backed
    strings cost seconds)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if values is None:
        return 0
    distinct = pc.unique(pa.array(values))  # pandas' isin on arrow strings loops in Python
    if among is None:
        return len(distinct)
    return len(distinct) - int(pc.sum(pc.is_in(distinct, value_set=pc.unique(pa.array(among)))).as_py() or 0)


def _count(table: pd.DataFrame | None, column: str, value: str) -> int:
    return int((table[column] == value).sum()) if table is not None else 0


def status_table(dataset_dir: Path) -> pd.DataFrame:
    """One row per category and a column per stage: frames seen, not yet deduped, accepted, rejected by
    reason, labelled (and at how many precisions: :func:`mixed_precision` names them when more than one), failed
    labelling, accepted but not yet labelled, included and excluded by curation."""
    # only the columns the counts need: the instances column alone is most of a labels table's bytes
    ingress = read_all(dataset_dir, TableName.INGRESS_FRAMES, columns=["rel_path"])
    deduped = read_all(dataset_dir, TableName.DEDUPED_IMAGES, columns=["rel_path", "status", "reason", "dhash"])
    labels = read_all(dataset_dir, TableName.SAM3_LABELS, columns=["dhash", "status", "labeler"])
    curated = read_all(dataset_dir, TableName.CURATED_COCO, columns=["status"])
    rows = []
    for category in sorted(set(ingress) | set(deduped)):
        frames, dd, lb, cc = ingress.get(category), deduped.get(category), labels.get(category), curated.get(category)
        seen = frames["rel_path"] if frames is not None else None
        decided = dd["rel_path"] if dd is not None else None
        accepted = dd.loc[dd["status"] == DedupeStatus.ACCEPTED, "dhash"] if dd is not None else None
        reasons = dd[dd["status"] == DedupeStatus.REJECTED]["reason"].value_counts() if dd is not None else pd.Series(dtype=int)
        rows.append({
            "category": category,
            "frames": _missing(seen, None),
            "pending_dedupe": _missing(seen, decided),
            "accepted": _count(dd, "status", DedupeStatus.ACCEPTED),
            **{f"rejected_{r}": int(reasons.get(r, 0)) for r in _REJECT_REASONS},
            "labelled": _count(lb, "status", LabelStatus.DONE),
            "precisions": len(_precisions(lb)),
            "label_failed": _count(lb, "status", LabelStatus.FAILED),
            "pending_label": _missing(accepted, lb["dhash"] if lb is not None else None),
            "included": _count(cc, "status", CurateStatus.INCLUDED),
            "excluded": _count(cc, "status", CurateStatus.EXCLUDED),
        })
    return pd.DataFrame(rows)


def _precisions(labels: pd.DataFrame | None) -> dict[str, int]:
    if labels is None:
        return {}
    return precision_counts(labels.loc[labels["status"] == LabelStatus.DONE, "labeler"])


def mixed_precision(dataset_dir: Path) -> dict[str, dict[str, int]]:
    """Category -> labelled images per precision, for the categories whose labels were made at more than
    one (dtype, torch or transformers version; ``core.label.precision``)."""
    labels = read_all(dataset_dir, TableName.SAM3_LABELS, columns=["status", "labeler"])
    found = {category: _precisions(table) for category, table in sorted(labels.items())}
    return {category: counts for category, counts in found.items() if len(counts) > 1}


def failed_labels(dataset_dir: Path) -> pd.DataFrame:
    """What failed labelling and why: category, frame, image, error."""
    tables = read_all(dataset_dir, TableName.SAM3_LABELS, columns=["rel_path", "dhash", "status", "error"])
    rows = [t.loc[t["status"] == LabelStatus.FAILED, ["rel_path", "dhash", "error"]].assign(category=c)
            for c, t in tables.items()]
    rows = [r for r in rows if len(r)]
    if not rows:
        return pd.DataFrame(columns=["category", "rel_path", "dhash", "error"])
    return pd.concat(rows, ignore_index=True)[["category", "rel_path", "dhash", "error"]]


def top_videos(dataset_dir: Path, limit: int = 20) -> pd.DataFrame:
    """Which videos gave the most accepted frames (and how many of their frames were rejected)."""
    deduped = read_all(dataset_dir, TableName.DEDUPED_IMAGES, columns=["video_id", "status"])
    tables = [t.assign(category=c) for c, t in deduped.items() if len(t)]
    if not tables:
        return pd.DataFrame(columns=["video_id", "categories", "accepted", "rejected"])
    df = pd.concat(tables, ignore_index=True)
    df = df[df["video_id"].notna()]
    grouped = df.groupby("video_id").agg(
        categories=("category", lambda s: ",".join(sorted(set(s)))),
        accepted=("status", lambda s: int((s == DedupeStatus.ACCEPTED).sum())),
        rejected=("status", lambda s: int((s == DedupeStatus.REJECTED).sum())),
    ).reset_index()
    return grouped.sort_values(["accepted", "video_id"], ascending=[False, True]).head(limit).reset_index(drop=True)
