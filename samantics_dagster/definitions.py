"""The code location: ``dagster dev -m samantics_dagster.definitions`` (or via workspace.yaml)."""

import os

from dagster import Definitions, EnvVar, ExecutorDefinition, in_process_executor

from samantics_dagster.assets.checks import (
    accepted_frames_in_store, coco_dataset_no_video_leak, coco_dataset_valid, curated_coco_no_video_leak,
    curated_coco_valid, no_near_duplicates_accepted,
)
from samantics_dagster.assets.export import coco_dataset
from samantics_dagster.jobs import CATEGORY_ASSETS, category_pipeline, coco_export
from samantics_dagster.resources.dataset import DatasetResource
from samantics_dagster.resources.io_manager import ParquetTableIOManager
from samantics_dagster.resources.sam3 import Sam3Resource
from samantics_dagster.schedules import nightly_export, nightly_label_retry
from samantics_dagster.sensors.automation import coco_export_automation
from samantics_dagster.sensors.workdir import grabby_workdir_sensor



def _executor() -> ExecutorDefinition:
    """One process per run, not one per step: each step process re-imports the code location (seconds), and
    the run's steps are a chain anyway; runs of different categories still run in parallel. On Kubernetes
    (SAMANTICS_EXECUTOR=k8s, deploy/k8s.md) each step is a pod, so only labelling holds a GPU node."""
    if os.environ.get("SAMANTICS_EXECUTOR") == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    return in_process_executor


defs = Definitions(
    assets=[*CATEGORY_ASSETS, coco_dataset],
    asset_checks=[accepted_frames_in_store, no_near_duplicates_accepted, curated_coco_valid,
                  curated_coco_no_video_leak, coco_dataset_valid, coco_dataset_no_video_leak],
    jobs=[category_pipeline, coco_export],
    sensors=[grabby_workdir_sensor, coco_export_automation],
    schedules=[nightly_label_retry, nightly_export],
    executor=_executor(),
    resources={
        "dataset": DatasetResource(dataset_dir=EnvVar("DATASET_DIR"), grabby_workdir=EnvVar("GRABBY_WORKDIR")),
        "table_io_manager": ParquetTableIOManager(dataset_dir=EnvVar("DATASET_DIR")),
        "sam3": Sam3Resource(model_cache=EnvVar("MODEL_CACHE")),
    },
)
