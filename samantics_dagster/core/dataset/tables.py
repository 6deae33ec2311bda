"""Per-frame tables on disk: ``{DATASET_DIR}/tables/{asset}/{category}.parquet`` (paths from ``layout``).

These files replace the old ``pipeline.db``; the IO manager, the CLI and the asset checks all read them
through here. Writes are atomic (``atomic``): a reader never sees half a table, a failed write leaves the
old one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from samantics_dagster.core.dataset.atomic import atomic_path, write_atomic
from samantics_dagster.core.dataset.layout import DatasetLayout
from samantics_dagster.core.dataset.schema import TableName


def table_path(dataset_dir: Path | str, asset: TableName | str, category: str) -> Path:
    return DatasetLayout(dataset_dir).table(asset, category)


def write_table(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path, suffix=".parquet.tmp") as tmp:
        df.to_parquet(tmp, index=False)


def read_table(path: Path, columns: list[str] | None = None) -> pd.DataFrame | None:
    return pd.read_parquet(path, columns=columns) if path.is_file() else None


def read_all(dataset_dir: Path | str, asset: TableName | str, columns: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """Every partition's table of one asset, keyed by category (only ``columns``, if given)."""
    layout = DatasetLayout(dataset_dir)
    return {c: pd.read_parquet(layout.table(asset, c), columns=columns) for c in layout.table_categories(asset)}


def write_jsonl(records: Iterable[dict], path: Path) -> int:
    """Replace a JSON-lines file atomically (tools read labels.jsonl while the pipeline runs); returns the count."""
    count = 0

    def write(fh) -> None:  # type: ignore[no-untyped-def]
        nonlocal count
        for rec in records:
            fh.write((json.dumps(rec) + "\n").encode("utf-8"))
            count += 1

    write_atomic(path, write)
    return count
