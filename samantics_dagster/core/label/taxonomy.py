"""The taxonomy a labelling run works with: ``coco-spec.json`` and ``sam-queries.yaml``, read and checked together.

Three places must agree on it: ``sam3_labels`` (before the model loads), the first step of a category run
(before dedupe spends minutes on frames the run could never label) and the workdir sensor (before it requests
a run that would fail). They all call :func:`load_taxonomy`, so a file one of them accepts, all accept.
A missing ``coco-spec.json`` is an error (``samantics init`` writes a starter); a missing
``sam-queries.yaml`` means every category is prompted with its name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from samantics_dagster.core.dataset.layout import DatasetLayout
from samantics_dagster.core.dataset.spec import Spec, load_spec
from samantics_dagster.core.label.candidates import PASSENGER, Selection
from samantics_dagster.core.label.masks import RelationRule
from samantics_dagster.core.label.queries import QuerySet, load_queries, load_selection


@dataclass(frozen=True)
class Taxonomy:
    spec: Spec
    queries: QuerySet


def derived_classes(spec: Spec, rules: Iterable[RelationRule]) -> list[str]:
    """The classes relation rules produce in this spec (all three of a rule's classes must be in it)."""
    names = {c.name for c in spec.categories}
    return [r.becomes for r in rules if {r.subject, r.container, r.becomes} <= names]


def load_taxonomy(layout: DatasetLayout, rules: Iterable[RelationRule]) -> Taxonomy:
    """Both files, validated; raises ``SpecError`` with one line naming the file, the entry and the fix."""
    spec = load_spec(layout.spec)
    return Taxonomy(spec, load_queries(spec, layout.queries, derived=derived_classes(spec, rules)))


RULES: tuple[RelationRule, ...] = (PASSENGER,)
"""The relation rules: their derived classes are never queried; whether they apply is ``_relation_rules``."""


def dataset_selection(layout: DatasetLayout, spec: Spec | None = None) -> Selection:
    """What passes from the candidates, as the dataset's ``sam-queries.yaml`` says (``spec``: if already read)."""
    spec = load_spec(layout.spec) if spec is None else spec
    return load_selection(spec, layout.queries, derived=derived_classes(spec, RULES))
