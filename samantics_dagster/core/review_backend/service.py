"""The ML backend's behaviour, apart from HTTP: Label Studio's four calls as functions of parsed JSON.

Label Studio 1.23 (``label_studio/ml/api_connector.py``) calls ``GET /health`` (1 s timeout) and
``POST /setup`` (3 s) when a backend is connected or its project is listed, ``POST /predict`` with
``{"tasks", "project", "label_config", "params": {"context"}}`` for a smart-tool click (100 s), and
``POST /webhook`` with every project event once connected. So the model loads on a thread of its own:
``/health`` and ``/setup`` answer at once, and ``/predict`` answers "loading" until the model is in.

``/predict`` answers ``{"results": [{"result": [region], "score", "model_version", ...}]}``, one entry per
task; Label Studio hands ``results[0]`` to the editor, which shows ``result`` as a suggestion. Problems
are :class:`BackendError` with an HTTP status; the server puts the message in the status line too,
because Label Studio shows a failed call as its status line and drops the body.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from pathlib import Path

from samantics_dagster.core.label.model import LoadedTracker
from samantics_dagster.core.review.client import LabelStudioClient
from samantics_dagster.core.review_backend.cache import EmbeddingCache
from samantics_dagster.core.review_backend.images import ImageMissing, ImageSource, LabelStudioAccess
from samantics_dagster.core.review_backend.labelconfig import polygon_target
from samantics_dagster.core.review_backend.prompts import PromptError, parse_context
from samantics_dagster.core.review_backend.regions import mask_region
from samantics_dagster.core.review_backend.segment import ClickSegmenter

MODEL_CLASS = "Sam3TrackerModel"


class BackendError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class BackendSettings:
    model_dir: Path | None  # None: not resolved yet (the loader resolves MODEL_CACHE and reports why not)
    dataset_dir: Path | None
    cache_bytes: int = 1 << 30
    device: str = "auto"
    dtype: str = "auto"
    label_studio_url: str = ""
    label_studio_api_key: str = ""


class ModelState(StrEnum):
    """Where the tracker's background load stands (what ``/health`` reports as ``model``)."""

    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


@dataclass
class _State:
    status: ModelState = ModelState.LOADING
    error: str = ""
    started: float = field(default_factory=time.monotonic)
    loaded_s: float | None = None
    segmenter: ClickSegmenter | None = None
    version: str = ""


