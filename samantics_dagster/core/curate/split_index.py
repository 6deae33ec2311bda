"""The video -> split index behind sticky splits: ``.index/splits.parquet`` (``DatasetLayout.split_index``).

``curated_coco`` needs the split of every video already split anywhere in the dataset. Reading every
category's curated table for that costs a read of the whole dataset per category; this index holds one
row per (split group, category) and, beside it, the (size, mtime_ns) of each curated table it was built
from, so a table written without the index (older code, a crash between the two writes, a deleted
category) is noticed by a ``stat`` and only that category is read again. Callers hold the "splits" lock.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import pandas as pd

from samantics_dagster.core.curate.filters import INCLUDED, video_group
from samantics_dagster.core.dataset.atomic import write_text_atomic
from samantics_dagster.core.dataset.fingerprint import file_fingerprint
from samantics_dagster.core.dataset.layout import DatasetLayout
from samantics_dagster.core.dataset.schema import TableName
from samantics_dagster.core.dataset.tables import read_table, write_table

COLUMNS = ["group", "split", "category"]


def groups_of_table(category: str, table: pd.DataFrame | None) -> pd.DataFrame:
    """(group, split, category) of a curated table's included, split frames, one row per group (first split)."""
    if table is None or not len(table):
        return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
    inc = table[(table["status"] == INCLUDED) & table["split"].notna()]
    groups = [video_group(v if pd.notna(v) else None, d) for v, d in zip(inc["video_id"], inc["dhash"])]
    out = pd.DataFrame({"group": groups, "split": inc["split"].astype(str).to_numpy(), "category": category})
    return out.drop_duplicates("group", keep="first").reset_index(drop=True)


def _keys_path(layout: DatasetLayout):  # type: ignore[no-untyped-def]
    return layout.split_index.with_suffix(".keys.json")


def load_split_index(layout: DatasetLayout) -> pd.DataFrame:
    """The index, with every category whose curated table changed since (or has none now) re-read/dropped."""
    index = read_table(layout.split_index)
    keys_path = _keys_path(layout)
    keys: dict = json.loads(keys_path.read_text(encoding="utf-8")) if keys_path.is_file() and index is not None else {}
    if index is None:
        index = pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
    current = {c: file_fingerprint(layout.table(TableName.CURATED_COCO, c))
               for c in layout.table_categories(TableName.CURATED_COCO)}
    stale = {c for c in set(keys) | set(current) if keys.get(c) != current.get(c)}
    if stale:
        fresh = [groups_of_table(c, read_table(layout.table(TableName.CURATED_COCO, c),
                                                columns=["dhash", "video_id", "status", "split"]))
                 for c in sorted(stale) if c in current]
        index = pd.concat([index[~index["category"].isin(stale)], *fresh], ignore_index=True)
    return index


def previous_splits(index: pd.DataFrame, skip: str | None = None) -> dict[str, str]:
    """Group -> split as ``split_of_groups`` gives it over the tables: the first category (sorted) wins."""
    rows = index[index["category"] != skip] if skip is not None else index
    rows = rows.sort_values("category", kind="stable").drop_duplicates("group", keep="first")
    return dict(zip(rows["group"], rows["split"]))


def replace_category(layout: DatasetLayout, index: pd.DataFrame, category: str, table: pd.DataFrame) -> pd.DataFrame:
    """The index with ``category``'s rows from its just-written table, written with every table's fingerprint."""
    index = pd.concat([index[index["category"] != category], groups_of_table(category, table)], ignore_index=True)
    save_split_index(layout, index)
    return index


def save_split_index(layout: DatasetLayout, index: pd.DataFrame) -> None:
    """Called with an index that is fresh for every table (loaded and updated under the "splits" lock)."""
    keys: Mapping[str, list[int] | None] = {
        c: file_fingerprint(layout.table(TableName.CURATED_COCO, c)) for c in layout.table_categories(TableName.CURATED_COCO)}
    layout.split_index.parent.mkdir(parents=True, exist_ok=True)
    write_table(index[COLUMNS].reset_index(drop=True), layout.split_index)
    write_text_atomic(_keys_path(layout), json.dumps({c: k for c, k in keys.items() if k is not None}))


def leaked_index_groups(index: pd.DataFrame) -> tuple[set[str], int]:
    """(groups with frames in two splits across categories, groups in all): the merged export's leak, from the index."""
    per_group = index.groupby("group")["split"].nunique()
    return set(per_group[per_group > 1].index), len(per_group)
