"""The image a task shows: from the image store when the task names its ``dhash`` (the review projects'
tasks do), else fetched from the URL in the task (absolute, or relative to Label Studio, e.g. its
``/data/local-files/?d=...``), with Label Studio's credentials where Label Studio serves it.

The cache key identifies the content, not the name, so a replaced file is never segmented from a stale
embedding: the store path with its size and mtime (the store never rewrites an image, but a person can),
or a digest of the fetched bytes (fetching is cheap next to the ViT; decoding is skipped on a hit).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlparse

import httpx
from PIL import Image, ImageOps, UnidentifiedImageError

from samantics_dagster.core.dataset.layout import DatasetLayout
from samantics_dagster.core.review.client import LabelStudioError


class ImageMissing(LookupError):
    """The task's image cannot be read; the message names it and where it was looked for."""


@dataclass
class LabelStudioAccess:
    """Where Label Studio is and how to fetch from it with its credentials (a personal access token through
    the review loop's client, or the legacy token Label Studio's ``/setup`` hands over)."""

    url: str
    get: Callable[[str], httpx.Response]  # a path or URL under ``url``


@dataclass
class ImageRef:
    key: str
    load: Callable[[], Image.Image]
    source: str  # where it comes from, for messages


def _decode(data: bytes, source: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageMissing(f"{source} is not a readable image ({exc})") from None
    # browsers draw JPEGs EXIF-rotated, so the editor's percent coordinates are of the rotated image
    return ImageOps.exif_transpose(image)


class ImageSource:
    def __init__(self, dataset_dir: Path | None, label_studio: Callable[[], LabelStudioAccess | None],
                 timeout_s: float = 30.0) -> None:
        self.layout = DatasetLayout(dataset_dir) if dataset_dir else None
        self.label_studio = label_studio
        self.http = httpx.Client(timeout=timeout_s, follow_redirects=True)

    def close(self) -> None:
        self.http.close()

    def for_task(self, data: dict, image_key: str) -> ImageRef:
        dhash = data.get("dhash")
        if self.layout is not None and isinstance(dhash, str) and dhash:
            path = self.layout.image(dhash)
            if path.is_file():
                st = path.stat()
                return ImageRef(f"file:{path}:{st.st_size}:{st.st_mtime_ns}",
                                lambda: _decode(path.read_bytes(), str(path)), str(path))
        url = data.get(image_key)
        if not isinstance(url, str) or not url:
            where = f" and not in the image store ({self.layout.image(dhash)})" if self.layout and dhash else ""
            raise ImageMissing(f"the task has no image URL in data.{image_key}{where}")
        body = self._fetch(url)
        digest = hashlib.blake2b(body, digest_size=16).hexdigest()
        return ImageRef(f"bytes:{digest}", lambda: _decode(body, url), url)

    def _fetch(self, url: str) -> bytes:
        ls = self.label_studio()
        absolute = urlparse(url).scheme in ("http", "https")
        if not absolute:
            if ls is None:
                raise ImageMissing(f"the task's image {url!r} is relative to Label Studio, whose URL the backend does "
                                   "not know: set LABEL_STUDIO_URL (and LABEL_STUDIO_API_KEY), or connect the backend "
                                   "to the project so that /setup tells it")
            url = urljoin(ls.url.rstrip("/") + "/", url.lstrip("/"))
        try:
            if ls is not None and url.startswith(ls.url.rstrip("/")):
                r = ls.get(url[len(ls.url.rstrip("/")):] or "/")
            else:
                r = self.http.get(url)
        except httpx.HTTPError as exc:
            raise ImageMissing(f"could not fetch the task's image {url} ({type(exc).__name__}: {exc})") from None
        except LabelStudioError as exc:
            raise ImageMissing(f"could not fetch the task's image {url}: {exc}") from None
        if r.status_code != 200:
            hint = " (Label Studio refused the backend's token: set LABEL_STUDIO_API_KEY)" if r.status_code in (401, 403) else ""
            raise ImageMissing(f"fetching the task's image {url} gave HTTP {r.status_code}{hint}")
        return r.content
