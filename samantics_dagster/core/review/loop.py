"""The review round trip for one category: send the triaged frames, pull the completed reviews back.

State lives in two tables, each with one writer: ``tables/review_tasks/{category}.parquet`` (a row per
frame sent: project and task id) and ``tables/reviewed_labels/{category}.parquet`` (a row per frame a person
completed, in the ``sam3_labels`` instance schema), plus ``tables/review_agreement/{category}.parquet`` (a
row per instance). Sending is idempotent and resumable: the tasks already in the project are adopted by
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

from samantics_dagster.core.dataset.schema import HUMAN_PREFIX, REVIEW_TASKS, REVIEWED_LABELS, ReviewStatus
from samantics_dagster.core.review.agreement import agreement_table, match_instances
from samantics_dagster.core.review.client import LabelStudioClient, ProjectMissing
from samantics_dagster.core.review.convert import from_regions, labeling_config, to_regions
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


def ensure_project(client: LabelStudioClient, title: str, names: Sequence[str], previous: pd.DataFrame | None,
                   storage_path: str | None, recreate: bool) -> tuple[int, bool, pd.DataFrame]:
    """The project id (found by the table, else by title, else created), whether it was created, and the
    previous rows that still belong to it. A recorded project that is gone is an error unless ``recreate``."""
    rows = previous if previous is not None else task_table([])
    recorded = sorted(set(rows["project_id"].dropna().astype(int)))
    if recorded:
        try:
            client.project(recorded[-1])
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
    if storage_path:
        client.add_local_storage(int(project["id"]), storage_path, "image store")
    return int(project["id"]), created, rows


def send_frames(client: LabelStudioClient, project_id: int, category: str, chosen: Sequence[Triage],
                labels: pd.DataFrame, previous: pd.DataFrame, names: Mapping[int, str], image_url: Callable[[str], str],
                skip: set[str], max_tasks: int, write: Callable[[pd.DataFrame], None], batch: int = 50) -> SendResult:
    """Adopt the project's tasks missing from ``previous``, then import up to ``max_tasks`` new frames."""
    rows = previous.to_dict("records")
    known = {r["dhash"] for r in rows}
    by_dhash = {r["dhash"]: r for r in labels.to_dict("records")}
    triage = {t.dhash: t for t in chosen}
    adopted = 0
    for task in client.iter_tasks(project_id):
        data = task.get("data", {})
        d = data.get("dhash")
        if data.get("category") == category and d and d not in known:
            t, label = triage.get(d), by_dhash.get(d, {})
            rows.append({"dhash": d, "rel_path": data.get("rel_path"), "status": SENT, "project_id": project_id,
                         "task_id": int(task["id"]), "priority": t.priority if t else 0.0,
                         "reasons": json.dumps(t.reasons if t else {}), "audit": bool(t and t.audit),
                         "labeler": label.get("labeler"), "sent_at": _now()})
            known.add(d)
            adopted += 1
    if adopted:
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
            tasks.append({
                "data": {"image": image_url(t.dhash), "dhash": t.dhash, "category": category,
                         "rel_path": label["rel_path"], "priority": t.priority, "reasons": t.reasons},
                "predictions": [{"model_version": str(label["labeler"]), "result": to_regions(inst, w, h, names),
                                 "score": min((float(i["score"]) for i in inst), default=0.0)}],
            })
        ids = client.import_tasks(project_id, tasks)
        if len(ids) != len(part):
            raise RuntimeError(f"Label Studio returned {len(ids)} task ids for {len(part)} tasks imported into project "
                               f"{project_id}; the next run adopts them by dhash")
        for t, task_id in zip(part, ids):
            rows.append({"dhash": t.dhash, "rel_path": by_dhash[t.dhash]["rel_path"], "status": SENT,
                         "project_id": project_id, "task_id": task_id, "priority": t.priority,
                         "reasons": json.dumps(t.reasons), "audit": t.audit, "labeler": by_dhash[t.dhash]["labeler"],
                         "sent_at": _now()})
        sent += len(part)
        write(task_table(rows))
    return SendResult(task_table(rows), project_id, sent, adopted, len(chosen))


@dataclass
class PullResult:
    table: pd.DataFrame
    agreement: pd.DataFrame
    new: int  # reviews pulled for the first time, or changed since the last pull
    completed: int  # tasks with a completed annotation in Label Studio now
    annotators: dict[str, int] = field(default_factory=dict)


def _latest(annotations: Sequence[dict]) -> dict | None:
    done = [a for a in annotations if not a.get("was_cancelled")]
    return max(done, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), int(a.get("id", 0))),
               default=None)


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


def pull_reviews(client: LabelStudioClient, tasks: pd.DataFrame, labels: pd.DataFrame, previous: pd.DataFrame | None,
                 ids: Mapping[str, int]) -> PullResult:
    """The completed annotations of the category's tasks as ``reviewed`` rows, with per-instance agreement."""
    rows = {r["dhash"]: r for r in (previous.to_dict("records") if previous is not None else [])}
    by_task = {int(t): d for t, d in zip(tasks["task_id"], tasks["dhash"])}
    by_dhash = {r["dhash"]: r for r in labels.to_dict("records")}
    new, completed = 0, 0
    annotators: dict[str, int] = {}
    users: dict[int, str] = {}
    for project_id in sorted(set(tasks["project_id"].dropna().astype(int))):
        for task in client.export_annotated(project_id):
            d = by_task.get(int(task["id"]))
            ann = _latest(task.get("annotations", []))
            if d is None or ann is None or d not in by_dhash:
                continue
            completed += 1
            label = by_dhash[d]
            w, h = int(label["width"]), int(label["height"])
            sam = json.loads(label["instances"])
            human = from_regions(ann.get("result", []), sam, w, h, ids)
            who = _annotator(client, ann, users)
            annotators[who] = annotators.get(who, 0) + 1
            stamp = str(ann.get("updated_at") or ann.get("created_at") or "")
            old = rows.get(d)
            if old is None or int(old["annotation_id"]) != int(ann["id"]) or old["updated_at"] != stamp:
                new += 1
            records = match_instances(sam, human)
            outcome = pd.Series([r["outcome"] for r in records], dtype="object").value_counts().to_dict()
            rows[d] = {"dhash": d, "rel_path": label["rel_path"], "status": REVIEWED, "task_id": int(task["id"]),
                       "annotation_id": int(ann["id"]), "annotator": who, "labeler": f"{HUMAN_PREFIX}{who}",
                       "n_instances": len(human), "instances": json.dumps(human), "width": w, "height": h,
                       "updated_at": stamp, "agreement": json.dumps({"sam_labeler": label["labeler"],
                                                                     "outcomes": outcome, "instances": records})}
    agreement = []
    for d, row in sorted(rows.items()):
        for rec in json.loads(row["agreement"])["instances"]:
            agreement.append({"dhash": d, "task_id": int(row["task_id"]), **rec})
    return PullResult(reviewed_table(list(rows.values())), agreement_table(agreement), new, completed, annotators)
