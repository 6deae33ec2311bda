"""A category labelled by Ray actors (CPU stand-ins for GPUs, a real local Ray cluster started here).

The reference is the in-process path (``label_partition``) on the same images with the same tiny SAM3: the Ray
path must write the very same table, byte for byte, also after an actor or the whole run was SIGKILLed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from samantics_dagster.core.dataset.layout import DatasetLayout, parts_dir
from samantics_dagster.core.dataset.schema import TableName
from samantics_dagster.core.dataset.spec import CategorySpec, Spec
from samantics_dagster.core.dataset.store import ImageStore
from samantics_dagster.core.label.model import load_sam3
from samantics_dagster.core.label.pipeline import LabelSettings, label_partition, make_segmenter
from samantics_dagster.core.label.queries import Query, QuerySet
from samantics_dagster.core.label.ray_workers import ReplicaSpec, label_partition_ray
from samantics_dagster.demo.tiny_sam3 import save_tiny_sam3
from tests.images import photo

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parent.parent

NAMES = ["person", "car", "passenger", "dog"]
SPEC = Spec(tuple(CategorySpec(i + 1, n, "thing") for i, n in enumerate(NAMES)))
QUERIES = QuerySet(tuple(Query(i + 1, n, t) for i, (n, t) in
                         enumerate(zip(NAMES, ["person", "car", "person in a car", "a dog"]))))
SETTINGS = LabelSettings(candidate_floor=0.55, max_candidates=6, image_batch=1, pair_chunk=8)
PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "camera"]
N_IMAGES = 24
CATEGORY = "street"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_tiny_sam3(tmp_path_factory.mktemp("tiny_sam3") / "snapshot", seed=0)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """A dataset folder's image store with N_IMAGES photos of varied sizes, and its accepted rows."""
    root = tmp_path_factory.mktemp("images")
    store = ImageStore(root)
    store.root.mkdir(parents=True)
    names = []
    for i in range(N_IMAGES):
        dhash = f"{i:016x}"
        photo(PHOTOS[i % len(PHOTOS)], (48 + 7 * (i % 5), 40 + 5 * (i % 7))).save(store.path_for(dhash), "JPEG")
        names.append(dhash)
    return root, pd.DataFrame({"dhash": names, "rel_path": [f"{CATEGORY}/{n}.jpg" for n in names]})


def _dataset(tmp_path: Path, images: tuple[Path, pd.DataFrame], name: str) -> tuple[Path, Path]:
    """A fresh dataset folder holding the images; (its folder, the category's sam3_labels table path)."""
    root = tmp_path / name
    shutil.copytree(images[0], root)
    return root, DatasetLayout(root).table(TableName.SAM3_LABELS, CATEGORY)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, images, model_dir) -> bytes:
    """The in-process path's table (same device and precision: fp32 on the CPU, one thread)."""
    root, table = _dataset(tmp_path_factory.mktemp("reference"), images, "dataset")
    loaded = load_sam3(model_dir, device="cpu")
    labeler = SETTINGS.labeler(loaded.fingerprint, QUERIES, loaded.precision)  # as the asset and each actor name it
    result = label_partition(images[1], ImageStore(root), make_segmenter(loaded, QUERIES, SPEC, SETTINGS), labeler,
                             table_path=table, image_batch=SETTINGS.image_batch)
    assert result.labelled == N_IMAGES and sum(result.instances_per_class.values()) > 0
    return table.read_bytes()


@pytest.fixture(scope="module")
def cluster():
    """A local CPU-only Ray cluster (2 CPUs: two stand-in workers), small object store, no dashboard."""
    ray = pytest.importorskip("ray")
    ctx = ray.init(num_cpus=2, object_store_memory=100 * 1024**2, include_dashboard=False, logging_level="ERROR",
                   log_to_driver=False)
    yield ctx.address_info["gcs_address"]
    ray.shutdown()


def _label(images, root: Path, table: Path, model_dir: Path, actors: int, share_batches: int = 2, **kw):
    return label_partition_ray(images[1], root, ReplicaSpec(str(model_dir), gpu=False), SPEC, QUERIES, SETTINGS,
                               table_path=table, max_actors=actors, share_batches=share_batches, **kw)


