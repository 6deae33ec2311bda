"""The production settings, run for real: docker/dagster.yaml on a real PostgreSQL, with only the Docker run
launcher swapped for Dagster's default (runs as local processes; no Docker engine here).

One stack for the module: the user-code gRPC server, ``dagster-webserver`` and ``dagster-daemon``, started
through the images' entry scripts with docker/workspace.yaml pointed at 127.0.0.1. The tests drive it the way
a person does: partitions added and a backfill launched through the GraphQL API (the UI's own mutations),
the export launched the same way, and the UI opened in headless Chromium. Every process (and every run
worker they start) carries an audit hook that records any write under the grabby workdir or the model cache.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from itertools import combinations
from pathlib import Path
from urllib.parse import urlencode

import pandas as pd
import pytest
import yaml

from tests.deploy.stack import (
    ARTIFACTS,
    BIN,
    CATEGORY_ASSETS,
    LOCATION,
    REPO,
    REPOSITORY,
    SITECUSTOMIZE,
    GraphQL,
    Processes,
    free_port,
    local_instance_config,
    local_workspace,
    pg_env,
    wait_for,
)

pytestmark = pytest.mark.slow

CATEGORIES = ["gym", "kitchen", "street", "gym-extra"]
REPO_SELECTOR = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}
BACKFILL_TIMEOUT_S = 900
N_CROSS_COPIES = 5

LOCATION_QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries { name
    locationOrLoadError { __typename ... on RepositoryLocation { name } ... on PythonError { message } } } } } }
"""
ADD_PARTITION = """
mutation AddDynamicPartition($partitionsDefName: String!, $partitionKey: String!, $repositorySelector: RepositorySelector!) {
  addDynamicPartition(partitionsDefName: $partitionsDefName, partitionKey: $partitionKey, repositorySelector: $repositorySelector) {
    __typename
    ... on AddDynamicPartitionSuccess { partitionsDefName partitionKey }
    ... on DuplicateDynamicPartitionError { partitionName }
    ... on UnauthorizedError { message }
    ... on PythonError { message stack }
  }
}
"""
# The mutation the UI's partition dialog sends (dagster-webserver's bundle), with the job's partition set.
LAUNCH_BACKFILL = """
mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PartitionSetNotFoundError { message }
    ... on PartitionKeysNotFoundError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { stepKey invalidOutputName }
    ... on UnauthorizedError { message }
    ... on PipelineNotFoundError { message }
    ... on RunConflict { message }
    ... on ConflictingExecutionParamsError { message }
    ... on PresetNotFoundError { message }
    ... on RunConfigValidationInvalid { pipelineName errors { message path } }
    ... on PythonError { message stack }
  }
}
"""
BACKFILL_STATUS = """
query Backfill($backfillId: String!) {
  partitionBackfillOrError(backfillId: $backfillId) {
    __typename
    ... on PartitionBackfill { id status numPartitions
      runs { runId status tags { key value } } }
    ... on PythonError { message }
  }
}
"""
LAUNCH_RUN = """
mutation LaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PythonError { message stack }
    ... on InvalidSubsetError { message }
    ... on UnauthorizedError { message }
  }
}
"""
ASSET_GROUPS = "{ assetNodes { assetKey { path } groupName } }"
RUN_STATUS = """
query Run($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run { runId status } } }
"""


def _videos(folder: Path) -> dict[str, list[Path]]:
    by_video: dict[str, list[Path]] = {}
    for frame in sorted(folder.glob("*.jpg")):
        video, _, stamp = frame.stem.rpartition("_")
        if video and stamp.isdigit() and " " not in video:
            by_video.setdefault(video, []).append(frame)
    return by_video


