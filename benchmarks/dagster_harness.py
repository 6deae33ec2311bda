"""A throwaway Dagster deployment for kill experiments: sample workdir, tiny SAM3, instance, processes.

Shared by ``bench_run_healing.py`` and ``tests/test_chaos.py``: both start the real ``dagster dev`` or
``dagster-daemon`` on the project's ``dagster.yaml``, launch real runs and SIGKILL their real workers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CATEGORY_STEPS = ("ingress_frames", "deduped_images", "sam3_labels", "curated_coco")


def build_env(root: Path, categories: tuple[str, ...] | None = None, seed: int = 0) -> dict[str, str]:
    """Sample workdir (only ``categories`` kept), demo spec, tiny SAM3 and a DAGSTER_HOME with the project's
    dagster.yaml; returns the environment for Dagster processes. The workdir and model are built once per
    ``root`` and reused."""
    from samantics_dagster.demo.sample import build_sample_workdir
    from samantics_dagster.demo.tiny_sam3 import save_tiny_sam3

    root.mkdir(parents=True, exist_ok=True)
    workdir, model = root / "grabby", root / "model"
    if not workdir.exists():
        build_sample_workdir(workdir, seed=seed)
        if categories:
            for folder in workdir.glob("*/*"):
                if folder.name not in categories:
                    shutil.rmtree(folder)
    if not model.exists():
        import torch

        torch.set_num_threads(1)
        save_tiny_sam3(model)
    return {**os.environ, "GRABBY_WORKDIR": str(workdir), "MODEL_CACHE": str(model), "OMP_NUM_THREADS": "1",
            "SAMANTICS_SENSOR": "off", "SAMANTICS_AUTOMATION": "off", "PYTHONUNBUFFERED": "1"}


def fresh_instance(root: Path, env: dict[str, str], name: str) -> dict[str, str]:
    """A new dataset folder and DAGSTER_HOME (project dagster.yaml) under ``root/name``."""
    from samantics_dagster.demo.spec import write_demo_spec

    base = root / name
    if base.exists():
        shutil.rmtree(base)
    home, dataset = base / "home", base / "dataset"
    home.mkdir(parents=True)
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    write_demo_spec(dataset)
    return {**env, "DAGSTER_HOME": str(home), "DATASET_DIR": str(dataset)}


@dataclass
class DagsterProcess:
    """``dagster dev`` or ``dagster-daemon run`` in its own session (so the whole tree can be stopped)."""

    proc: subprocess.Popen
    log: Path
    env: dict[str, str] = field(repr=False)

    @classmethod
    def start(cls, env: dict[str, str], log: Path, dev: bool = False, port: int = 0) -> DagsterProcess:
        if dev:
            cmd = [str(BIN / "dagster"), "dev", "-w", str(REPO / "workspace.yaml"), "-p", str(port or 3931)]
        else:
            cmd = [str(BIN / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")]
        out = open(log, "w")  # noqa: SIM115 - the process writes to it until stop()
        proc = subprocess.Popen(cmd, cwd=log.parent, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        return cls(proc, log, env)

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"Dagster process exited: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def dagster_cli(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    proc = subprocess.run([str(BIN / "dagster"), *args], env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=env["DAGSTER_HOME"])
    if proc.returncode != 0:
        raise RuntimeError(f"dagster {' '.join(args)} failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return proc.stdout


def launch(env: dict[str, str], job: str, tags: dict[str, str]) -> None:
    """Submit a run through the instance's queue (the daemon launches it through the code server)."""
    dagster_cli(env, "job", "launch", "-w", str(REPO / "workspace.yaml"), "-j", job, "--tags", json.dumps(tags))


def add_partitions(env: dict[str, str], categories: list[str]) -> None:
    from dagster import DagsterInstance

    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        instance.add_dynamic_partitions("category", [c for c in categories
                                                     if not instance.has_dynamic_partition("category", c)])


def step_start_pid(instance, run_id: str, step: str) -> int | None:
    """The worker pid of ``step``'s STEP_START in ``run_id`` (None until it started)."""
    from dagster import DagsterEventType

    for rec in instance.get_records_for_run(run_id, of_type=DagsterEventType.STEP_START).records:
        ev = rec.event_log_entry.dagster_event
        if ev is not None and ev.step_key == step:
            return ev.pid
    return None


def wait_for(what: str, predicate, timeout: float, poll: float = 0.2, alive=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if alive is not None:
            alive()
        time.sleep(poll)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