def test_two_actors_write_the_in_process_table(cluster, images, model_dir, reference, tmp_path):
    root, table = _dataset(tmp_path, images, "dataset")
    lines: list[str] = []
    result = _label(images, root, table, model_dir, actors=2, progress=lambda d, t: lines.append(f"{d}/{t}"))
    assert table.read_bytes() == reference
    assert result.labelled == N_IMAGES and result.reused == 0 and result.relabelled_after_failures == 0
    assert set(result.actors) == {"actor-0", "actor-1"}  # both worked, each on its own share
    assert sum(a["images"] for a in result.actors.values()) == N_IMAGES
    assert all(a["device"] == "cpu" and a["seconds"] > 0 for a in result.actors.values())
    assert result.slowest_actor in result.actors and lines[-1] == f"{N_IMAGES}/{N_IMAGES}"
    assert not list(parts_dir(table).glob("part-*"))

    again = _label(images, root, table, model_dir, actors=2)  # nothing left: both replicas start, none gets a share
    assert again.labelled == 0 and again.reused == N_IMAGES and table.read_bytes() == reference and not again.actors
    import ray

    deadline = time.time() + 60  # both let go: the one that read the labeler and the spare (killed asynchronously)
    while ray.available_resources().get("CPU", 0) < 2:
        assert time.time() < deadline, f"a replica without a share still holds its CPU: {ray.available_resources()}"
        time.sleep(0.1)


def _actor_pids() -> list[int]:
    """This machine's ShareLabeller actor processes (Ray titles them ``ray::ShareLabeller...``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().startswith(b"ray::ShareLabeller"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@pytest.mark.slow
def test_an_actor_killed_mid_share_loses_at_most_its_batches_in_flight(cluster, images, model_dir, reference,
                                                                         tmp_path):
    root, table = _dataset(tmp_path, images, "dataset")
    parts = parts_dir(table)
    killed: list[tuple[int, int]] = []

    def kill_one_when_parts_exist() -> None:
        deadline = time.time() + 240
        while time.time() < deadline:
            n = len(list(parts.glob("part-*.parquet"))) if parts.is_dir() else 0
            pids = _actor_pids()
            if n >= 3 and pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append((pids[0], n))
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_one_when_parts_exist)
    killer.start()
    result = _label(images, root, table, model_dir, actors=2, share_batches=6)
    killer.join()
    assert killed and killed[0][1] < N_IMAGES, "the kill must land while shares are being labelled"
    # Ray restarted the actor and retried its share, which skipped the batches its parts already held: at most
    # the batch on the device and the one being post-processed were labelled twice.
    assert result.relabelled_after_failures <= 2 * SETTINGS.image_batch
    assert table.read_bytes() == reference  # nothing lost, nothing twice in the table


@pytest.mark.slow
def test_a_resume_after_a_killed_run_labels_only_what_is_missing(cluster, images, model_dir, reference, tmp_path):
    root, table = _dataset(tmp_path, images, "dataset")
    accepted = tmp_path / "accepted.json"
    images[1].to_json(accepted)
    args = {"address": cluster, "accepted": str(accepted), "dataset": str(root), "model_dir": str(model_dir),
            "table": str(table), "actors": 2, "share_batches": 2}
    proc = subprocess.Popen([sys.executable, "-m", "tests.ray_share_driver", json.dumps(args)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    parts = parts_dir(table)
    deadline = time.time() + 240
    try:
        while not (parts.is_dir() and len(list(parts.glob("part-*.parquet"))) >= 6):
            assert proc.poll() is None, f"the run exited ({proc.returncode}) before it was killed"
            assert time.time() < deadline, "no 6 parts after 240 s"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole run: driver and (through Ray's fate sharing) its actors
        proc.wait()
    while _actor_pids():  # Ray reaps the dead driver's actors within seconds; one may finish a batch meanwhile
        assert time.time() < deadline + 60, "the killed run's actors outlived it by a minute"
        time.sleep(0.1)
    saved = {d for p in parts.glob("part-*.parquet") for d in pd.read_parquet(p).dhash}
    assert 6 <= len(saved) < N_IMAGES and not table.exists()

    result = _label(images, root, table, model_dir, actors=1)  # another number of actors than the killed run
    assert result.reused == len(saved) and result.labelled == N_IMAGES - len(saved)
    assert table.read_bytes() == reference
