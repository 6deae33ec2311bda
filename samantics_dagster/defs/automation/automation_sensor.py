"""The sensor that evaluates the dataset-wide assets' automation conditions (``conditions.py``)."""

from dagster import AssetSelection, AutomationConditionSensorDefinition, DefaultSensorStatus

from samantics_dagster.core.settings import Settings, settings

# The unpartitioned assets that follow the categories; selected by key so this module imports no asset.
DATASET_WIDE_ASSETS = ("labels_jsonl", "coco_dataset", "yolo_dataset", "label_quality")


def build_export_automation_sensor(config: Settings) -> AutomationConditionSensorDefinition:
    return AutomationConditionSensorDefinition(
        "coco_export_automation",
        target=AssetSelection.assets(*DATASET_WIDE_ASSETS),
        minimum_interval_seconds=config.automation_interval_s,
        default_status=DefaultSensorStatus.RUNNING if config.automation_on else DefaultSensorStatus.STOPPED,
        description="Re-builds labels_jsonl and coco_dataset once category partitions have changed and none "
                    "is in progress.",
    )


coco_export_automation = build_export_automation_sensor(settings())