class MLBackend:
    def __init__(self, settings: BackendSettings, load: Callable[[], LoadedTracker]) -> None:
        self.settings = settings
        self._load = load
        self._state = _State()
        self._setup: dict[str, str] = {}  # hostname and access_token from Label Studio's last /setup
        self._ls_client: LabelStudioClient | None = None
        self.images = ImageSource(settings.dataset_dir, self._label_studio_access)
        self.cache = EmbeddingCache(settings.cache_bytes)

    # -- model -------------------------------------------------------------------------------------------
    def start_loading(self) -> threading.Thread:
        thread = threading.Thread(target=self._load_model, name="sam3-tracker-load", daemon=True)
        thread.start()
        return thread

    def _load_model(self) -> None:
        try:
            tracker = self._load()
        except Exception as exc:  # any failure is reported by /health and /predict, never a dead server
            self._state.error = f"{type(exc).__name__}: {exc}"
            self._state.status = ModelState.FAILED
            return
        self._state.segmenter = ClickSegmenter(tracker, self.cache)
        self._state.version = f"sam3-tracker-{tracker.fingerprint[:12]}"
        self._state.loaded_s = round(time.monotonic() - self._state.started, 2)
        self._state.status = ModelState.READY

    def _segmenter(self) -> ClickSegmenter:
        s = self._state
        if s.status == ModelState.LOADING:
            raise BackendError(503, f"loading: the SAM3 tracker is still loading ({time.monotonic() - s.started:.0f} s "
                                    "so far); click again in a moment")
        if s.status == ModelState.FAILED or s.segmenter is None:
            raise BackendError(503, f"the SAM3 tracker failed to load: {s.error}")
        return s.segmenter

    # -- Label Studio's calls ----------------------------------------------------------------------------
    def health(self) -> dict:
        s = self._state
        out: dict[str, object] = {"status": "UP", "model_class": MODEL_CLASS, "model": s.status,
                                  "model_version": s.version or None}
        if s.error:
            out["error"] = s.error
        if s.loaded_s is not None:
            out["load_seconds"] = s.loaded_s
        st = self.cache.stats()
        out["cache"] = {"images": st.items, "bytes": st.bytes, "max_bytes": st.max_bytes, "hits": st.hits,
                        "misses": st.misses, "evictions": st.evictions}
        return out

    def setup(self, body: dict) -> dict:
        """Remember how to reach Label Studio; refuse only a model that failed (Label Studio then shows the
        connection in error, with the reason) or a config with nothing to draw the masks with."""
        if isinstance(body.get("hostname"), str):
            self._setup["hostname"] = body["hostname"]
        if isinstance(body.get("access_token"), str):
            self._setup["access_token"] = body["access_token"]
        if body.get("schema"):
            try:
                polygon_target(str(body["schema"]))
            except PromptError as exc:
                raise BackendError(422, str(exc)) from None
        if self._state.status == ModelState.FAILED:
            raise BackendError(503, f"the SAM3 tracker failed to load: {self._state.error}")
        return {"model_version": self._state.version or "sam3-tracker (loading)"}

    def webhook(self, body: dict) -> dict:
        """Label Studio posts every project event here once a backend is connected; nothing to train."""
        return {"status": "ignored", "action": body.get("action") if isinstance(body, dict) else None}

    def predict(self, body: dict) -> dict:
        if not isinstance(body, dict):
            raise BackendError(400, "the /predict body must be a JSON object with tasks, label_config and params")
        tasks = body.get("tasks")
        if not isinstance(tasks, list) or not tasks:
            raise BackendError(400, "no tasks in the /predict request")
        params = body.get("params") or {}
        context = params.get("context") if isinstance(params, dict) else None
        if context is None:
            # a batch prediction (Label Studio asks when a task is opened, or "Retrieve predictions"): a click
            # model has nothing to say, and an empty list makes Label Studio store no empty prediction
            return {"results": [], "message": "this backend answers smart-tool clicks only (params.context is empty)"}
        if not isinstance(context, dict) or not context.get("result"):
            try:
                parse_context(context, 1, 1)
            except PromptError as exc:  # says what an empty or malformed context lacks
                raise BackendError(422, str(exc)) from None
        if len(tasks) != 1:
            raise BackendError(400, f"an interactive request carries one task, got {len(tasks)}")
        segmenter = self._segmenter()
        task = tasks[0] if isinstance(tasks[0], dict) else {}
        try:
            target = polygon_target(str(body.get("label_config") or ""), None)
            image = self.images.for_task(task.get("data") or {}, target.image_key)
        except PromptError as exc:
            raise BackendError(422, str(exc)) from None
        except ImageMissing as exc:
            raise BackendError(404, f"task {task.get('id')}: {exc}") from None
        t0 = time.perf_counter()
        try:
            emb, cached = segmenter.embedding(image.key, image.load)
            prompt = parse_context(context, emb.width, emb.height)
        except ImageMissing as exc:
            raise BackendError(404, f"task {task.get('id')}: {exc}") from None
        except PromptError as exc:
            raise BackendError(422, str(exc)) from None
        if target.labels and prompt.label not in target.labels:
            raise BackendError(422, f"label {prompt.label!r} is not one of <PolygonLabels name="
                                    f"{target.polygon_name!r}>'s labels {sorted(target.labels)}")
        mask, score = segmenter.decode(emb, prompt)
        region, info = mask_region(mask, prompt.label, target.polygon_name, prompt.to_name or target.to_name, score)
        return {"results": [{
            "result": [region] if region else [], "score": round(score, 4), "model_version": self._state.version,
            "cached_embedding": cached, "ms": round((time.perf_counter() - t0) * 1000.0, 2), **info}]}

    # -- Label Studio access (images it serves) ----------------------------------------------------------
    def _label_studio_access(self) -> LabelStudioAccess | None:
        s = self.settings
        if s.label_studio_url and s.label_studio_api_key:
            if self._ls_client is None:
                self._ls_client = LabelStudioClient(s.label_studio_url, s.label_studio_api_key)
            return LabelStudioAccess(s.label_studio_url, partial(self._ls_client.request, "GET"))
        host = s.label_studio_url or self._setup.get("hostname", "")
        if not host:
            return None
        token = self._setup.get("access_token", "")
        headers = {"Authorization": f"Token {token}"} if token else {}
        return LabelStudioAccess(host, lambda path: self.images.http.get(host.rstrip("/") + path, headers=headers))