def build_workdir(sample: Path, workdir: Path) -> dict[str, list[str]]:
    """A grabby workdir of four categories copied from the sample (which is never written): two videos of
    each of gym, kitchen and street, and `gym-extra`: another gym video plus frames copied byte for byte from
    a `gym` video, which global dedupe must store once, whichever category runs first. Returns the copies."""
    def copy(frames, dest: Path):
        dest.mkdir(parents=True, exist_ok=True)
        for f in frames:
            shutil.copyfile(f, dest / f.name)

    for category in ("gym", "kitchen", "street"):
        videos = _videos(sample / "youtube" / category)
        copy([f for v in sorted(videos)[:2] for f in videos[v]], workdir / "youtube" / category)
    vimeo_gym = _videos(sample / "vimeo" / "gym")
    copy(vimeo_gym[sorted(vimeo_gym)[0]], workdir / "vimeo" / "gym-extra")
    youtube_gym = _videos(sample / "youtube" / "gym")
    twins = youtube_gym[sorted(youtube_gym)[0]][:N_CROSS_COPIES]
    copy(twins, workdir / "youtube" / "gym-extra")
    return {"gym": [f"youtube/gym/{f.name}" for f in twins], "gym-extra": [f"youtube/gym-extra/{f.name}" for f in twins]}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, pg_url, sample, tiny_model_dir):
    from dagster import DagsterInstance

    from samantics_dagster.demo.spec import write_demo_spec

    root = tmp_path_factory.mktemp("stack")
    sample_dir, _ = sample
    workdir, dataset, home, logs = root / "grabby", root / "dataset", root / "dagster_home", root / "logs"
    for d in (home, logs, root / "audit"):
        d.mkdir()
    twins = build_workdir(sample_dir, workdir)
    write_demo_spec(dataset)
    (home / "dagster.yaml").write_text(yaml.safe_dump(local_instance_config(root / "compute_logs")))
    grpc_port, web_port = free_port(), free_port()
    workspace = root / "workspace.yaml"
    workspace.write_text(yaml.safe_dump(local_workspace(grpc_port)))
    (root / "audit" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    audit_log = root / "audit.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "SAMANTICS_"))},
        **pg_env(pg_url),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DAGSTER_HOME": str(home), "DATASET_DIR": str(dataset), "GRABBY_WORKDIR": str(workdir),
        "MODEL_CACHE": str(tiny_model_dir), "HF_TOKEN": "", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
        # only the backfill and the export launched below make runs
        "SAMANTICS_SENSOR": "off", "SAMANTICS_AUTOMATION": "off",
        "PYTHONPATH": os.pathsep.join([str(root / "audit"), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "SAMANTICS_AUDIT_GUARD": os.pathsep.join([str(workdir), str(tiny_model_dir), str(sample_dir)]),
        "SAMANTICS_AUDIT_LOG": str(audit_log),
    }
    # The storage schema is created once, here, before three processes race to create it.
    with pytest.MonkeyPatch.context() as mp:
        for key in ("DAGSTER_POSTGRES_USER", "DAGSTER_POSTGRES_PASSWORD", "DAGSTER_POSTGRES_HOST",
                    "DAGSTER_POSTGRES_PORT", "DAGSTER_POSTGRES_DB"):
            mp.setenv(key, env[key])
        instance = DagsterInstance.from_config(str(home))
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"

        procs = Processes()
        t0 = time.monotonic()
        try:
            procs.start("user-code", [str(REPO / "docker" / "entrypoint-user-code.sh"), "dagster", "api", "grpc",
                                      "--host", "127.0.0.1", "--port", str(grpc_port),
                                      "--module-name", "samantics_dagster.definitions", "--location-name", LOCATION],
                        env, root, logs)
            # compose starts the webserver and the daemon once the code server's health check passes; so here
            def grpc_healthy():
                check = subprocess.run([str(BIN / "dagster"), "api", "grpc-health-check", "--host", "127.0.0.1",
                                        "--port", str(grpc_port)], capture_output=True, env=env, timeout=60)
                return check.returncode == 0
            wait_for("the user-code gRPC server's health check", grpc_healthy, 180, procs, interval=3)
            procs.start("webserver", [str(REPO / "docker" / "entrypoint-dagster.sh"), "dagster-webserver",
                                      "--host", "127.0.0.1", "--port", str(web_port), "--workspace", str(workspace)],
                        env, root, logs)
            procs.start("daemon", [str(REPO / "docker" / "entrypoint-dagster.sh"), "dagster-daemon", "run",
                                   "--workspace", str(workspace)], env, root, logs)
            base = f"http://127.0.0.1:{web_port}"
            gql = GraphQL(base)

            def location_loaded():
                entries = gql(LOCATION_QUERY)["workspaceOrError"]["locationEntries"]
                loaded = [e for e in entries if e["locationOrLoadError"]
                          and e["locationOrLoadError"]["__typename"] == "RepositoryLocation"]
                errors = [e["locationOrLoadError"] for e in entries if e["locationOrLoadError"]
                          and e["locationOrLoadError"]["__typename"] == "PythonError"]
                assert not errors, errors
                return loaded
            wait_for("the webserver to load the code location from the gRPC server", location_loaded, 240, procs)
            startup_s = time.monotonic() - t0
            yield {"base": base, "gql": gql, "instance": instance, "procs": procs, "workdir": workdir,
                   "dataset": dataset, "home": home, "twins": twins, "audit_log": audit_log,
                   "startup_s": startup_s, "model": tiny_model_dir, "env": env}
        finally:
            procs.stop()
            instance.dispose()


def _run_failures(instance, run_ids) -> list[str]:
    from dagster import DagsterEventType, DagsterRunStatus

    out = []
    for run_id in run_ids:
        run = instance.get_run_by_id(run_id)
        if run and run.status == DagsterRunStatus.FAILURE:
            for e in instance.all_logs(run_id):
                error = getattr(e.dagster_event.event_specific_data, "error", None) if e.dagster_event else None
                if error is not None or (e.dagster_event and e.dagster_event.event_type in (
                        DagsterEventType.STEP_FAILURE, DagsterEventType.RUN_FAILURE)):
                    detail = error.to_string() if error is not None else ""
                    out.append(f"{run.tags.get('dagster/partition')} {run_id[:8]} {e.step_key}: {e.message}\n{detail}"[-3000:])
    return out


@pytest.fixture(scope="module")
def backfilled(stack):
    """Four `category` partitions added and category_pipeline backfilled over them, as from the UI."""
    gql, instance, procs = stack["gql"], stack["instance"], stack["procs"]
    for key in CATEGORIES:
        result = gql(ADD_PARTITION, {"partitionsDefName": "category", "partitionKey": key,
                                     "repositorySelector": REPO_SELECTOR})["addDynamicPartition"]
        assert result["__typename"] == "AddDynamicPartitionSuccess", result
    assert sorted(instance.get_dynamic_partitions("category")) == sorted(CATEGORIES)

    t0 = time.monotonic()
    params = {
        "selector": {"partitionSetName": "category_pipeline_partition_set", "repositorySelector": REPO_SELECTOR},
        "assetSelection": [{"path": [a]} for a in CATEGORY_ASSETS],
        "partitionNames": CATEGORIES, "fromFailure": False, "tags": [],
    }
    launched = gql(LAUNCH_BACKFILL, {"backfillParams": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]

    def done():
        backfill = gql(BACKFILL_STATUS, {"backfillId": backfill_id})["partitionBackfillOrError"]
        assert backfill["__typename"] == "PartitionBackfill", backfill
        runs = backfill["runs"]
        failures = _run_failures(instance, [r["runId"] for r in runs])
        assert not failures, "\n".join(failures)
        finished = len(runs) == len(CATEGORIES) and all(r["status"] == "SUCCESS" for r in runs)
        return (backfill, runs) if finished and backfill["status"] in ("COMPLETED", "COMPLETED_SUCCESS") else None

    backfill, runs = wait_for(f"the backfill {backfill_id} of {len(CATEGORIES)} partitions", done,
                              BACKFILL_TIMEOUT_S, procs, interval=3)
    return {"backfill": backfill, "runs": runs, "seconds": time.monotonic() - t0}


def _step_intervals(instance, run_ids, step_key):
    """(start, end, run_id) of every execution of ``step_key`` in these runs, from the event log."""
    from dagster import DagsterEventType

    kinds = {DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE}
    spans = []
    for run_id in run_ids:
        starts = []
        for event in instance.all_logs(run_id, of_type=kinds):
            if event.step_key != step_key:
                continue
            if event.dagster_event.event_type == DagsterEventType.STEP_START:
                starts.append(event.timestamp)
            else:
                spans.append((starts.pop(), event.timestamp, run_id))
        assert not starts, f"{step_key} started in {run_id} and never ended"
    return sorted(spans)


def test_backfill_of_four_categories_on_postgres_respects_the_pools_and_shares_one_store(stack, backfilled):
    instance, dataset = stack["instance"], stack["dataset"]
    runs = backfilled["runs"]
    run_ids = [r["runId"] for r in runs]
    assert sorted(dict((t["key"], t["value"]) for t in r["tags"])["dagster/partition"] for r in runs) == sorted(CATEGORIES)
    assert {instance.get_run_by_id(i).job_name for i in run_ids} == {"category_pipeline"}
    assert all(instance.get_run_by_id(i).tags.get("dagster/backfill") for i in run_ids)

    # the pools: never two labelling steps (pool `gpu`) or two dedupe steps (pool `dedupe`) at once, while the
    # runs themselves did overlap (max_concurrent_runs 4), so the limit was exercised, not dodged
    partition_of = {i: instance.get_run_by_id(i).tags["dagster/partition"] for i in run_ids}
    spans_by_step = {}
    for step in ("sam3_labels", "deduped_images"):
        spans = spans_by_step[step] = _step_intervals(instance, run_ids, step)
        assert len(spans) == len(CATEGORIES), spans
        for (s1, e1, r1), (s2, e2, r2) in zip(spans, spans[1:]):
            assert s2 >= e1, f"{step} ran in {r1} and {r2} at the same time ({s1:.1f}-{e1:.1f} vs {s2:.1f}-{e2:.1f})"
    records = [instance.get_run_record_by_id(i) for i in run_ids]
    windows = sorted((r.start_time, r.end_time) for r in records)
    assert any(b[0] < a[1] for a, b in zip(windows, windows[1:])), f"the runs never overlapped: {windows}"

    # one image store for every category: each accepted frame stored once, nothing near-duplicate stored twice
    deduped = {c: pd.read_parquet(dataset / "tables" / "deduped_images" / f"{c}.parquet") for c in CATEGORIES}
    accepted = pd.concat([t[t.status == "accepted"] for t in deduped.values()])
    assert accepted.dhash.is_unique, accepted[accepted.dhash.duplicated(keep=False)][["rel_path", "dhash"]]
    stored = {p.stem for p in (dataset / "images").glob("*.jpg")}
    assert stored == set(accepted.dhash)
    assert all(len(h) == 16 for h in stored)
    close = [(a, b) for a, b in combinations(sorted(stored), 2) if bin(int(a, 16) ^ int(b, 16)).count("1") <= 4]
    assert not close, f"near-duplicates stored twice: {close[:5]}"
    # the frames copied byte for byte into a second category were stored once, whichever category ran first:
    # the copies the first category accepted, the second one rejected as dhash duplicates of the store
    twins = stack["twins"]
    first_start = {c: min(s for s, _, r in spans_by_step["deduped_images"] if partition_of[r] == c) for c in twins}
    first, later = sorted(twins, key=first_start.get)
    rows = {c: deduped[c].set_index("rel_path").loc[twins[c]].reset_index() for c in twins}
    hashed = rows["gym"].dhash.fillna("").astype(bool).values & rows["gym-extra"].dhash.fillna("").astype(bool).values
    assert (rows["gym"].dhash.values[hashed] == rows["gym-extra"].dhash.values[hashed]).all()
    accepted_first = rows[first].status == "accepted"
    assert accepted_first.any(), f"{first} accepted none of the copied frames: {rows[first][['status', 'reason']]}"
    echoed = rows[later][accepted_first.values]
    assert (echoed.status == "rejected").all() and (echoed.reason == "dhash").all(), echoed[["rel_path", "status", "reason"]]

    # every category was labelled and curated into its own COCO files
    for c in CATEGORIES:
        labels = pd.read_parquet(dataset / "tables" / "sam3_labels" / f"{c}.parquet")
        assert set(labels.dhash) == set(deduped[c][deduped[c].status == "accepted"].dhash)
        assert (labels.status == "done").all()
        assert (dataset / "coco" / c / "train.json").is_file()

    timing = {"startup_s": round(stack["startup_s"], 1), "backfill_s": round(backfilled["seconds"], 1),
              "runs": len(runs), "images": len(stored)}
    print(f"\nstack timings: {timing}")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "stack-timings.json").write_text(json.dumps(timing, indent=2))


def test_coco_export_launched_from_graphql_merges_every_category(stack, backfilled):
    gql, dataset, procs = stack["gql"], stack["dataset"], stack["procs"]
    params = {"selector": {**REPO_SELECTOR, "pipelineName": "coco_export"}, "mode": "default",
              "runConfigData": "{}", "executionMetadata": {"tags": []}}
    launched = gql(LAUNCH_RUN, {"executionParams": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]

    def finished():
        status = gql(RUN_STATUS, {"runId": run_id})["runOrError"]["status"]
        assert status not in ("FAILURE", "CANCELED"), _run_failures(stack["instance"], [run_id])
        return status == "SUCCESS"
    wait_for("the coco_export run", finished, 300, procs)

    spec = json.loads((dataset / "coco-spec.json").read_text())
    merged = {s: json.loads((dataset / "coco" / f"{s}.json").read_text()) for s in ("train", "val")}
    per_cat = {(c, s): json.loads(p.read_text()) for c in CATEGORIES for s in ("train", "val")
               if (p := dataset / "coco" / c / f"{s}.json").is_file()}
    for split, coco in merged.items():
        parts = [f for (c, s), f in per_cat.items() if s == split]
        assert {im["id"] for im in coco["images"]} == {im["id"] for f in parts for im in f["images"]}
        assert {a["id"] for a in coco["annotations"]} == {a["id"] for f in parts for a in f["annotations"]}
        assert [c["id"] for c in coco["categories"]] == [c["id"] for c in spec["categories"]]
        image_ids = {im["id"] for im in coco["images"]}
        assert all(a["image_id"] in image_ids for a in coco["annotations"])
        for im in coco["images"]:
            assert (dataset / im["file_name"]).is_file(), im["file_name"]
    assert not {im["id"] for im in merged["train"]["images"]} & {im["id"] for im in merged["val"]["images"]}
    assert merged["train"]["images"], "nothing curated into train"


def test_nothing_wrote_under_the_workdir_or_the_model_cache(stack, backfilled, tmp_path):
    """Across the gRPC server, webserver, daemon and every run worker: no open for writing, no create, rename
    or delete under GRABBY_WORKDIR or MODEL_CACHE (an audit hook in each process; root ignores permissions)."""
    log = stack["audit_log"]
    hits = log.read_text().splitlines() if log.exists() else []
    assert not hits, f"wrote under a read-only input: {hits[:10]}"
    # the hook is live in processes started with that environment: a deliberate write is caught
    canary, canary_log = tmp_path / "canary", tmp_path / "canary.log"
    canary.mkdir()
    env = {**stack["env"], "SAMANTICS_AUDIT_GUARD": str(canary), "SAMANTICS_AUDIT_LOG": str(canary_log)}
    subprocess.run([str(BIN / "python"), "-c", f"open({str(canary / 'x')!r}, 'w').close()"], env=env, check=True)
    assert "open" in canary_log.read_text() and str(canary / "x") in canary_log.read_text()


def _chromium_page(chromium: str, url: str, out: Path, profile: Path, size: str = "1600,1000") -> str:
    """Load ``url`` in headless Chromium, save a screenshot to ``out`` and return the rendered DOM."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--window-size={size}",
             "--hide-scrollbars", "--virtual-time-budget=25000", "--run-all-compositor-stages-before-draw"]
    shot = subprocess.run([chromium, *flags, f"--screenshot={out}", url], capture_output=True, text=True, timeout=180)
    assert out.is_file() and out.stat().st_size > 10_000, f"no screenshot of {url}: {shot.stderr[-2000:]}"
    dom = subprocess.run([chromium, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    return dom.stdout


def test_the_ui_shows_the_asset_graph_and_a_partitioned_asset(stack, backfilled, chromium, tmp_path):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    base = stack["base"]
    # the global lineage with every asset group opened: the UI keeps the open groups in its `expanded` URL
    # parameter, as `global@global:<group>` (or `<repository>@<location>:<group>` with groups per code location)
    nodes = stack["gql"](ASSET_GROUPS)["assetNodes"]
    groups = sorted({f"{prefix}:{n['groupName']}" for n in nodes for prefix in ("global@global", f"{REPOSITORY}@{LOCATION}")})
    url = f"{base}/asset-groups?{urlencode({'expanded': ','.join(groups)})}"
    graph = _chromium_page(chromium, url, ARTIFACTS / "asset-graph.png", tmp_path / "profile-1")
    for asset in [*CATEGORY_ASSETS, "coco_dataset"]:
        assert asset in graph, f"{asset} is not on the asset graph page"
    (ARTIFACTS / "asset-graph.html").write_text(graph)

    page = _chromium_page(chromium, f"{base}/assets/sam3_labels?view=partitions", ARTIFACTS / "sam3_labels-partitions.png",
                          tmp_path / "profile-2")
    (ARTIFACTS / "sam3_labels-partitions.html").write_text(page)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))
    assert "sam3_labels" in text
    for category in CATEGORIES:
        assert re.search(rf"\b{re.escape(category)}\b", text), f"partition {category} is not on the sam3_labels page"
    assert re.search(rf"Materialized \( ?{len(CATEGORIES)} ?\)", text), "the page does not count 4 materialized partitions"
