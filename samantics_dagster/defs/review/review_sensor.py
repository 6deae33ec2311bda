"""The review sensor: polls each category's Label Studio project and pulls newly completed reviews.

Polling rather than a webhook: a webhook needs Label Studio to reach the Dagster host (and a listener that
outlives restarts), a poll needs only what the assets already use. The cursor keeps, per category, a digest
of its completed annotations (task, annotation, updated_at); a category whose digest changed gets one
``review_pull`` run (reviewed_labels, then curated_coco), keyed by that digest, so a repeated tick, or a
reset cursor, launches nothing twice. Starts stopped unless ``LABEL_STUDIO_URL`` is set.
"""

import hashlib
import json

from dagster import (
    AssetSelection,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    sensor,
)

from samantics_dagster.core.review.client import LabelStudioError
from samantics_dagster.core.settings import settings
from samantics_dagster.defs.resources.dataset import DatasetResource
from samantics_dagster.defs.review.resources import LabelStudioResource
from samantics_dagster.defs.review.review_tasks import REVIEW_TASKS

review_pull = define_asset_job(
    "review_pull", selection=AssetSelection.assets("reviewed_labels", "curated_coco"),
    description="Pull a category's completed Label Studio reviews, then curate it again with them.",
)


def completed_signature(export: list[dict], task_ids: set[int]) -> str | None:
    """A digest of the completed annotations of our tasks (None when there are none)."""
    keys = sorted((int(t["id"]), int(a["id"]), str(a.get("updated_at")))
                  for t in export if int(t["id"]) in task_ids
                  for a in t.get("annotations", []) if not a.get("was_cancelled"))
    return hashlib.sha1(json.dumps(keys).encode()).hexdigest()[:16] if keys else None


@sensor(
    name="label_studio_review_sensor",
    job=review_pull,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING if settings().label_studio_url else DefaultSensorStatus.STOPPED,
    description="Polls each category's Label Studio project; newly completed or edited reviews launch review_pull "
                "(reviewed_labels -> curated_coco) for that category.",
)
def label_studio_review_sensor(context: SensorEvaluationContext, dataset: DatasetResource,
                               label_studio: LabelStudioResource):
    cursor = json.loads(context.cursor) if context.cursor else {}
    runs, errors = [], []
    with label_studio.client() as client:
        for category, tasks in sorted(dataset.tables(REVIEW_TASKS).items()):
            ids = {int(t) for t in tasks["task_id"].dropna()}
            try:
                export = [t for p in sorted(set(tasks["project_id"].dropna().astype(int)))
                          for t in client.export_annotated(p)]
            except LabelStudioError as exc:
                errors.append(f"{category}: {exc}")
                continue
            sig = completed_signature(export, ids)
            if sig is None or cursor.get(category) == sig:
                continue
            cursor[category] = sig
            runs.append(RunRequest(partition_key=category, run_key=f"{category}:{sig}",
                                   tags={"samantics/trigger": "label_studio_review_sensor"}))
    for e in errors:
        context.log.warning(e)
    if errors and not runs:
        raise LabelStudioError("; ".join(errors))  # a red tick names the cause; the cursor is kept
    if not runs:
        return SensorResult(skip_reason=SkipReason("no new or changed reviews"), cursor=json.dumps(cursor))
    return SensorResult(run_requests=runs, cursor=json.dumps(cursor))
