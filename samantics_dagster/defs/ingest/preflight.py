"""The first thing a category run does: check ``coco-spec.json`` and ``sam-queries.yaml`` before any frame work.

``sam3_labels`` checks them too, but it runs after dedupe: on a new dataset without a spec the user would
wait for ingest and dedupe to learn it. ``ingress_frames`` calls :func:`check_taxonomy_first` when its run
goes on to a step that reads the spec, so a missing or broken file fails the run's first step in seconds,
with the message naming the file and the fix, and nothing is deduplicated.
"""

from __future__ import annotations

from dagster import AssetExecutionContext, AssetKey, Failure

from samantics_dagster.core.dataset.spec import SpecError
from samantics_dagster.core.label.taxonomy import RULES, dataset_selection, load_taxonomy
from samantics_dagster.defs.resources.dataset import DatasetResource

# The category assets that read coco-spec.json and sam-queries.yaml (its queries, or its thresholds).
SPEC_READERS = frozenset(AssetKey(k) for k in ("sam3_labels", "curated_coco", "review_tasks", "reviewed_labels"))


def check_taxonomy_first(context: AssetExecutionContext, dataset: DatasetResource) -> None:
    """Raise ``Failure`` (file, entry, fix) when the run will read a spec that is missing or broken."""
    selected = context.job_def.asset_layer.selected_asset_keys
    if not selected & SPEC_READERS:
        return  # ingest and dedupe alone need no taxonomy
    try:
        taxonomy = load_taxonomy(dataset.layout, RULES)
        dataset_selection(dataset.layout, taxonomy.spec)  # the thresholds, read when curating
    except SpecError as exc:
        raise Failure(description=f"{exc} (checked before dedupe: this run labels or curates, and would fail there)",
                      allow_retries=False) from None
    context.log.info(f"taxonomy: {len(taxonomy.spec.categories)} categories in {dataset.layout.spec}, "
                     f"{len(taxonomy.queries.queries)} SAM3 queries")
