"""``label_quality``: per class, how SAM3's candidates fare against what people reviewed, and the threshold
the evidence suggests (``core.quality``; ``samantics thresholds`` shows and applies it); and the prompt trials
ranked (``core.quality.prompts``; ``samantics prompts`` shows them).

The ranking is here rather than on ``prompt_trials`` (partitioned by category) because a class spans
categories: its phrasings are compared on every reviewed frame of the dataset, as its threshold is.
"""

from typing import Literal

from dagster import (
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
)
from pydantic import Field

from samantics_dagster.core.dataset.schema import TableName
from samantics_dagster.core.dataset.spec import load_spec
from samantics_dagster.core.label.candidates import DEFAULT_FLOOR
from samantics_dagster.core.label.queries import load_alternatives
from samantics_dagster.core.label.taxonomy import RULES, dataset_selection, derived_classes, load_taxonomy
from samantics_dagster.core.label.trials import trial_prompts
from samantics_dagster.core.quality.plot import plots_markdown
from samantics_dagster.core.quality.prompts import RANKING_COLUMNS, rank_prompts, ranking_table
from samantics_dagster.core.quality.report import QualitySettings, quality_report, reviewed_frames, write_report
from samantics_dagster.defs.automation.conditions import EXPORT_CONDITION
from samantics_dagster.defs.metadata import TYPES, md_table
from samantics_dagster.defs.resources.dataset import DatasetResource


class QualityConfig(Config):
    """How the reviewed frames are scored and which threshold is suggested."""

    suggest_from: Literal["audit", "triaged", "all"] = Field("audit", description=(
        "Frames the suggestion comes from: audit (drawn at random: unbiased), triaged (chosen for doubt) or all."))
    precision_target: float | None = Field(None, ge=0.0, le=1.0, description=(
        "Suggest the lowest threshold whose precision meets this (the most recall at it) instead of the best F1."))
    iou_min: float = Field(0.5, gt=0.0, le=1.0, description="Mask IoU at which a candidate found a reviewed object.")
    min_reviewed: int = Field(10, ge=1, description="Fewer reviewed instances of a class: no suggestion for it.")
    candidate_floor: float = Field(DEFAULT_FLOOR, ge=0.0, le=1.0, description="sam3_labels' floor: the curves start there.")
    resamples: int = Field(400, ge=0, description="Bootstrap resamples of the reviewed frames (0: no intervals).")
    seed: int = Field(0, description="Seed of the bootstrap.")

    def settings(self) -> QualitySettings:
        return QualitySettings(floor=self.candidate_floor, iou_min=self.iou_min, precision_target=self.precision_target,
                               suggest_from=self.suggest_from, min_reviewed=self.min_reviewed,
                               resamples=self.resamples, seed=self.seed)


@asset(
    deps=["reviewed_labels", "prompt_trials"],
    group_name="review",
    kinds={"python", "json"},
    automation_condition=EXPORT_CONDITION,
    description="Per class, precision/recall/F1 of SAM3's candidates against the reviewed labels at every threshold "
                "(mask IoU matching), the mean IoU of matched instances and the suggested threshold with bootstrap "
                "intervals; audit and triaged frames apart; the prompt trials' phrasings ranked per class by F1 at "
                "their best threshold. Writes quality/label_quality.json.",
)
def label_quality(context: AssetExecutionContext, config: QualityConfig, dataset: DatasetResource) -> MaterializeResult:
    layout = dataset.layout
    spec = load_spec(layout.spec)
    selection = dataset_selection(layout, spec)
    settings = config.settings()
    frames = reviewed_frames(dataset.tables(TableName.SAM3_LABELS), dataset.tables(TableName.REVIEWED_LABELS),
                             dataset.tables(TableName.REVIEW_TASKS), selection, settings.iou_min)
    report = quality_report(frames, selection, {c.id: c.name for c in spec.categories}, settings)
    trials = dataset.tables(TableName.PROMPT_TRIALS)
    if trials:
        alternatives = load_alternatives(spec, layout.queries, derived=derived_classes(spec, RULES))
        prompts, _ = trial_prompts(load_taxonomy(layout, RULES).queries, alternatives)
        report.prompts = rank_prompts(trials, dataset.tables(TableName.SAM3_LABELS),
                                      dataset.tables(TableName.REVIEWED_LABELS), dataset.tables(TableName.REVIEW_TASKS),
                                      prompts, selection, settings)
    write_report(report, layout.label_quality)
    suggestions = report.suggestions()
    changes = {n: (s["current"], s["suggested"]) for n, s in suggestions.items()
               if s["suggested"] is not None and abs(s["suggested"] - s["current"]) > 1e-9}
    context.log.info(f"{len(frames)} reviewed frames ({report.frames.get('audit', 0)} audit), {len(report.classes)} "
                     f"classes; threshold changes suggested: {changes or 'none'}")
    table = report.table()
    columns = [c for c in ("class", "group", "frames", "reviewed", "current", "f1_at_current", "best", "precision_at_best",
                           "recall_at_best", "f1_at_best", "mean_iou_at_best", "threshold_interval") if c in table]
    return MaterializeResult(metadata={
        "reviewed_frames": MetadataValue.json(report.frames),
        "classes": len(report.classes),
        "suggested_changes": MetadataValue.json({n: {"current": c, "suggested": s} for n, (c, s) in changes.items()}),
        "per_class": md_table(table[columns] if len(table) else table, limit=3 * max(1, len(report.classes))),
        "pr_curves": MetadataValue.md(plots_markdown(report.classes, settings.suggest_from)),
        "report": str(layout.label_quality),
        **({"prompt_ranking": _ranking(report.prompts)} if report.prompts else {}),
    })


def _ranking(rows: list[dict]) -> MetadataValue:
    """The prompt trials' ranking as a table with its column schema (``core.quality.prompts.RANKING_COLUMNS``)."""
    table = ranking_table(rows).astype(object)
    table = table.where(table.notna(), None)
    schema = TableSchema(columns=[TableColumn(c.name, TYPES[c.dtype], description=c.description) for c in RANKING_COLUMNS])
    return MetadataValue.table(records=[TableRecord(r) for r in table.to_dict("records")], schema=schema)
