"""``thresholds_sensor``: a changed ``sam-queries.yaml`` selection re-curates every category it touches.

Class thresholds, NMS and relation rules choose among SAM3's candidates when curating, so after a change
(``samantics thresholds --apply`` or a hand edit) only ``curated_coco`` is stale, not the labels. Each
materialisation of ``curated_coco`` records the fingerprint of the selection it applied; this sensor reads the
file on each tick and, when its fingerprint is new, asks for a ``recurate`` run of every category whose
last curation used another one (``run_key`` = category + fingerprint, so a tick repeated or a cursor reset
never launches the same re-curation twice). The merged exports follow through their automation condition.
"""

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from samantics_dagster.core.dataset.schema import TableName
from samantics_dagster.core.dataset.spec import SpecError
from samantics_dagster.core.label.taxonomy import dataset_selection
from samantics_dagster.core.settings import Settings, settings
from samantics_dagster.defs.automation.jobs import recurate
from samantics_dagster.defs.curate.curated_coco import SELECTION_METADATA
from samantics_dagster.defs.resources.dataset import DatasetResource

CURATED = AssetKey("curated_coco")


def curated_with(context: SensorEvaluationContext, category: str) -> str | None:
    """The selection fingerprint of the category's last curation (None: never curated, or before candidates)."""
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=CURATED, asset_partitions=[category]), limit=1).records
    if not records or records[0].asset_materialization is None:
        return None
    value = records[0].asset_materialization.metadata.get(SELECTION_METADATA)
    return None if value is None else str(getattr(value, "value", value))


def build_thresholds_sensor(config: Settings) -> SensorDefinition:
    @sensor(
        name="thresholds_sensor",
        job=recurate,
        minimum_interval_seconds=config.automation_interval_s,
        default_status=DefaultSensorStatus.RUNNING if config.automation_on else DefaultSensorStatus.STOPPED,
        description="Watches sam-queries.yaml: when its thresholds, NMS or relation rules change, launches recurate "
                    "(curated_coco alone, no model) for every category curated with the old ones.",
    )
    def thresholds_sensor(context: SensorEvaluationContext, dataset: DatasetResource):
        try:
            fingerprint = dataset_selection(dataset.layout).fingerprint()
        except (SpecError, FileNotFoundError) as exc:
            return SensorResult(skip_reason=SkipReason(f"sam-queries.yaml or coco-spec.json unreadable: {exc}"))
        if context.cursor == fingerprint:
            return SensorResult(skip_reason=SkipReason("selection unchanged"))
        labelled = set(dataset.layout.table_categories(TableName.SAM3_LABELS))
        categories = [c for c in sorted(labelled) if curated_with(context, c) not in (None, fingerprint)]
        runs = [RunRequest(partition_key=c, run_key=f"recurate:{c}:{fingerprint}",
                           tags={"samantics/trigger": "thresholds_sensor", "samantics/selection": fingerprint})
                for c in categories]
        context.log.info(f"selection {fingerprint}: {len(runs)} categories to re-curate")
        if not runs:
            return SensorResult(skip_reason=SkipReason(f"selection {fingerprint}: every category is curated with it"),
                                cursor=fingerprint)
        return SensorResult(run_requests=runs, cursor=fingerprint)

    return thresholds_sensor


thresholds_sensor = build_thresholds_sensor(settings())
