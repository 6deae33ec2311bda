"""Connect the click-to-mask backend to a Label Studio project (``POST /api/ml``), once, and again if deleted.

Label Studio checks the backend when it is added (``/health`` then ``/setup``) and refuses one it cannot
reach, so a backend that is down is reported (``status: unreachable``) and the next run tries again;
the review loop itself never depends on it. Adding a backend also makes it the project's "model version"
when the project has none yet, and Label Studio then shows only that version's predictions in the editor,
which would hide SAM3's pre-annotations; so the project's ``model_version`` is put back as it was.
"""

from __future__ import annotations

from dataclasses import dataclass

from samantics_dagster.core.review.client import LabelStudioClient, LabelStudioError

TITLE = "SAM3 click-to-mask (samantics ml-backend)"


@dataclass
class Connection:
    status: str  # connected (this call), present (already there), unreachable
    backend_id: int | None = None
    detail: str = ""


def _same(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def connect_backend(client: LabelStudioClient, project_id: int, url: str, title: str = TITLE) -> Connection:
    """Make sure project ``project_id`` has the interactive backend at ``url``; never raises for a backend
    Label Studio cannot reach (that is the returned status), only for Label Studio's own failures."""
    backends = client.json("GET", "/api/ml/", params={"project": project_id})
    for b in backends if isinstance(backends, list) else []:
        if _same(str(b.get("url", "")), url):
            if not b.get("is_interactive"):
                client.json("PATCH", f"/api/ml/{b['id']}", json={"is_interactive": True})
            return Connection("present", int(b["id"]), str(b.get("readable_state") or b.get("state") or ""))
    before = client.project(project_id).get("model_version") or ""
    try:
        backend = client.json("POST", "/api/ml/", json={"url": url, "project": project_id, "is_interactive": True,
                                                         "title": title})
    except LabelStudioError as exc:
        if "HTTP 400" not in str(exc):  # 400: Label Studio's health/setup check of the backend failed
            raise
        return Connection("unreachable", None, f"{exc} (Label Studio must reach {url}; on a loopback or private "
                                                "address it also needs ML_BLOCK_LOCAL_IP=false)")
    after = client.project(project_id).get("model_version") or ""
    if after != before:
        client.json("PATCH", f"/api/projects/{project_id}/", json={"model_version": before})
    return Connection("connected", int(backend["id"]), str(backend.get("readable_state") or ""))
