"""The IO manager behind every partitioned asset: one parquet table per asset and category."""


import pandas as pd
from dagster import ConfigurableIOManager, InputContext, OutputContext

from samantics_dagster.core.dataset.tables import read_table, table_path, write_table


class ParquetTableIOManager(ConfigurableIOManager):
    """Writes ``{dataset_dir}/tables/{asset}/{category}.parquet`` atomically (temp file + rename)."""

    dataset_dir: str

    def handle_output(self, context: OutputContext, obj: pd.DataFrame) -> None:
        path = table_path(self.dataset_dir, context.asset_key.path[-1], context.partition_key)
        write_table(obj, path)
        context.add_output_metadata({"path": str(path), "rows": len(obj)})

    def load_input(self, context: InputContext) -> pd.DataFrame:
        asset = context.asset_key.path[-1]
        path = table_path(self.dataset_dir, asset, context.partition_key)
        df = read_table(path)
        if df is None:
            raise FileNotFoundError(
                f"{path} does not exist: materialise `{asset}` for partition {context.partition_key!r} first"
            )
        return df
