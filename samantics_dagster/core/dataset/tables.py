"""Per-frame tables on disk: ``{DATASET_DIR}/tables/{asset}/{category}.parquet``.

These files replace the old ``pipeline.db``; the IO manager, the CLI and the asset checks all read
them through here, so the path convention lives in one place. Writes go to a temp file in the same
folder and are renamed into place, so a reader never sees half a table.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import pandas as pd


def table_path(dataset_dir: Path | str, asset: str, category: str) -> Path:
    return Path(dataset_dir) / "tables" / asset / f"{category}.parquet"


def write_table(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".parquet.tmp")
    os.close(fd)
    try:
        df.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_table(path: Path) -> pd.DataFrame | None:
    return pd.read_parquet(path) if path.is_file() else None


def read_all(dataset_dir: Path | str, asset: str) -> dict[str, pd.DataFrame]:
    """Every partition's table of one asset, keyed by category."""
    folder = Path(dataset_dir) / "tables" / asset
    if not folder.is_dir():
        return {}
    return {p.stem: pd.read_parquet(p) for p in sorted(folder.glob("*.parquet"))}


def write_jsonl(records: Iterable[dict], path: Path) -> int:
    """Replace a JSON-lines file atomically (tools read labels.jsonl while the pipeline runs)."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".jsonl.tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            n = 0
            for rec in records:
                fh.write(json.dumps(rec) + "\n")
                n += 1
        os.replace(tmp, path)
        return n
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
