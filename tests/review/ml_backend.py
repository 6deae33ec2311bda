"""The click-to-mask backend as the review tests run it: ``samantics ml-backend`` started the way the CLI
starts it (a process on a free port, CPU, the tiny SAM3 in ``MODEL_CACHE``), over an image store that
lives under Label Studio's document root. Shared by the API tests and the editor's browser test."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx
from PIL import Image

from samantics_dagster.core.dataset.layout import DatasetLayout
from samantics_dagster.core.review.near_miss import task_data
from tests.deploy.stack import REPO, free_port
from tests.images import photo

NAMES = ["car", "person", "dog"]
W, H = 160, 120
NO_NEAR_MISS = task_data([], {})  # the task data the review loop sends for a frame with no near misses
PHOTOS = {"00000000000000a1": "astronaut", "00000000000000b2": "coffee"}


def build_store(root: Path) -> tuple[Path, dict[str, Image.Image]]:
    """A dataset whose image store holds the photos; returns the dataset dir and the images as the backend
    reads them (the JPEG's pixels, not the photo before encoding)."""
    layout = DatasetLayout(root / "dataset")
    for dhash, name in PHOTOS.items():
        path = layout.image(dhash)
        path.parent.mkdir(parents=True, exist_ok=True)
        photo(name, (W, H)).save(path, "JPEG", quality=95)
    return root / "dataset", {d: Image.open(layout.image(d)).convert("RGB") for d in PHOTOS}


def start_backend(model_cache: Path, dataset: Path, log: IO[bytes]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "MODEL_CACHE": str(model_cache), "DATASET_DIR": str(dataset), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("LABEL_STUDIO_URL", None), env.pop("LABEL_STUDIO_API_KEY", None)
    proc = subprocess.Popen([sys.executable, "-m", "samantics_dagster.cli.main", "ml-backend", "--host", "127.0.0.1",
                             "--port", str(port), "--device", "cpu"], env=env, stdout=log, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}"


def wait_health(url: str, timeout: float = 60.0) -> dict:
    """The first /health answer (it answers at once, while the model still loads)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            return httpx.get(f"{url}/health", timeout=2).json()
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"the backend at {url} did not answer /health in {timeout} s")


def wait_model(url: str, timeout: float = 180.0) -> dict:
    """/health once the model is no longer loading (ready or failed)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            health = httpx.get(f"{url}/health", timeout=2).json()
        except httpx.TransportError:
            time.sleep(0.3)
            continue
        if health["model"] != "loading":
            return health
        time.sleep(0.3)
    raise AssertionError(f"the backend at {url} did not load its model in {timeout} s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
