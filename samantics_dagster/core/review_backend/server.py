"""The HTTP face of :class:`MLBackend`: Label Studio's ML backend protocol on the standard library's server.

Why ``http.server`` and not an ASGI stack: four JSON routes, one model call at a time, and one thing an
ASGI server cannot do: put the reason in the status line. Label Studio reports a failed backend call as
``str(requests.HTTPError)``, i.e. ``"503 Server Error: <reason phrase> for url: ..."``, and drops the body;
with the message as the reason phrase, "the SAM3 tracker is loading" or "the point is outside the image"
reaches the person who connected the backend (and the body carries it as JSON for everyone else).
A thread per request (``ThreadingHTTPServer``), so ``/health`` answers while a click is being segmented.
"""

from __future__ import annotations

import json
import logging
import re
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from samantics_dagster.core.review_backend.service import BackendError, MLBackend

log = logging.getLogger("samantics.ml_backend")
MAX_BODY = 32 << 20


def _reason(message: str) -> str:
    """A status-line-safe reason phrase (latin-1, no control characters, bounded)."""
    text = re.sub(r"[\x00-\x1f\x7f]+", " ", message).encode("latin-1", "replace").decode("latin-1")
    return text[:300]


def make_handler(backend: MLBackend) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "samantics-ml-backend"
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
            log.info("%s %s", self.address_string(), format % args)

        def _send(self, status: int, body: dict, reason: str | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status, _reason(reason) if reason else None)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                raise BackendError(413, f"request body of {length} bytes is over the {MAX_BODY} limit")
            raw = self.rfile.read(length) if length else b""
            if not raw:
                return {}
            try:
                body = json.loads(raw)
            except ValueError as exc:
                raise BackendError(400, f"the request body is not JSON ({exc})") from None
            if not isinstance(body, dict):
                raise BackendError(400, "the request body must be a JSON object")
            return body

        def _route(self, method: str) -> None:
            path = self.path.split("?", 1)[0].rstrip("/") or "/"
            try:
                body = self._body() if method == "POST" else {}  # read first: the connection is kept alive
                if method == "GET" and path in ("/health", "/"):
                    return self._send(200, backend.health())
                if method == "POST" and path == "/setup":
                    return self._send(200, backend.setup(body))
                if method == "POST" and path == "/predict":
                    return self._send(200, backend.predict(body))
                if method == "POST" and path == "/webhook":
                    return self._send(200, backend.webhook(body))
                if method == "GET" and path == "/versions":
                    return self._send(200, {"versions": [backend.health()["model_version"]]})
                raise BackendError(404, f"no route {method} {path}: this backend serves GET /health, POST /setup, "
                                        "POST /predict, POST /webhook")
            except BackendError as exc:
                log.warning("%s %s -> %d: %s", method, path, exc.status, exc.message)
                self._send(exc.status, {"error": exc.message, "status": "error"}, reason=exc.message)
            except Exception as exc:  # a bug answers 500 with its type; the server keeps serving
                log.error("%s %s failed:\n%s", method, path, traceback.format_exc())
                message = f"internal error in the ML backend: {type(exc).__name__}: {exc}"
                self._send(500, {"error": message, "status": "error"}, reason=message)

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            self._route("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._route("POST")

    return Handler


def make_server(backend: MLBackend, host: str, port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), make_handler(backend))
    server.daemon_threads = True
    return server
