"""The review round trip for one category: send the triaged frames, pull the completed reviews back.

State lives in two tables, each with one writer: ``tables/review_tasks/{category}.parquet`` (a row per
frame sent: project and task id) and ``tables/reviewed_labels/{category}.parquet`` (a row per frame a person
completed: the consensus of its people, in the ``sam3_labels`` instance schema), plus
``tables/review_agreement/{category}.parquet`` (a row per instance, SAM3 against the consensus) and
``tables/review_annotations/{category}.parquet`` (a row per person's annotation, with their agreement). Sending is idempotent and resumable: the tasks already in the project are adopted by
their ``dhash`` before anything is imported (a run killed between Label Studio's reply and the table write
sends nothing twice), and the table is written after every batch. Pulling never drops a row: a review whose
task has gone from Label Studio (project deleted) keeps its last pulled version.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd

from samantics_dagster.core.dataset.schema import (
    HUMAN_PREFIX,
    REVIEW_ANNOTATIONS,
    REVIEW_TASKS,
    REVIEWED_LABELS,
    ReviewStatus,
)
from samantics_dagster.core.review.agreement import agreement_table, match_instances
from samantics_dagster.core.review.client import LabelStudioClient, ProjectMissing
from samantics_dagster.core.review.consensus import (
    Annotation,
    Consensus,
    consensus,
    frame_rows,
    pair_score,
    reliability,
    rerequest,
    task_agreement,
)
from samantics_dagster.core.review.convert import NEAR_MISS_NAME, from_regions, labeling_config, to_regions
from samantics_dagster.core.review.near_miss import RECORDS_KEY, NearMiss, accepted, regions, task_data
from samantics_dagster.core.review.triage import Triage

SENT, REVIEWED = ReviewStatus.SENT, ReviewStatus.REVIEWED
TASK_COLUMNS = REVIEW_TASKS.names
REVIEWED_COLUMNS = REVIEWED_LABELS.names


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def task_table(rows: Sequence[dict]) -> pd.DataFrame:
    return REVIEW_TASKS.frame(rows)


def reviewed_table(rows: Sequence[dict]) -> pd.DataFrame:
    return REVIEWED_LABELS.frame(rows)


@dataclass
class SendResult:
    table: pd.DataFrame
    project_id: int
    sent: int  # tasks created by this run
    adopted: int  # tasks found in the project but missing from the table
    candidates: int  # frames triage chose, before the cap and those already sent
    created_project: bool = False
    overlap_raised: int = 0  # tasks whose Label Studio overlap this run raised to the people they want


def _per_task(client: LabelStudioClient, project: dict, per_task: int) -> None:
    if project.get("maximum_annotations") != per_task or project.get("overlap_cohort_percentage") != 100:
        client.set_annotations_per_task(int(project["id"]), per_task)


def _near_miss_controls(client: LabelStudioClient, project: dict, names: Sequence[str]) -> None:
    """A project made before near misses were sent gets today's labeling interface (it only adds controls);
    one that has them is left as it is (a user may have restyled it)."""
    if f'name="{NEAR_MISS_NAME}"' not in str(project.get("label_config") or ""):
        client.set_label_config(int(project["id"]), labeling_config(names))


def ensure_project(client: LabelStudioClient, title: str, names: Sequence[str], previous: pd.DataFrame | None,
                   storage_path: str | None, recreate: bool, per_task: int = 1) -> tuple[int, bool, pd.DataFrame]:
    """The project id (found by the table, else by title, else created), whether it was created, and the
    previous rows that still belong to it. A recorded project that is gone is an error unless ``recreate``.
    The project asks for ``per_task`` people per task (Label Studio's ``maximum_annotations``)."""
    rows = previous if previous is not None else task_table([])
    recorded = sorted(set(rows["project_id"].dropna().astype(int)))
    if recorded:
        try:
            recorded_project = client.project(recorded[-1])
            _per_task(client, recorded_project, per_task)
            _near_miss_controls(client, recorded_project, names)
            return recorded[-1], False, rows
        except ProjectMissing as exc:
            if not recreate:
                raise ProjectMissing(
                    f"{exc}; the review_tasks table still lists its {len(rows)} tasks. The reviews pulled before are "
                    "kept in reviewed_labels. Re-run review_tasks with `recreate_project: true` to send the frames "
                    "not yet reviewed to a new project") from None
            rows = rows.iloc[0:0]
    project = client.find_project(title)
    created = project is None
    if created:
        project = client.create_project(title, labeling_config(names),
                                        "Frames SAM3 was least sure about, sent by samantics-dagster (review_tasks)")
    assert project is not None
    _per_task(client, project, per_task)
    if not created:
        _near_miss_controls(client, project, names)
    if storage_path:
        client.add_local_storage(int(project["id"]), storage_path, "image store")
    return int(project["id"]), created, rows


@dataclass(frozen=True)
class PeoplePerTask:
    """How many distinct people annotate a task: the audit share (frames drawn without bias, where agreement
    between people is measured) and the rest."""

    audit: int = 2
    other: int = 1

    def wanted(self, audit: bool) -> int:
        return self.audit if audit else self.other


def send_frames(client: LabelStudioClient, project_id: int, category: str, chosen: Sequence[Triage],
                labels: pd.DataFrame, previous: pd.DataFrame, names: Mapping[int, str], image_url: Callable[[str], str],
                skip: set[str], max_tasks: int, write: Callable[[pd.DataFrame], None], batch: int = 50,
                people: PeoplePerTask | None = None,
                near: Callable[[str], Sequence[NearMiss]] | None = None) -> SendResult:
    """Adopt the project's tasks missing from ``previous``, then import up to ``max_tasks`` new frames.

    ``labels`` holds what passes today's thresholds (the pre-annotations); ``near`` gives a frame's near
    misses, sent beside them for a person to accept with one click (``core.review.near_miss``).

    Label Studio gives every imported task the project's overlap (``ensure_project`` sets it to
    ``people.other``) and ignores an ``overlap`` in the imported task, so a task that wants more people (the
    audit share) has its overlap raised after the import; tasks already in the project whose overlap is under
    what they want (the setting was raised, or Label Studio reset it) are raised too. Never lowered: a task sent
    back for one more person (``reviewed_labels``) keeps that."""
    people = people or PeoplePerTask()
    rows = previous.to_dict("records")
    known = {r["dhash"] for r in rows}
    by_dhash = {r["dhash"]: r for r in labels.to_dict("records")}
    triage = {t.dhash: t for t in chosen}
    adopted, raised = 0, 0
    live: dict[int, dict] = {}
    for task in client.iter_tasks(project_id):
        data = task.get("data", {})
        d = data.get("dhash")
        if data.get("category") != category or not d:
            continue
        live[int(task["id"])] = task
        if d not in known:
            t, label = triage.get(d), by_dhash.get(d, {})
            rows.append({"dhash": d, "rel_path": data.get("rel_path"), "status": SENT, "project_id": project_id,
                         "task_id": int(task["id"]), "priority": t.priority if t else 0.0,
                         "reasons": json.dumps(t.reasons if t else {}), "audit": bool(t and t.audit),
                         "labeler": label.get("labeler"), "sent_at": _now()})
            known.add(d)
            adopted += 1
    changed = adopted > 0
    for r in rows:
        want = people.wanted(bool(r["audit"]))
        now = live.get(int(r["task_id"])) if int(r["project_id"]) == project_id else None
        if now is not None and int(now.get("overlap") or 1) < want:
            client.set_task_overlap(int(r["task_id"]), want, int(now.get("total_annotations") or 0))
            raised += 1
        if r.get("annotators_wanted") is None or pd.isna(r.get("annotators_wanted")) or int(r["annotators_wanted"]) != want:
            r["annotators_wanted"] = want
            changed = True
    if changed:
        write(task_table(rows))
    todo = [t for t in chosen if t.dhash not in known and t.dhash not in skip and t.dhash in by_dhash][:max_tasks]
    sent = 0
    for start in range(0, len(todo), batch):
        part = todo[start:start + batch]
        tasks = []
        for t in part:
            label = by_dhash[t.dhash]
            inst = json.loads(label["instances"])
            w, h = int(label["width"]), int(label["height"])
            misses = list(near(t.dhash)) if near is not None else []
            tasks.append({
                "data": {"image": image_url(t.dhash), "dhash": t.dhash, "category": category,
                         "rel_path": label["rel_path"], "priority": t.priority, "reasons": t.reasons,
                         **task_data(misses, names)},
                "predictions": [{"model_version": str(label["labeler"]),
                                 "result": to_regions(inst, w, h, names) + regions(misses, w, h),
                                 "score": min((float(i["score"]) for i in inst), default=0.0)}],
            })
        ids = client.import_tasks(project_id, tasks)
        if len(ids) != len(part):
            raise RuntimeError(f"Label Studio returned {len(ids)} task ids for {len(part)} tasks imported into project "
                               f"{project_id}; the next run adopts them by dhash")
        for t, task_id in zip(part, ids):
            want = people.wanted(t.audit)
            if want > people.other:  # imported with the project's overlap, people.other
                client.set_task_overlap(task_id, want, 0)
                raised += 1
            rows.append({"dhash": t.dhash, "rel_path": by_dhash[t.dhash]["rel_path"], "status": SENT,
                         "project_id": project_id, "task_id": task_id, "priority": t.priority,
                         "reasons": json.dumps(t.reasons), "audit": t.audit, "labeler": by_dhash[t.dhash]["labeler"],
                         "sent_at": _now(), "annotators_wanted": want})
        sent += len(part)
        write(task_table(rows))
    return SendResult(task_table(rows), project_id, sent, adopted, len(chosen), overlap_raised=raised)


@dataclass(frozen=True)
class ConsensusSettings:
    """How several people's annotations of a frame become one (see ``core.review.consensus``)."""

    match_iou: float = 0.5  # regions of different people at least this close are one object (pixel majority)
    bound: float = 0.6  # a frame whose people agree less goes back for one more person
    max_people: int = 3  # ... up to this many people
    rerequest: bool = True


@dataclass
class PullResult:
    table: pd.DataFrame
    agreement: pd.DataFrame
    new: int  # reviews pulled for the first time, or changed since the last pull
    completed: int  # tasks with a completed annotation in Label Studio now
    annotators: dict[str, int] = field(default_factory=dict)
    annotations: pd.DataFrame = field(default_factory=lambda: REVIEW_ANNOTATIONS.frame([]))
    people: dict[int, list[Annotation]] = field(default_factory=dict)  # task id -> its people's annotations
    asked_again: dict[int, int] = field(default_factory=dict)  # task id -> people asked for by this pull
    trust: dict[str, float] = field(default_factory=dict)  # person -> mean agreement with the others
    agreed: dict[int, Consensus] = field(default_factory=dict)  # task id -> its consensus
    sam: dict[int, list[dict]] = field(default_factory=dict)  # task id -> SAM3's instances of its frame
    near_misses: dict[str, int] = field(default_factory=lambda: {"shown": 0, "accepted": 0})  # over people's annotations


def _per_person(annotations: Sequence[dict], who: Callable[[dict], str]) -> list[tuple[str, dict]]:
    """Each person's latest completed annotation (skipped and cancelled ones left out), by annotation id."""
    done = sorted((a for a in annotations if not a.get("was_cancelled")),
                  key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), int(a.get("id", 0))))
    latest = {who(a): a for a in done}
    return sorted(latest.items(), key=lambda kv: int(kv[1]["id"]))


