"""The README's demo path, as far as the UI: `samantics demo` materialises the sample, then `dg dev`
serves the webserver on the port asked for, and its GraphQL endpoint answers with the demo's runs."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time

import pytest

from tests.deploy.stack import BIN, LOCATION, GraphQL, free_port, wait_for

pytestmark = pytest.mark.slow

RUNS = "{ runsOrError { __typename ... on Runs { results { runId jobName status } } } }"
LOCATIONS = """
{ workspaceOrError { __typename ... on Workspace { locationEntries { name
    locationOrLoadError { __typename ... on RepositoryLocation { name } ... on PythonError { message } } } } } }
"""


def test_samantics_demo_serves_dagster_dev_and_graphql_answers(tmp_path, sample, tiny_model_dir):
    # A small grabby workdir where the demo expects its sample (it builds one only when there is none), so
    # the demo's materialisation takes seconds: one category, two videos.
    sample_dir, _ = sample
    root = tmp_path / "demo"
    frames = sorted((sample_dir / "youtube" / "gym").glob("*.jpg"))
    videos = sorted({f.stem.rpartition("_")[0] for f in frames if " " not in f.stem})[:2]
    dest = root / "grabby" / "youtube" / "gym"
    dest.mkdir(parents=True)
    for f in frames:
        if f.stem.rpartition("_")[0] in videos:
            shutil.copyfile(f, dest / f.name)

    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_")},
           "MODEL_CACHE": str(tiny_model_dir), "OMP_NUM_THREADS": "1",
           # the daemon's sensors would start runs of their own while the test only wants the UI up
           "SAMANTICS_SENSOR": "off", "SAMANTICS_AUTOMATION": "off"}
    log = tmp_path / "demo.log"
    t0 = time.monotonic()
    with open(log, "w") as out:
        demo = subprocess.Popen([str(BIN / "samantics"), "demo", "--dir", str(root), "--port", str(port)],
                                cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        gql = GraphQL(f"http://127.0.0.1:{port}")

        def serving():
            assert demo.poll() is None, f"samantics demo exited with {demo.returncode}:\n{log.read_text()[-4000:]}"
            entries = gql(LOCATIONS, timeout=10)["workspaceOrError"]["locationEntries"]
            return any((e["locationOrLoadError"] or {}).get("__typename") == "RepositoryLocation"
                       and e["name"] == LOCATION for e in entries)
        wait_for("`samantics demo` to serve dg dev's GraphQL", serving, 420, interval=2)
        print(f"\nsamantics demo -> dg dev serving GraphQL after {time.monotonic() - t0:.0f}s")
        runs = gql(RUNS)["runsOrError"]["results"]
        jobs = {r["jobName"] for r in runs if r["status"] == "SUCCESS"}
        assert {"category_pipeline", "coco_export"} <= jobs, runs
        text = log.read_text()
        assert f"http://127.0.0.1:{port}" in text
        assert "SupersessionWarning" not in text and "dg dev" not in text  # served by `dg dev`, no advice to use it
        assert (root / "workspace.yaml").is_file() and (root / "dagster_home" / "dagster.yaml").is_file()
    finally:
        try:
            os.killpg(demo.pid, signal.SIGTERM)
            demo.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
