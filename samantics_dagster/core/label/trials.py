"""Prompt trials: the reviewed frames of a category labelled with every phrasing listed for a class.

SAM3 is sensitive to the noun phrase, so ``sam-queries.yaml`` may list alternative phrasings per class
(``alternatives:``, read by ``core.label.queries.load_alternatives``). A trial labels only the frames people
reviewed, so its cost is the reviewed set times the phrasings, never the category: each class that lists
alternatives is tried with its query of today (the reference) and with each alternative, each phrasing
alone, candidates down to the floor as ``sam3_labels`` keeps them (one labelling serves every threshold).
``core.quality.prompts`` then ranks the phrasings by F1 at their best threshold against the reviewed labels.

Resumable the way ``sam3_labels`` is (``core.label.resume``): the labelling goes through the same stages
(``core.label.stages``), one parquet part per finished batch under ``tables/prompt_trials/.parts/{category}/``,
and the run merges them into the table (the table written first, the parts removed after). One row per
(image, class, phrasing); a row stands while its labeler does, and the labeler is ``LabelSettings.labeler``
of that single phrasing (model, candidate floor and the words sent), so a rerun labels only the pairs that
do not stand. An image goes through the vision encoder once per run, with all the phrasings it lacks.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from samantics_dagster.core.dataset.layout import parts_dir as layout_parts_dir
from samantics_dagster.core.dataset.schema import PROMPT_TRIALS, LabelStatus
from samantics_dagster.core.dataset.store import ImageStore
from samantics_dagster.core.dataset.tables import read_table, write_table
from samantics_dagster.core.label.failures import failed_on_device
from samantics_dagster.core.label.pipeline import LabelSettings
from samantics_dagster.core.label.precision import Relabel, same_labels
from samantics_dagster.core.label.queries import Query, QuerySet, truncate_queries
from samantics_dagster.core.label.stages import BatchStages, ProgressFn, Segmenter

DONE, FAILED = LabelStatus.DONE, LabelStatus.FAILED
Key = tuple[str, int, str]  # (dhash, category id, phrasing)


@dataclass(frozen=True)
class TrialPrompt:
    """One phrasing of one class. ``text`` is the phrasing as ``sam-queries.yaml`` writes it (the table's
    ``prompt``); ``sent`` what SAM3 is given (shortened if over the text encoder's length)."""

    category_id: int
    category_name: str
    text: str
    reference: bool  # the class's query today
    sent: str = ""

    def query(self, category_id: int | None = None) -> Query:
        return Query(self.category_id if category_id is None else category_id, self.category_name,
                     self.sent or self.text)


def trial_prompts(queries: QuerySet, alternatives: Mapping[str, Sequence[str]],
                  count_tokens: Callable[[str], int] | None = None) -> tuple[list[TrialPrompt], list[str]]:
    """Every phrasing to try: per class that lists alternatives, its query (the reference), then each
    alternative (repeats of the query or of each other dropped). With ``count_tokens`` (the tokenizer's count
    without BOS/EOS), an over-long phrasing is shortened as ``sam3_labels`` shortens a query (with a warning)."""
    prompts: list[TrialPrompt] = []
    for q in queries.queries:
        alts = alternatives.get(q.category_name) or []
        if not alts:
            continue
        seen = {q.text}
        prompts.append(TrialPrompt(q.category_id, q.category_name, q.text, True))
        for alt in alts:
            if alt not in seen:
                seen.add(alt)
                prompts.append(TrialPrompt(q.category_id, q.category_name, alt, False))
    if count_tokens is None:
        return prompts, []
    short, warnings = truncate_queries(QuerySet(tuple(p.query() for p in prompts)), count_tokens)
    return [TrialPrompt(p.category_id, p.category_name, p.text, p.reference, s.text)
            for p, s in zip(prompts, short.queries)], warnings


def phrasing_labeler(settings: LabelSettings, model_fingerprint: str,
                     precision: str | None) -> Callable[[TrialPrompt], str]:
    """A phrasing's labeler: ``sam3_labels``' fingerprint with that phrasing as the only query (the words
    sent, the class, the model, the floor), so a rerun relabels a pair exactly when one of them changed."""
    return lambda p: settings.labeler(model_fingerprint, QuerySet((p.query(),)), precision)


def key_of(row: Mapping) -> Key:
    return (str(row["dhash"]), int(row["category_id"]), str(row["prompt"]))


def known_trials(previous: pd.DataFrame | None, parts_dir: Path) -> dict[Key, dict]:
    """The last table plus the parts a killed run left (parts are newer)."""
    rows: dict[Key, dict] = {}
    if previous is not None:
        rows.update({key_of(r): r for r in previous.to_dict("records")})
    for part in sorted(parts_dir.glob("part-*.parquet"), key=lambda p: p.stat().st_mtime_ns):
        rows.update({key_of(r): r for r in pd.read_parquet(part).to_dict("records")})
    return rows


def _stands(old: dict, labeler: str, retry_failed: bool) -> bool:
    """As a ``sam3_labels`` row: same labeler (precision aside), and done, or failed on the image itself."""
    if not same_labels(str(old["labeler"]), labeler, Relabel.changed):
        return False
    if old["status"] == DONE:
        return True
    return not retry_failed and not failed_on_device(old["error"])


@dataclass
class TrialPlan:
    keep: dict[Key, dict]  # rows that stand
    todo: dict[tuple[int, ...], list[dict]]  # indices into the prompts -> the frames that lack exactly those
    wanted: int  # pairs (frame, phrasing) the table should hold

    @property
    def pairs(self) -> int:
        return sum(len(frames) * len(group) for group, frames in self.todo.items())


def plan_trials(frames: Sequence[dict], prompts: Sequence[TrialPrompt], labelers: Sequence[str],
                known: Mapping[Key, dict], retry_failed: bool = False) -> TrialPlan:
    """Which (frame, phrasing) pairs stand and which to label, grouped by the set of phrasings a frame lacks
    (every frame of a group goes through the model once with those phrasings)."""
    keep: dict[Key, dict] = {}
    todo: dict[tuple[int, ...], list[dict]] = defaultdict(list)
    for rec in frames:
        missing = []
        for k, (p, labeler) in enumerate(zip(prompts, labelers)):
            key = (rec["dhash"], p.category_id, p.text)
            old = known.get(key)
            if old is not None and _stands(old, labeler, retry_failed):
                keep[key] = old
            else:
                missing.append(k)
        if missing:
            todo[tuple(missing)].append(rec)
    return TrialPlan(keep, dict(todo), len(frames) * len(prompts))


def trial_rows(rows: Sequence[dict], group: Sequence[TrialPrompt], labelers: Sequence[str]) -> list[dict]:
    """Rows of the labelling stages (one per image; a candidate's ``category_id`` is its phrasing's index in
    ``group``) as trial rows, one per (image, phrasing); a failed image fails every phrasing."""
    out = []
    for row in rows:
        failed = row["status"] == FAILED
        instances = [] if failed else json.loads(row["instances"])
        for k, (p, labeler) in enumerate(zip(group, labelers)):
            mine = [{**i, "category_id": p.category_id} for i in instances if int(i["category_id"]) == k]
            out.append({"dhash": row["dhash"], "rel_path": row["rel_path"], "category_id": p.category_id,
                        "prompt": p.text, "status": row["status"], "error": row["error"],
                        "n_instances": len(mine), "instances": json.dumps(mine), "labeler": labeler,
                        "width": row["width"], "height": row["height"]})
    return out


def to_trial_table(rows: Sequence[dict]) -> pd.DataFrame:
    table = PROMPT_TRIALS.frame(rows)
    return table.sort_values(["category_id", "prompt", "dhash"], ignore_index=True)


def write_trial_part(parts_dir: Path, rows: list[dict]) -> None:
    """A finished batch's trial rows as a part, named as ``resume.write_part`` names them (sorts by time)."""
    if rows:
        write_table(to_trial_table(rows), parts_dir / f"part-{time.time_ns()}-{uuid.uuid4().hex[:12]}.parquet")


@dataclass
class TrialResult:
    table: pd.DataFrame
    frames: int  # reviewed frames tried
    prompts: int  # phrasings tried
    labelled_pairs: int  # (frame, phrasing) pairs through the model in this run
    labelled_images: int  # images through the vision encoder in this run
    reused_pairs: int
    failed_pairs: int  # in the table
    seconds: float
    stage_seconds: dict[str, float] = field(default_factory=dict)


def label_trials(frames: pd.DataFrame, prompts: Sequence[TrialPrompt], store: ImageStore,
                 make_segment: Callable[[QuerySet], Segmenter], labeler_of: Callable[[TrialPrompt], str], *,
                 table_path: Path, image_batch: int = 4, retry_failed: bool = False, post_workers: int = 1,
                 progress: ProgressFn | None = None, log: Callable[[str], None] = print,
                 after_part: Callable[[int], None] | None = None) -> TrialResult:
    """Label the pairs of ``frames`` (``dhash``, ``rel_path``: the reviewed frames) x ``prompts`` that do not
    stand; returns the whole table, also written to ``table_path``.

    ``make_segment(queries)`` builds the labelling function for a set of phrasings (``pipeline.make_segmenter``
    of the loaded model); the phrasings of a group are given category ids 0..n-1 so each candidate says which
    phrasing found it. ``labeler_of`` is a phrasing's fingerprint. ``after_part(n)`` as in ``label_partition``.
    """
    start = time.perf_counter()
    parts_dir = layout_parts_dir(table_path)
    parts_dir.mkdir(parents=True, exist_ok=True)
    labelers = [labeler_of(p) for p in prompts]
    wanted = frames.drop_duplicates("dhash")[["dhash", "rel_path"]].to_dict("records")
    plan = plan_trials(wanted, prompts, labelers, known_trials(read_table(table_path), parts_dir), retry_failed)
    images = sum(len(f) for f in plan.todo.values())
    log(f"prompt trials: {len(wanted)} reviewed frames x {len(prompts)} phrasings = {plan.wanted} pairs; "
        f"{len(plan.keep)} stand, {plan.pairs} to label on {images} images")
    done_before = 0
    stage_seconds = {"load": 0.0, "device": 0.0, "post": 0.0}
    for indices, group_frames in plan.todo.items():
        group = [prompts[k] for k in indices]
        group_labelers = [labelers[k] for k in indices]
        queries = QuerySet(tuple(p.query(k) for k, p in enumerate(group)))

        def write(parts: Path, rows: list[dict], _tag: str, group: list[TrialPrompt] = group,
                  group_labelers: list[str] = group_labelers) -> None:
            write_trial_part(parts, trial_rows(rows, group, group_labelers))

        def step(n: int, _total: int, before: int = done_before) -> None:
            if progress:
                progress(before + n, images)

        stages = BatchStages(store, make_segment(queries), "prompt-trial", parts_dir, post_workers=post_workers,
                             total=len(group_frames), progress=step, after_part=after_part, part_writer=write)
        stages.run([group_frames[i:i + image_batch] for i in range(0, len(group_frames), image_batch)])
        done_before += len(group_frames)
        for name, secs in (("load", stages.times.load), ("device", stages.times.device), ("post", stages.times.post)):
            stage_seconds[name] += secs
    table = merge_trials(plan.keep, table_path, parts_dir,
                         {(r["dhash"], p.category_id, p.text) for r in wanted for p in prompts})
    return TrialResult(table, frames=len(wanted), prompts=len(prompts), labelled_pairs=plan.pairs,
                       labelled_images=images, reused_pairs=len(plan.keep),
                       failed_pairs=int((table["status"] == FAILED).sum()), seconds=time.perf_counter() - start,
                       stage_seconds=stage_seconds)


def merge_trials(keep: Mapping[Key, dict], table_path: Path, parts_dir: Path, wanted: set[Key]) -> pd.DataFrame:
    """The rows that stood plus this run's parts (the wanted pairs only: a phrasing dropped from the file or a
    frame no longer reviewed leaves the table), written; only then are the parts removed."""
    final = dict(keep)
    for part in sorted(parts_dir.glob("part-*.parquet"), key=lambda p: p.stat().st_mtime_ns):
        final.update({k: r for r in pd.read_parquet(part).to_dict("records") if (k := key_of(r)) in wanted})
    table = to_trial_table(list(final.values()))
    write_table(table, table_path)
    for part in parts_dir.glob("part-*.parquet"):
        part.unlink()
    return table
