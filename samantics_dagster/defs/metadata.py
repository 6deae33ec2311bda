"""Metadata helpers shared by the assets."""

import pandas as pd
from dagster import MetadataValue


def md_table(df: pd.DataFrame, limit: int = 10) -> MetadataValue:
    """The first rows of ``df`` as a markdown table in the UI's metadata panel ("none" when empty)."""
    return MetadataValue.md(df.head(limit).to_markdown(index=False) if len(df) else "none")
