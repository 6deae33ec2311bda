"""The first thing a category run does: check ``coco-spec.json`` and ``sam-queries.yaml`` before any frame work.

``sam3_labels`` checks them too, but it runs after dedupe: on a new dataset without a spec the user would
wait for ingest and dedupe to learn it. ``ingress_frames`` calls :func:`check_taxonomy_first` when its run
goes on to a step that reads the spec, so a missing or broken file fails the run's first step in seconds,
with the message naming the file and the fix, and nothing is deduplicated.
"""

from __future__ import annotations

from typing import Any

from dagster import AssetExecutionContext, AssetKey, Failure

from samantics_dagster.core.dataset.spec import SpecError
from samantics_dagster.core.label.taxonomy import load_taxonomy
from samantics_dagster.defs.label.sam3_labels import LabelConfig
from samantics_dagster.defs.resources.dataset import DatasetResource

# The category assets that read coco-spec.json (sam3_labels also reads sam-queries.yaml).
SPEC_READERS = frozenset(AssetKey(k) for k in ("sam3_labels", "curated_coco", "review_tasks", "reviewed_labels"))


def check_taxonomy_first(context: AssetExecutionContext, dataset: DatasetResource) -> None:
    """Raise ``Failure`` (file, entry, fix) when the run will read a spec that is missing or broken."""
    selected = context.job_def.asset_layer.selected_asset_keys
    if not selected & SPEC_READERS:
        return  # ingest and dedupe alone need no taxonomy
    # The relation rules decide which classes are derived (and may not be queried): the run's own
    # sam3_labels config, as that step will read it.
    ops: Any = context.run.run_config.get("ops") or {}
    raw = (ops.get("sam3_labels") or {}).get("config") or {}
    rules = LabelConfig(**raw).settings().relation_rules
    try:
        taxonomy = load_taxonomy(dataset.layout, rules)
    except SpecError as exc:
        raise Failure(description=f"{exc} (checked before dedupe: this run labels or curates, and would fail there)",
                      allow_retries=False) from None
    context.log.info(f"taxonomy: {len(taxonomy.spec.categories)} categories in {dataset.layout.spec}, "
                     f"{len(taxonomy.queries.queries)} SAM3 queries")
