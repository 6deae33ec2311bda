"""Metadata helpers shared by the assets: markdown previews, and each table's schema and row count."""

from typing import Any

import pandas as pd
from dagster import MetadataValue, TableColumn, TableSchema

from samantics_dagster.core.dataset.schema import TABLES, TableName

TYPES = {"string": "string", "Int64": "int", "int64": "int", "float64": "float", "Float64": "float", "bool": "bool"}


def md_table(df: pd.DataFrame, limit: int = 10) -> MetadataValue:
    """The first rows of ``df`` as a markdown table in the UI's metadata panel ("none" when empty)."""
    return MetadataValue.md(df.head(limit).to_markdown(index=False) if len(df) else "none")


def column_schema(table: TableName) -> dict[str, Any]:
    """``dagster/column_schema`` of a per-frame table, from its one declaration in ``core.dataset.schema``."""
    schema = TABLES[table]
    return {"dagster/column_schema": TableSchema(columns=[
        TableColumn(c.name, TYPES[c.dtype], description=c.description) for c in schema.columns])}


def table_metadata(table: TableName, df: pd.DataFrame) -> dict[str, Any]:
    """What every materialisation of a table asset reports: its row count and its column schema."""
    return {"dagster/row_count": len(df), **column_schema(table)}
