"""Fixtures of the deployment tests: a real PostgreSQL (scripts/test-services.sh); headless Chromium is
``tests/conftest.py``'s ``chromium``, shared with the review editor's browser test."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest

from tests.deploy.stack import REPO, need

SERVICES = REPO / "scripts" / "test-services.sh"


def _start_private_cluster() -> tuple[str | None, Path | None, str]:
    """`make test` exports SAMANTICS_TEST_PG_URL; a bare `pytest` starts a cluster of its own when
    PostgreSQL is installed (never installs anything) and stops it at the end of the session."""
    state = Path(tempfile.mkdtemp(prefix="samantics-pytest-pg-"))
    os.chmod(state, 0o755)
    env = {**os.environ, "SAMANTICS_TEST_SERVICES_DIR": str(state / "services")}
    proc = subprocess.run([str(SERVICES), "start", "--no-install"], capture_output=True, text=True, env=env, timeout=180)
    for line in proc.stdout.splitlines():
        if line.startswith("export SAMANTICS_TEST_PG_URL="):
            return line.split("=", 1)[1].strip("'"), state, ""
    shutil.rmtree(state, ignore_errors=True)
    return None, None, (proc.stderr.strip().splitlines() or ["no output"])[-1]


@pytest.fixture(scope="session")
def pg_server():
    url = os.environ.get("SAMANTICS_TEST_PG_URL")
    state = None
    if not url:
        url, state, why = _start_private_cluster()
        if not url:
            need("PostgreSQL", f"SAMANTICS_TEST_PG_URL is not set and no cluster could be started ({why}); "
                               "run `make test` or `eval \"$(scripts/test-services.sh start)\"`")
    try:
        yield url
    finally:
        if state is not None:
            env = {**os.environ, "SAMANTICS_TEST_SERVICES_DIR": str(state / "services")}
            subprocess.run([str(SERVICES), "stop"], capture_output=True, env=env, timeout=120)
            shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def pg_url(pg_server):
    """A fresh database on the test cluster for each module, dropped afterwards."""
    import psycopg2

    name = f"samantics_{secrets.token_hex(4)}"
    admin = psycopg2.connect(pg_server)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
    except psycopg2.Error as exc:
        admin.close()
        need("PostgreSQL", f"could not create a database at {urlparse(pg_server).hostname}: {exc}")
    yield urlunparse(urlparse(pg_server)._replace(path=f"/{name}"))
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()
