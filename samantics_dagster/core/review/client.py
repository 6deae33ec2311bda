"""A small client for the parts of Label Studio's REST API the review loop uses.

Why not ``label-studio-sdk``: its 2.1.2 pins ``opencv-python-headless<4.13`` and ``numpy<2.3``, and
installing it beside this project downgrades both under dedupe and SAM3 (measured with ``pip install
--dry-run``). The endpoints here are the ones the SDK calls (``/api/projects``, ``/import``, ``/export``,
``/api/storages/localfiles``, ``/api/token/refresh``), through httpx, which the project already has.

Authentication: a personal access token (Label Studio 1.23's default: a JWT refresh token, exchanged for
short-lived access tokens, renewed on 401) or a legacy token (``Token ...``, refused unless the organisation
enables legacy tokens). The key is never put in an exception, a log line or metadata.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import httpx


class LabelStudioError(RuntimeError):
    """Label Studio refused or failed a request; the message says what to do."""


class LabelStudioUnreachable(LabelStudioError):
    pass


class ProjectMissing(LabelStudioError):
    pass


def _is_jwt(key: str) -> bool:
    return key.count(".") == 2


class LabelStudioClient:
    def __init__(self, url: str, api_key: str, timeout: float = 30.0) -> None:
        if not url or not api_key:
            raise LabelStudioError("LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY must both be set (the API key is a "
                                   "personal access token from Label Studio's Account & Settings page)")
        self.url = url.rstrip("/")
        self._key = api_key
        self._http = httpx.Client(base_url=self.url, timeout=timeout, follow_redirects=True)
        self._access: str | None = None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LabelStudioClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ---------------------------------------------------------------------------------------
    def _send(self, method: str, path: str, **kw) -> httpx.Response:
        try:
            return self._http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise LabelStudioUnreachable(
                f"Label Studio at {self.url} is unreachable ({type(exc).__name__}: {exc}); start it (e.g. `docker "
                "compose --profile review up -d label-studio`) or fix LABEL_STUDIO_URL. Nothing was lost: the "
                "tables keep every task sent and every review pulled, and the next run resumes") from None

    def _auth(self, renew: bool = False) -> dict[str, str]:
        if not _is_jwt(self._key):
            return {"Authorization": f"Token {self._key}"}
        if self._access is None or renew:
            r = self._send("POST", "/api/token/refresh/", json={"refresh": self._key})
            if r.status_code != 200:
                raise LabelStudioError(f"Label Studio at {self.url} refused LABEL_STUDIO_API_KEY (HTTP "
                                       f"{r.status_code}): create a personal access token in Account & Settings")
            self._access = r.json()["access"]
        return {"Authorization": f"Bearer {self._access}"}

    def request(self, method: str, path: str, **kw) -> httpx.Response:
        r = self._send(method, path, headers=self._auth(), **kw)
        if r.status_code == 401 and _is_jwt(self._key):
            r = self._send(method, path, headers=self._auth(renew=True), **kw)
        if r.status_code == 401:
            raise LabelStudioError(f"Label Studio at {self.url} refused LABEL_STUDIO_API_KEY (401: {_detail(r)}); "
                                   "use a personal access token, or enable legacy tokens for the organisation")
        if r.status_code >= 400 and r.status_code != 404:
            raise LabelStudioError(f"Label Studio {method} {path} failed with HTTP {r.status_code}: {_detail(r)}")
        return r

    def json(self, method: str, path: str, **kw):
        r = self.request(method, path, **kw)
        if r.status_code == 404:
            raise LabelStudioError(f"Label Studio {method} {path}: not found (404)")
        return r.json()

    # -- projects ----------------------------------------------------------------------------------------
    def find_project(self, title: str) -> dict | None:
        page = 1
        while True:
            data = self.json("GET", "/api/projects/", params={"page": page, "page_size": 100})
            for p in data.get("results", []):
                if p.get("title") == title:
                    return p
            if not data.get("next"):
                return None
            page += 1

    def project(self, project_id: int) -> dict:
        r = self.request("GET", f"/api/projects/{project_id}/")
        if r.status_code == 404:
            raise ProjectMissing(f"Label Studio project {project_id} at {self.url} no longer exists")
        return r.json()

    def create_project(self, title: str, label_config: str, description: str = "") -> dict:
        return self.json("POST", "/api/projects/", json={"title": title, "label_config": label_config,
                                                          "description": description})

    def set_label_config(self, project_id: int, label_config: str) -> dict:
        """Replace the project's labeling interface (Label Studio refuses one that drops labels in use)."""
        return self.json("PATCH", f"/api/projects/{int(project_id)}/", json={"label_config": label_config})

    def add_local_storage(self, project_id: int, path: str, title: str) -> dict:
        """Connect a local-files import storage: Label Studio serves ``/data/local-files/?d=...`` only for
        files under a storage of a project the viewer may see."""
        for s in self.json("GET", "/api/storages/localfiles/", params={"project": project_id}):
            if s.get("path") == path:
                return s
        return self.json("POST", "/api/storages/localfiles/", json={
            "project": project_id, "path": path, "title": title, "use_blob_urls": False})

    # -- tasks -------------------------------------------------------------------------------------------
    def iter_tasks(self, project_id: int) -> Iterator[dict]:
        page = 1
        while True:
            r = self.request("GET", "/api/tasks/", params={"project": project_id, "page": page, "page_size": 100})
            if r.status_code == 404:
                if page == 1:
                    self.project(project_id)  # raises ProjectMissing if that is why
                return
            tasks = r.json().get("tasks", [])
            yield from tasks
            if len(tasks) < 100:
                return
            page += 1

    def import_tasks(self, project_id: int, tasks: Sequence[dict]) -> list[int]:
        r = self.request("POST", f"/api/projects/{project_id}/import", params={"return_task_ids": "true"},
                         json=list(tasks))
        if r.status_code == 404:
            self.project(project_id)
            raise LabelStudioError(f"Label Studio import into project {project_id}: 404")
        return [int(i) for i in r.json().get("task_ids", [])]

    def export_annotated(self, project_id: int) -> list[dict]:
        """Every task that has at least one annotation, with its annotations (Label Studio's JSON export)."""
        r = self.request("GET", f"/api/projects/{project_id}/export",
                         params={"exportType": "JSON", "download_all_tasks": "false"})
        if r.status_code == 404:
            self.project(project_id)
            raise LabelStudioError(f"Label Studio export of project {project_id}: 404")
        return r.json()

    def user_name(self, user_id: int) -> str:
        """The user's e-mail (Label Studio's login), or their id if the account is gone."""
        r = self.request("GET", f"/api/users/{int(user_id)}/")
        return str(r.json().get("email") or user_id) if r.status_code == 200 else str(user_id)

    def task(self, task_id: int) -> dict:
        return self.json("GET", f"/api/tasks/{int(task_id)}/")

    def set_task_overlap(self, task_id: int, overlap: int, annotated_by: int) -> dict:
        """Ask for ``overlap`` distinct people on a task. Label Studio recomputes ``is_labeled`` (people >= overlap)
        when an annotation is saved but not when the overlap is patched, so it is sent too: a task marked
        labelled stays out of the annotators' queue."""
        return self.json("PATCH", f"/api/tasks/{int(task_id)}/",
                         json={"overlap": int(overlap), "is_labeled": annotated_by >= overlap})

    def set_annotations_per_task(self, project_id: int, count: int) -> dict:
        """The project's "annotations per task" (``maximum_annotations``): the overlap Label Studio gives every
        task it imports. The cohort share stays 100%: below it, every import re-draws which tasks get the overlap
        and would undo the per-task overlaps set after it. Changing the number makes Label Studio (1.23) set
        every task whose overlap is above 1 to it (all tasks when it becomes 1): ``send_frames`` raises the
        audit tasks again and the next ``pull_reviews`` asks again for the frames it had sent back."""
        return self.json("PATCH", f"/api/projects/{int(project_id)}/",
                         json={"maximum_annotations": int(count), "overlap_cohort_percentage": 100})

    def create_annotation(self, task_id: int, result: list[dict]) -> dict:
        return self.json("POST", f"/api/tasks/{task_id}/annotations/", json={"result": result, "was_cancelled": False})


def _detail(r: httpx.Response) -> str:
    try:
        body = r.json()
        # a 400's "detail" is only "Validation error"; the reasons are in validation_errors
        return str(body.get("validation_errors") or body.get("detail") or body)[:600]
    except ValueError:
        return r.text[:200]
