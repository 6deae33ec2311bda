"""One category on every GPU of a Ray cluster: SAM3 replicas as Ray actors, each labelling shares of the images.

Ray does the scheduling and the GPU accounting: each actor asks for one GPU (``num_gpus=1``; on a CPU
stand-in, one CPU), so concurrent runs of other categories get the others and an actor waits for a free one
instead of piling onto ``cuda:0``. The category's pending images are cut into shares (a few batches each) and
handed to whichever actor is idle (``ray.util.ActorPool``); each actor runs the same pipelined labeller as the
in-process path (``core.label.stages``: decode, device, post-processing overlapped) on its share, writing one
part per batch into the category's parts folder exactly as that path does. The step then merges the parts
into the one table with the same resume rules (``core.label.resume``), in the order the in-process path would
have written it, so the table is the same byte for byte (given the same device and precision).

Failures: an actor that dies (SIGKILL, a lost node) is restarted by Ray and its share retried
(``max_restarts``, ``max_task_retries``); the retried share skips the batches whose parts its dead attempt
already wrote (parts are named after their share), so at most the batches in flight are labelled again, and
the table keeps one row per image whatever happens. A run killed as a whole leaves its parts; the next run, with
any number of actors, labels only what they do not hold.

The actors need the code, the dataset folder and the model cache at the same paths as the step: the same
image (compose's Ray head, KubeRay's worker group) and the same volumes. No Dagster here.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from samantics_dagster.core.dataset.layout import parts_dir as layout_parts_dir
from samantics_dagster.core.dataset.spec import Spec
from samantics_dagster.core.dataset.store import ImageStore
from samantics_dagster.core.dataset.tables import read_table
from samantics_dagster.core.label.pipeline import LabelSettings, make_segmenter
from samantics_dagster.core.label.precision import Relabel
from samantics_dagster.core.label.queries import QuerySet, truncate_queries
from samantics_dagster.core.label.resume import (
    DONE,
    FAILED,
    instances_per_class,
    known_rows,
    merge_parts,
    plan,
    tagged_dhashes,
)
from samantics_dagster.core.label.stages import BatchStages, ProgressFn


@dataclass(frozen=True)
class ReplicaSpec:
    """What each actor loads: the model folder (same path on every node), where it runs, and how."""

    model_dir: str
    gpu: bool  # one GPU per actor (Ray sets CUDA_VISIBLE_DEVICES: the actor's cuda:0 is its own GPU); else the CPU
    dtype: str = "auto"
    compile: bool = False
    cpus: float = 1.0  # CPUs Ray reserves per actor; its torch threads on a CPU stand-in


@dataclass
class ShareStats:
    """One share as an actor labelled it: who, where, how many, how long (stages as in ``StageTimes``)."""

    actor: str
    device: str
    images: int
    seconds: float
    load: float = 0.0
    device_s: float = 0.0
    post: float = 0.0
    rows: list[dict] = field(default_factory=list)  # the rows this attempt wrote (also in its parts)
    resumed: int = 0  # images an earlier attempt of this share (a worker that died) had written already


@dataclass
class RayLabelResult:
    """What ``LabelResult`` says for the in-process path, plus each actor's share and the failures' cost."""

    table: pd.DataFrame
    labelled: int
    reused: int
    failed: int
    seconds: float
    instances_per_class: dict[str, int]
    relabel_reason: str | None
    labeler: str
    attempted: int = 0
    failed_this_run: int = 0
    actors: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> device, images, seconds
    relabelled_after_failures: int = 0  # images labelled twice because a worker died with them in flight
    warnings: list[str] = field(default_factory=list)
    start_seconds: float = 0.0  # until every replica was loaded (then only labelling)
    model_fingerprint: str = ""
    queries_fingerprint: str = ""

    @property
    def failed_share(self) -> float:
        return self.failed_this_run / self.attempted if self.attempted else 0.0

    @property
    def slowest_actor(self) -> str | None:
        """The actor with the lowest rate: the one a faster GPU or fewer actors would help."""
        rated = {k: v["images"] / v["seconds"] for k, v in self.actors.items() if v["seconds"] > 0 and v["images"]}
        return min(rated, key=lambda k: rated[k]) if rated else None


class ShareLabeller:
    """A Ray actor body: one SAM3 replica on one device, labelling shares with the pipelined labeller.

    Everything it needs comes through ``__init__``, so an actor Ray restarts after a crash is the same one.
    """

    def __init__(self, name: str, replica: ReplicaSpec, spec: Spec, queries: QuerySet, settings: LabelSettings,
                 dataset_dir: str) -> None:
        import torch

        from samantics_dagster.core.label.model import load_sam3

        if not replica.gpu:
            torch.set_num_threads(max(1, int(replica.cpus)))
        self.name = name
        self.loaded = load_sam3(Path(replica.model_dir), device="cuda" if replica.gpu else "cpu",
                                dtype=replica.dtype, compile=replica.compile)
        tokenizer = self.loaded.processor.tokenizer
        self.queries, self.warnings = truncate_queries(queries, lambda text: len(tokenizer(text).input_ids) - 2)
        self.settings = settings
        self.labeler = settings.labeler(self.loaded.fingerprint, self.queries, self.loaded.precision)
        self.segment = make_segmenter(self.loaded, self.queries, spec, settings)
        self.store = ImageStore(Path(dataset_dir))
        dev = self.loaded.device
        self.device = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"

    def describe(self) -> dict[str, Any]:
        return {"labeler": self.labeler, "warnings": self.warnings, "device": self.device, "pid": os.getpid(),
                "model_fingerprint": self.loaded.fingerprint, "queries_fingerprint": self.queries.fingerprint()}

    def label(self, tag: str, records: list[dict], parts_dir: str, post_workers: int) -> ShareStats:
        """Label one share; its parts carry ``tag``. A retry (the actor died mid-share and Ray restarted it)
        skips the images its earlier attempt already wrote."""
        start = time.perf_counter()
        done = tagged_dhashes(Path(parts_dir), tag)
        todo = [r for r in records if r["dhash"] not in done]
        batch = self.settings.image_batch
        stages = BatchStages(self.store, self.segment, self.labeler, Path(parts_dir), post_workers=post_workers,
                             total=len(todo), part_tag=tag)
        rows = stages.run([todo[i:i + batch] for i in range(0, len(todo), batch)])
        t = stages.times
        return ShareStats(self.name, self.device, len(records), time.perf_counter() - start, t.load, t.device, t.post,
                          rows=rows, resumed=len(records) - len(todo))


def free_workers(gpu: bool, cpus_per_actor: float = 1.0) -> int:
    """How many actors the cluster could start now: free GPUs, or free CPUs over ``cpus_per_actor``."""
    import ray

    free = ray.available_resources()
    return int(free.get("GPU", 0)) if gpu else int(free.get("CPU", 0) // max(cpus_per_actor, 1e-9))


def cluster_has_gpus() -> bool:
    import ray

    return ray.cluster_resources().get("GPU", 0) > 0


def label_partition_ray(
    accepted: pd.DataFrame,
    dataset_dir: Path,
    replica: ReplicaSpec,
    spec: Spec,
    queries: QuerySet,
    settings: LabelSettings,
    *,
    table_path: Path,
    max_actors: int = 8,
    share_batches: int = 4,
    retry_failed: bool = False,
    relabel_imported: bool = False,
    relabel: Relabel = Relabel.changed,
    post_workers: int = 1,
    max_restarts: int = 2,
    start_timeout_s: float = 600.0,
    progress: ProgressFn | None = None,
    log: Callable[[str], None] = print,
) -> RayLabelResult:
    """Label one category's accepted rows on Ray actors (``ray.init`` already done by the caller).

    As many actors start at once as the cluster has free GPUs (CPUs on a stand-in), up to ``max_actors`` and to
    the number of shares the category could need; the first one's labeler fingerprint decides what is already
    done, and the actors left without a share are let go. Shares of ``share_batches`` batches go to whichever
    actor is idle. A replica that cannot start within
    ``start_timeout_s`` (its GPU taken meanwhile by another run's actor) is given up, the others go on. The table
    is merged and written here, before the parts are removed (``resume.merge_parts``).
    """
    import ray
    from ray.util import ActorPool

    start = time.perf_counter()
    parts_dir = layout_parts_dir(table_path)
    parts_dir.mkdir(parents=True, exist_ok=True)
    remote: Any = ray.remote(ShareLabeller).options(
        num_gpus=1 if replica.gpu else 0, num_cpus=replica.cpus, max_restarts=max_restarts,
        max_task_retries=max_restarts)
    free = free_workers(replica.gpu, replica.cpus)
    args = (replica, spec, queries, settings, str(dataset_dir))
    share = settings.image_batch * share_batches
    # Every replica the work could use starts loading now, beside the first (whose labeler decides what is done):
    # on a GPU host the loads overlap instead of the others waiting for the first's. Ones the plan leaves without
    # a share are let go once it is known.
    could_use = -(-accepted["dhash"].nunique() // share)
    actors: list[Any] = [remote.remote(f"actor-{i}", *args) for i in range(max(1, min(max_actors, free, could_use)))]
    try:
        ready, _ = ray.wait([first_ref := actors[0].describe.remote()], timeout=start_timeout_s)
        if not ready:
            raise RuntimeError(
                f"no SAM3 replica started on the Ray cluster within {start_timeout_s:.0f}s: it has "
                f"{ray.cluster_resources()} in all, {ray.available_resources()} free, and each replica needs "
                f"{'1 GPU' if replica.gpu else f'{replica.cpus:g} CPU'}. Add a GPU worker (or wait for the other "
                "runs' actors), or unset SAMANTICS_RAY_ADDRESS to label in-process")
        first: dict[str, Any] = ray.get(first_ref)
        labeler: str = first["labeler"]
        known = known_rows(read_table(table_path), parts_dir)
        wanted = accepted.drop_duplicates("dhash")[["dhash", "rel_path"]].to_dict("records")
        keep, todo, why = plan(wanted, known, labeler, retry_failed, relabel_imported, relabel)
        if why:
            log(why)
        shares = [todo[i:i + share] for i in range(0, len(todo), share)]
        n = max(1, min(len(actors), len(shares)))
        for spare in actors[n:]:
            ray.kill(spare)
        actors = [actors[0], *_started(actors[1:n], start_timeout_s, log)]  # the start-up cost, apart
        n = len(actors)
        start_seconds = time.perf_counter() - start
        log(f"labelling {len(todo)} images ({len(keep)} already done) in {len(shares)} shares on {n} Ray actors "
            f"({'1 GPU' if replica.gpu else f'{replica.cpus:g} CPU'} each); labeler {labeler}")
        run_tag = uuid.uuid4().hex[:8]
        jobs = [(f"{run_tag}s{i:05d}", records) for i, records in enumerate(shares)]
        stats: list[ShareStats] = []
        done = 0
        if progress and todo:
            progress(0, len(todo))
        pool = ActorPool(actors)
        for s in pool.map_unordered(lambda a, job: a.label.remote(job[0], job[1], str(parts_dir), post_workers),
                                    jobs):
            stats.append(s)
            done += s.images
            if progress:
                progress(done, len(todo))
    finally:
        for actor in actors:  # the GPUs go back to the cluster now, not when the driver disconnects
            ray.kill(actor)

    new_rows, twice = _rows_of(parts_dir, todo, stats)
    table = merge_parts(keep, new_rows, table_path, parts_dir)
    per_actor: dict[str, dict[str, Any]] = {}
    for s in stats:
        a = per_actor.setdefault(s.actor, {"device": s.device, "images": 0, "seconds": 0.0, "shares": 0})
        a["images"] += s.images
        a["seconds"] = round(a["seconds"] + s.seconds, 3)
        a["shares"] += 1
    return RayLabelResult(
        table, labelled=sum(r["status"] == DONE for r in new_rows), reused=len(keep),
        failed=int((table.status == FAILED).sum()), seconds=time.perf_counter() - start,
        instances_per_class=instances_per_class(table), relabel_reason=why, labeler=labeler,
        attempted=len(new_rows), failed_this_run=sum(r["status"] == FAILED for r in new_rows), actors=per_actor,
        relabelled_after_failures=twice, warnings=list(first["warnings"]), start_seconds=start_seconds,
        model_fingerprint=first["model_fingerprint"], queries_fingerprint=first["queries_fingerprint"])


def _started(actors: list[Any], timeout_s: float, log: Callable[[str], None]) -> list[Any]:
    """The actors whose replica loaded within ``timeout_s``; the others are killed (their resources freed)."""
    import ray

    if not actors:
        return []
    refs = [a.describe.remote() for a in actors]
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
    kept = []
    for actor, ref in zip(actors, refs):
        try:
            if ref in ready:
                ray.get(ref)
                kept.append(actor)
                continue
            log(f"a SAM3 replica did not start within {timeout_s:.0f}s (no free GPU left?): going on without it")
        except Exception as exc:  # noqa: BLE001 - one replica failing to load leaves the others labelling
            log(f"a SAM3 replica failed to start ({type(exc).__name__}: {exc}): going on without it")
        ray.kill(actor)
    return kept


def _rows_of(parts_dir: Path, todo: list[dict], stats: list[ShareStats]) -> tuple[list[dict], int]:
    """This run's rows for ``todo``, in ``todo``'s order (the order the in-process path writes them), and how many
    images were labelled more than once (a worker died with them in flight).

    The rows come back with the shares; only when a share was resumed (its first attempt's worker died after
    writing some parts) are they read from the parts, where the dead attempt's rows are.
    """
    if all(s.resumed == 0 for s in stats):
        returned = {r["dhash"]: r for s in stats for r in s.rows}
        if all(r["dhash"] in returned for r in todo):
            return [returned[r["dhash"]] for r in todo], 0
    wanted = {r["dhash"] for r in todo}
    latest: dict[str, dict] = {}
    seen: Counter[str] = Counter()
    for part in sorted(parts_dir.glob("part-*.parquet"), key=lambda p: p.stat().st_mtime_ns):
        for row in pd.read_parquet(part).to_dict("records"):
            if row["dhash"] in wanted:
                latest[row["dhash"]] = row
                seen[row["dhash"]] += 1
    missing = [r["dhash"] for r in todo if r["dhash"] not in latest]
    if missing:
        raise RuntimeError(f"{len(missing)} images have no labels after every share finished (e.g. {missing[:3]}): "
                           f"a worker's parts did not reach {parts_dir}. Every Ray node must mount the dataset "
                           "at the same path as the step; re-run to label them")
    return [latest[r["dhash"]] for r in todo], sum(c - 1 for c in seen.values())