def _annotator(client: LabelStudioClient, annotation: dict, names: dict[int, str]) -> str:
    """Who completed it: the export gives a user id (or, in some versions, the user), named by e-mail."""
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        return str(who.get("email") or who.get("username") or who.get("id"))
    if who is None:
        return "unknown"
    if int(who) not in names:
        names[int(who)] = client.user_name(int(who))
    return names[int(who)]


def _stamp(annotation: dict) -> str:
    return str(annotation.get("updated_at") or annotation.get("created_at") or "")


def pull_reviews(client: LabelStudioClient, tasks: pd.DataFrame, labels: pd.DataFrame, previous: pd.DataFrame | None,
                 ids: Mapping[str, int], settings: ConsensusSettings | None = None,
                 previous_people: pd.DataFrame | None = None, candidates: pd.DataFrame | None = None) -> PullResult:
    """Every person's completed annotation of the category's tasks; per task the consensus as a ``reviewed``
    row (what curation uses), each person's agreement with the others and with the consensus, SAM3's
    agreement with the consensus (per instance too), and the tasks whose people agree under the bound sent
    back to Label Studio for one more person (their overlap raised).

    ``labels`` is what the tasks showed (today's thresholds); ``candidates`` the ``sam3_labels`` table itself,
    where a near miss a person accepted untouched is found again, exact (without it: read from its polygon).
    A person's instances are their ``label`` regions plus the near misses they ticked."""
    settings = settings or ConsensusSettings()
    rows = {r["dhash"]: r for r in (previous.to_dict("records") if previous is not None else [])}
    by_task = {int(t): d for t, d in zip(tasks["task_id"], tasks["dhash"])}
    by_dhash = {r["dhash"]: r for r in labels.to_dict("records")}
    raw = dict(zip(candidates["dhash"], candidates["instances"])) if candidates is not None else {}
    new, completed = 0, 0
    near_count = {"shown": 0, "accepted": 0}
    annotators: dict[str, int] = {}
    users: dict[int, str] = {}
    people: dict[int, list[Annotation]] = {}
    frame_of: dict[int, str] = {}
    for project_id in sorted(set(tasks["project_id"].dropna().astype(int))):
        for task in client.export_annotated(project_id):
            d = by_task.get(int(task["id"]))
            if d is None or d not in by_dhash:
                continue
            done = _per_person(task.get("annotations", []), lambda a: _annotator(client, a, users))
            if not done:
                continue
            completed += 1
            label = by_dhash[d]
            w, h = int(label["width"]), int(label["height"])
            sam = json.loads(label["instances"])
            misses = task.get("data", {}).get(RECORDS_KEY) or []
            cands = json.loads(raw[d]) if misses and isinstance(raw.get(d), str) else None
            anns = []
            for who, raw_ann in done:
                result = raw_ann.get("result", [])
                kept = accepted(result, misses, cands, w, h)
                near_count["shown"] += len(misses)
                near_count["accepted"] += len(kept)
                anns.append(Annotation(who, int(raw_ann["id"]), from_regions(result, sam, w, h, ids) + kept,
                                       _stamp(raw_ann)))
            for a in anns:
                annotators[a.annotator] = annotators.get(a.annotator, 0) + 1
            people[int(task["id"])] = anns
            frame_of[int(task["id"])] = d
    trust = reliability(list(people.values()))
    per_person: list[dict] = []
    agreed_of: dict[int, Consensus] = {}
    sam_of: dict[int, list[dict]] = {}
    for task_id, anns in people.items():
        d = frame_of[task_id]
        label = by_dhash[d]
        sam = sam_of[task_id] = json.loads(label["instances"])
        agreed = agreed_of[task_id] = consensus(anns, trust, settings.match_iou)
        together, _ = task_agreement(anns)
        source = json.dumps([[a.annotation_id, a.updated_at] for a in anns])
        old = rows.get(d)
        if old is None or old.get("annotations") != source:
            new += 1
        records = match_instances(sam, agreed.instances)
        outcome = pd.Series([r["outcome"] for r in records], dtype="object").value_counts().to_dict()
        who = agreed.source.annotator if agreed.source else "+".join(a.annotator for a in anns)
        asked = old.get("asked_again") if old is not None else None
        rows[d] = {"dhash": d, "rel_path": label["rel_path"], "status": REVIEWED, "task_id": task_id,
                   "annotation_id": agreed.source.annotation_id if agreed.source else None, "annotator": who,
                   "labeler": f"{HUMAN_PREFIX}{who}", "n_instances": len(agreed.instances),
                   "instances": json.dumps(agreed.instances), "width": int(label["width"]),
                   "height": int(label["height"]), "updated_at": max(a.updated_at for a in anns),
                   "agreement": json.dumps({"sam_labeler": label["labeler"], "outcomes": outcome, "instances": records}),
                   "n_annotators": len(anns), "consensus": agreed.method,
                   "people_agreement": None if together is None else round(together, 4),
                   "sam_agreement": round(pair_score(sam, agreed.instances).agreement, 4), "annotations": source,
                   "asked_again": None if asked is None or pd.isna(asked) else int(asked)}
        per_person += [{"dhash": d, "task_id": task_id, **r, "instances": json.dumps(a.instances),
                        "per_class": json.dumps(r["per_class"])} for a, r in zip(anns, frame_rows(anns, agreed))]
    asked_again = _send_back(client, rows, people, settings) if settings.rerequest else {}
    for task_id, n in asked_again.items():
        rows[frame_of[task_id]]["asked_again"] = n
    agreement = []
    for d, row in sorted(rows.items()):
        for rec in json.loads(row["agreement"])["instances"]:
            agreement.append({"dhash": d, "task_id": int(row["task_id"]), **rec})
    if previous_people is not None and len(previous_people):
        # a frame whose task is gone from Label Studio keeps its people's rows, as it keeps its reviewed row
        per_person += previous_people[~previous_people["task_id"].isin(list(people))].to_dict("records")
    return PullResult(reviewed_table(list(rows.values())), agreement_table(agreement), new, completed, annotators,
                      REVIEW_ANNOTATIONS.frame(per_person), people, asked_again, trust, agreed_of, sam_of, near_count)


def _send_back(client: LabelStudioClient, rows: Mapping[str, dict], people: Mapping[int, list[Annotation]],
               settings: ConsensusSettings) -> dict[int, int]:
    """Raise the overlap of the tasks whose people agree under the bound: Label Studio then serves each to one
    more person who has not annotated it. Label Studio's own overlap is the state (a task already waiting for
    another person is left alone), so a repeated pull asks nothing twice."""
    asked = {}
    for row in rows.values():
        task_id = int(row["task_id"])
        anns = people.get(task_id)
        agreement = row["people_agreement"]
        if not anns or agreement is None or pd.isna(agreement) or agreement >= settings.bound:
            continue
        overlap = int(client.task(task_id).get("overlap") or 1)
        want = rerequest(float(agreement), len(anns), overlap, settings.bound, settings.max_people)
        if want is not None:
            client.set_task_overlap(task_id, want, len(anns))
            asked[task_id] = want
    return asked
