"""A labelling run on Ray in a process of its own, for the test that kills a whole run mid-category.

``python -m tests.ray_share_driver ARGS_JSON``: connects to the test's Ray cluster and labels the category
with ``label_partition_ray``; the test SIGKILLs it once some parts are on disk. Nothing outside tests/ runs it.
"""

import json
import sys
from pathlib import Path

import pandas as pd
import ray

from samantics_dagster.core.label.ray_workers import ReplicaSpec, label_partition_ray
from tests.test_label_workers import QUERIES, SETTINGS, SPEC

if __name__ == "__main__":
    args = json.loads(sys.argv[1])
    ray.init(address=args["address"], logging_level="ERROR", log_to_driver=False)
    label_partition_ray(pd.read_json(args["accepted"]), Path(args["dataset"]), ReplicaSpec(args["model_dir"], gpu=False),
                        SPEC, QUERIES, SETTINGS, table_path=Path(args["table"]), max_actors=args["actors"],
                        share_batches=args["share_batches"])
