"""Keeps ``coco_dataset`` in step with the categories: Declarative Automation, evaluated by its own sensor.

Why this rather than an asset sensor: the condition lives on the asset (the UI shows why it did or did not
run), it waits while any category is still running (one merge after a burst of runs, not one per run),
and it needs no cursor of ours. ``eager()`` would also wait until *every* category has been curated; a
dataset always has some category in flight or failed, so that part is dropped.
"""

import os

from dagster import AssetSelection, AutomationCondition, AutomationConditionSensorDefinition, DefaultSensorStatus

EXPORT_CONDITION = AutomationCondition.eager().without(~AutomationCondition.any_deps_missing())

coco_export_automation = AutomationConditionSensorDefinition(
    "coco_export_automation",
    target=AssetSelection.assets("coco_dataset"),
    minimum_interval_seconds=int(os.environ.get("SAMANTICS_AUTOMATION_INTERVAL_SECONDS") or 30),
    default_status=(DefaultSensorStatus.STOPPED if os.environ.get("SAMANTICS_AUTOMATION", "on").lower() in ("off", "0", "false")
                    else DefaultSensorStatus.RUNNING),
    description="Re-merges coco_dataset once curated_coco partitions have changed and none is in progress.",
)
