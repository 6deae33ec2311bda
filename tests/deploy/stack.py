"""Helpers for the deployment tests: processes, ports, GraphQL, the production config files."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import requests
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PROD_INSTANCE = REPO / "docker" / "dagster.yaml"
PROD_WORKSPACE = REPO / "docker" / "workspace.yaml"
ARTIFACTS = REPO / "tests" / "artifacts"
LOCATION = "samantics_dagster"
REPOSITORY = "__repository__"
CATEGORY_ASSETS = ["ingress_frames", "deduped_images", "sam3_labels", "curated_coco"]


def need(what: str, reason: str) -> None:
    """A service the test needs is missing: skip here, fail in CI (where `make test` provides it)."""
    message = f"{what} is not available: {reason}"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set: `make test` / scripts/test-services.sh must provide it)")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_env(url: str) -> dict[str, str]:
    """The DAGSTER_POSTGRES_* variables docker/dagster.yaml reads, from a postgresql:// URL."""
    u = urlparse(url)
    return {
        "DAGSTER_POSTGRES_USER": unquote(u.username or ""),
        "DAGSTER_POSTGRES_PASSWORD": unquote(u.password or ""),
        "DAGSTER_POSTGRES_HOST": u.hostname or "127.0.0.1",
        "DAGSTER_POSTGRES_PORT": str(u.port or 5432),
        "DAGSTER_POSTGRES_DB": u.path.lstrip("/"),
    }


def local_instance_config(compute_logs_dir: Path) -> dict:
    """docker/dagster.yaml with the Docker run launcher swapped for Dagster's default one (runs as local
    processes) and the compute logs in a local folder instead of the containers' shared volume; storage,
    run coordinator, concurrency pools, run monitoring and retries stay exactly as in production."""
    config = yaml.safe_load(PROD_INSTANCE.read_text())
    assert config["run_launcher"]["class"] == "DockerRunLauncher"
    del config["run_launcher"]
    config["compute_logs"]["config"]["base_dir"] = str(compute_logs_dir)
    return config


def local_workspace(port: int) -> dict:
    """docker/workspace.yaml pointed at a gRPC server on this machine instead of the `user-code` container."""
    workspace = yaml.safe_load(PROD_WORKSPACE.read_text())
    (entry,) = workspace["load_from"]
    entry["grpc_server"].update(host="127.0.0.1", port=port)
    return workspace


# Installed in every process the stack starts (and every run worker they start) through PYTHONPATH: an audit
# hook that records any attempt to open a file for writing, or to create, rename, remove or modify a path,
# under the guarded folders (the grabby workdir, the model cache). The test process reads the log.
SITECUSTOMIZE = r'''
import os, sys

_GUARDED = [os.path.realpath(p) for p in os.environ.get("SAMANTICS_AUDIT_GUARD", "").split(os.pathsep) if p]
_LOG = os.environ.get("SAMANTICS_AUDIT_LOG")
_WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
# event -> which of its arguments are paths it changes
_MUTATING = {"os.mkdir": (0,), "os.rename": (0, 1), "os.remove": (0,), "os.rmdir": (0,), "os.symlink": (1,),
             "os.link": (1,), "os.truncate": (0,), "os.chmod": (0,), "os.chown": (0,), "os.utime": (0,),
             "shutil.rmtree": (0,), "shutil.move": (0, 1), "shutil.copyfile": (1,), "shutil.copytree": (1,)}


def _guarded(path):
    if path is None or isinstance(path, int):
        return None
    try:
        p = os.path.realpath(os.fsdecode(path))
    except Exception:
        return None
    return p if any(p == g or p.startswith(g + os.sep) for g in _GUARDED) else None


def _audit(event, args):
    if event == "open":
        path, mode, flags = args
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool((flags or 0) & _WRITE)
        hits = [_guarded(path)] if writing else []
    elif event in _MUTATING:
        hits = [_guarded(args[i]) for i in _MUTATING[event] if i < len(args)]
    else:
        return
    for hit in hits:
        if hit:
            with open(_LOG, "a") as log:
                log.write(f"{os.getpid()} {event} {hit}\n")


if _GUARDED and _LOG:
    sys.addaudithook(_audit)
'''


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    def tail(self, n: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""


@dataclass
class Processes:
    procs: list[Proc] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict, cwd: Path, logs: Path) -> Proc:
        log = logs / f"{name}.log"
        with open(log, "w") as out:
            popen = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def check_alive(self) -> None:
        for p in self.procs:
            if p.popen.poll() is not None:
                pytest.fail(f"{p.name} exited with {p.popen.returncode}:\n{p.tail()}")

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.tail(2500)}" for p in self.procs)

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):  # whatever is left of the group (run workers, code servers)
                os.killpg(p.popen.pid, signal.SIGKILL)
            p.popen.wait()


class GraphQL:
    def __init__(self, base_url: str):
        self.url = f"{base_url}/graphql"
        self.session = requests.Session()

    def __call__(self, query: str, variables: dict | None = None, timeout: float = 60) -> dict:
        response = self.session.post(self.url, json={"query": query, "variables": variables or {}}, timeout=timeout)
        response.raise_for_status()
        body = response.json()
        assert not body.get("errors"), json.dumps(body["errors"])[:2000]
        return body["data"]


def wait_for(what: str, predicate, timeout: float, procs: Processes | None = None, interval: float = 2.0):
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (requests.ConnectionError, requests.Timeout) as exc:  # not up yet
            value, last_error = None, exc
        if value:
            return value
        if procs is not None:
            procs.check_alive()
        time.sleep(interval)
    extra = procs.logs() if procs is not None else ""
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error})\n{extra}")
