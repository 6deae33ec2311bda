"""One category's ``sam3_labels`` table across runs: its rows, the parts a run writes, the resume plan.

A run writes one parquet part per finished batch (temp file + rename) under
``tables/sam3_labels/.parts/{category}/``; the next run merges the last table with any parts a killed
run left behind (:func:`known_rows`) and labels only what does not stand (:func:`plan`). The final table
is written before the parts are removed (:func:`merge_parts`), so finished work always exists on disk.
Kept apart from ``pipeline`` so that the resume rules can be read without the threading.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from samantics_dagster.core.dataset.schema import IMPORTED_PREFIX, SAM3_LABELS, LabelStatus
from samantics_dagster.core.dataset.tables import write_table
from samantics_dagster.core.label.failures import failed_on_device
from samantics_dagster.core.label.masks import Instance
from samantics_dagster.core.label.precision import Relabel, same_labels, split

DONE, FAILED = LabelStatus.DONE, LabelStatus.FAILED


def label_row(dhash: str, rel_path: str, labeler: str, *, instances: list[Instance] | None = None,
              error: str | None = None, size: tuple[int, int] | None = None) -> dict:
    """One image's row: ``failed`` with its error, else ``done`` with its instances as JSON records."""
    records = [i.to_record() for i in instances or []]
    return {
        "dhash": dhash, "rel_path": rel_path, "status": FAILED if error else DONE, "error": error,
        "n_instances": len(records), "instances": json.dumps(records), "labeler": labeler,
        "width": size[0] if size else None, "height": size[1] if size else None,
    }


def to_table(rows: Sequence[dict]) -> pd.DataFrame:
    return SAM3_LABELS.frame(rows)


def write_part(parts_dir: Path, rows: list[dict], tag: str = "") -> None:
    """One finished batch's rows as a part; the name sorts by time and never collides across threads,
    processes or hosts. ``tag`` names the share of work it belongs to (``part-{ns}-{tag}-{random}``), so a
    share retried after its worker died finds what it already wrote (:func:`tagged_dhashes`)."""
    if rows:
        infix = f"{tag}-" if tag else ""
        write_table(to_table(rows), parts_dir / f"part-{time.time_ns()}-{infix}{uuid.uuid4().hex[:12]}.parquet")


def tagged_dhashes(parts_dir: Path, tag: str) -> set[str]:
    """The images the parts written under ``tag`` hold."""
    return {d for p in parts_dir.glob(f"part-*-{tag}-*.parquet") for d in pd.read_parquet(p, columns=["dhash"]).dhash}


def known_rows(previous: pd.DataFrame | None, parts_dir: Path) -> dict[str, dict]:
    """The last table plus any parts a killed run left behind (parts are newer)."""
    rows: dict[str, dict] = {}
    if previous is not None:
        rows.update({r["dhash"]: r for r in previous.to_dict("records")})
    for part in sorted(parts_dir.glob("part-*.parquet"), key=lambda p: p.stat().st_mtime_ns):
        rows.update({r["dhash"]: r for r in pd.read_parquet(part).to_dict("records")})
    return rows


def _imported(row: dict) -> bool:
    return isinstance(row["labeler"], str) and row["labeler"].startswith(IMPORTED_PREFIX)


def _reusable(old: dict, labeler: str, retry_failed: bool, relabel_imported: bool, relabel: Relabel) -> bool:
    """Whether a known row stands. Imported ``done`` rows have another labeler by construction
    (no SAM3 run made them), so the fingerprint comparison would always relabel them. A row that failed on
    a device error is tried again by every run (``core.label.failures``): the error says nothing about the image.
    The labeler's precision (``core.label.precision``) counts only with ``relabel=other_precision``."""
    if old["status"] == DONE and _imported(old):
        return not relabel_imported
    if old["status"] == FAILED and failed_on_device(old["error"]):
        return False
    return same_labels(old["labeler"], labeler, relabel) and (old["status"] == DONE or not retry_failed)


def plan(wanted: list[dict], known: dict[str, dict], labeler: str, retry_failed: bool,
         relabel_imported: bool, relabel: Relabel = Relabel.changed) -> tuple[dict[str, dict], list[dict], str | None]:
    """(rows that stand, by dhash; rows to label; why rows labelled before are labelled again, if they are)."""
    keep: dict[str, dict] = {}
    todo: list[dict] = []
    stale: Counter[str] = Counter()
    why: dict[str, None] = {}  # the reasons, in first-seen order
    device = 0  # failed rows of this labeler tried again because their error came from the device
    for rec in wanted:
        old = known.get(rec["dhash"])
        if old is not None and _reusable(old, labeler, retry_failed, relabel_imported, relabel):
            keep[rec["dhash"]] = old
        else:
            todo.append(rec)
            if old is not None and old["labeler"] != labeler:
                stale[old["labeler"]] += 1
                why[("relabel_imported is set" if old["status"] == DONE and _imported(old)
                     else "model, queries or candidate floor changed" if split(old["labeler"])[0] != split(labeler)[0]
                     else "labelled at another precision (relabel: other_precision)")] = None
            elif old is not None and old["status"] == FAILED and failed_on_device(old["error"]) and not retry_failed:
                device += 1
    reasons = []
    if stale:
        reasons.append(f"relabelling {sum(stale.values())} images labelled by {', '.join(stale)}: "
                       f"{'; '.join(why)} (now {labeler})")
    if device:
        reasons.append(f"trying again {device} images that failed on a device error")
    return keep, todo, "; ".join(reasons) or None


def merge_parts(keep: dict[str, dict], new_rows: list[dict], table_path: Path, parts_dir: Path) -> pd.DataFrame:
    """The rows that stood plus this run's (newer wins), written to ``table_path``; only then are the
    parts removed, so there is no moment at which finished work exists nowhere on disk."""
    final = {**keep, **{r["dhash"]: r for r in new_rows}}
    table = to_table(list(final.values()))
    write_table(table, table_path)
    for part in parts_dir.glob("part-*.parquet"):
        part.unlink()
    return table


def instances_per_class(table: pd.DataFrame) -> dict[str, int]:
    """Instances in the ``done`` rows, per category id."""
    per_class: Counter[int] = Counter()
    for blob in table.loc[table.status == DONE, "instances"]:
        per_class.update(i["category_id"] for i in json.loads(blob))
    return {str(k): v for k, v in sorted(per_class.items())}
