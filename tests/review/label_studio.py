"""A real Label Studio for the tests: its own venv (``make test`` builds ``.venv-labelstudio``), SQLite in a
throwaway data dir, bound to 127.0.0.1 on a free port, stopped after.

It starts with legacy tokens enabled only to bootstrap: the fixture asks for the admin's personal access
token (``POST /api/token/``) and the code under test authenticates with that, as a user of 1.23 would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.deploy.stack import REPO, free_port, need

LS_BIN = Path(os.environ.get("LABEL_STUDIO_BIN", REPO / ".venv-labelstudio" / "bin" / "label-studio"))
USER, PASSWORD, LEGACY = "reviewer@example.com", "review-pass-123", "legacy-bootstrap-token"
START_TIMEOUT_S = 240


class LabelStudio:
    def __init__(self, data_dir: Path, document_root: Path, log: Path) -> None:
        self.data_dir, self.document_root, self.log_path = data_dir, document_root, log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.pat: str | None = None
        self.start_seconds: list[float] = []

    def launch(self) -> None:
        env = {**os.environ, "LABEL_STUDIO_BASE_DATA_DIR": str(self.data_dir),
               "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
               "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
               "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(self.document_root),
               "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true", "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "",
               # the click-to-mask backend the tests connect listens on 127.0.0.1, which 1.23 refuses by default:
               # as an ML backend URL (ML_BLOCK_LOCAL_IP) and as the webhook it adds for it (SSRF_PROTECTION_ENABLED)
               "ML_BLOCK_LOCAL_IP": "false", "SSRF_PROTECTION_ENABLED": "false"}
        env.pop("DJANGO_DB", None)
        self._t0 = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                # --internal-host is what it binds (default 0.0.0.0); --host only names it in generated URLs
                [str(LS_BIN), "start", "--no-browser", "-p", str(self.port), "--internal-host", "127.0.0.1",
                 "--username", USER, "--password", PASSWORD, "--user-token", LEGACY],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.data_dir)
        self._ready = False

    def wait_ready(self) -> None:
        """Block until /health answers (it boots while the test builds its dataset), then get the PAT."""
        if self._ready:
            return
        t0 = self._t0
        while time.monotonic() - t0 < START_TIMEOUT_S:
            if self.proc.poll() is not None:
                raise RuntimeError(f"label-studio exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(1)
        else:
            self.stop()
            raise RuntimeError(f"label-studio did not answer /health in {START_TIMEOUT_S}s: {self.log_tail()}")
        self.start_seconds.append(time.monotonic() - t0)
        if self.pat is None:
            r = httpx.post(f"{self.url}/api/token/", headers={"Authorization": f"Token {LEGACY}"}, timeout=30)
            r.raise_for_status()
            self.pat = r.json()["token"]
        self._ready = True

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def listening_on(self) -> set[str]:
        """The local addresses (hex, as in /proc/net/tcp*) of the sockets listening on our port."""
        out = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                local, state = line.split()[1], line.split()[3]
                address, port = local.rsplit(":", 1)
                if state == "0A" and int(port, 16) == self.port:
                    out.add(address)
        return out

    def log_tail(self, n: int = 2000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""

    def api(self, method: str, path: str, **kw) -> httpx.Response:
        """As the annotator in the browser would (their own token)."""
        r = httpx.request(method, f"{self.url}{path}", headers={"Authorization": f"Token {LEGACY}"}, timeout=60, **kw)
        r.raise_for_status()
        return r


def start_label_studio(root: Path) -> LabelStudio:
    if not LS_BIN.exists():
        need("label-studio", f"{LS_BIN} is missing: `make test` installs it into .venv-labelstudio")
    (root / "ls-data").mkdir(parents=True, exist_ok=True)
    return LabelStudio(root / "ls-data", root, root / "label-studio.log")


def ready(server: LabelStudio) -> LabelStudio:
    """The server up and answering, or a skip (a failure in CI) naming why not."""
    try:
        server.wait_ready()
    except RuntimeError as exc:
        need("label-studio", str(exc))
    return server
