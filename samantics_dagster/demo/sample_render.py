"""How one sample frame is filmed from its view: the handheld jitter drawn per frame and the pure
function that renders and encodes it. Split from ``sample.py``; no Dagster imports.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageFilter

from samantics_dagster.demo.sample_views import View

# --------------------------------------------------------------------------------------------- jitter


@dataclass(frozen=True)
class Jitter:
    """How one frame differs from the view, as a handheld camera's frames do: drawn up front, so
    rendering is a pure function."""

    dx: float  # output pixels
    dy: float
    zoom: float  # >= 1: zoom in, never out, so the frame stays inside the photo
    angle: float  # degrees, counter-clockwise
    contrast: float
    brightness: float
    noise_sigma: float
    noise_key: int  # where in the noise bank its noise starts
    blur: float  # Gaussian radius in output pixels; 0 = sharp
    quality: int


#: Jitter ranges (per frame, relative to the view): shift 2-8 output px each way, zoom in up to 3%,
#: rotation up to 0.5 degrees, brightness +-12 grey levels, contrast +-8%, Gaussian noise sigma 1-4, a
#: slight blur (radius 0.3-1 px) on one frame in four, JPEG quality 60-95.
_SHIFT_PX = (2.0, 8.0)
_MAX_ZOOM = 1.03
_MAX_ANGLE = 0.5
_BRIGHTNESS = 12.0
_CONTRAST = 0.08
_NOISE = (1.0, 4.0)
_BLUR_SHARE = 0.25
_BLUR_RADIUS = (0.3, 1.0)
_QUALITY = (60, 95)


def draw_jitter(rng: np.random.Generator) -> Jitter:
    def shift() -> float:
        return float(rng.uniform(*_SHIFT_PX) * rng.choice((-1.0, 1.0)))

    dx, dy = shift(), shift()
    zoom = float(rng.uniform(1.0, _MAX_ZOOM))
    angle = float(rng.uniform(-_MAX_ANGLE, _MAX_ANGLE))
    contrast = float(rng.uniform(1.0 - _CONTRAST, 1.0 + _CONTRAST))
    brightness = float(rng.uniform(-_BRIGHTNESS, _BRIGHTNESS))
    noise_sigma = float(rng.uniform(*_NOISE))
    noise_key = int(rng.integers(0, 2**40))
    blur = float(rng.uniform(*_BLUR_RADIUS)) if rng.random() < _BLUR_SHARE else 0.0
    quality = int(rng.integers(_QUALITY[0], _QUALITY[1] + 1))
    return Jitter(dx, dy, zoom, angle, contrast, brightness, noise_sigma, noise_key, blur, quality)


def _frame_transform(
    photo_size: tuple[int, int], box: tuple[int, int, int, int], jit: Jitter, frame_size: tuple[int, int]
) -> tuple[float, float, float, float, float, float]:
    """The affine map (Pillow's ``AFFINE`` data) from frame pixels to photo pixels for one frame: the view
    moved by (dx, dy) *output* pixels, zoomed in by ``zoom`` and turned by ``angle``, its centre pushed back
    so the turned frame stays inside the photo (then that side moves less)."""
    pw, ph = photo_size
    fw, fh = frame_size
    x, y, w, h = box
    scale = w / fw / jit.zoom  # photo pixels per output pixel
    theta = np.deg2rad(jit.angle)
    cos, sin = float(np.cos(theta)), float(np.sin(theta))
    cw, ch = fw * scale, fh * scale
    half_x = (cw * abs(cos) + ch * abs(sin)) / 2
    half_y = (cw * abs(sin) + ch * abs(cos)) / 2
    cx = x + w / 2 + jit.dx * w / fw
    cy = y + h / 2 + jit.dy * w / fw
    cx = min(max(cx, half_x), pw - half_x) if 2 * half_x <= pw else pw / 2
    cy = min(max(cy, half_y), ph - half_y) if 2 * half_y <= ph else ph / 2
    # photo = centre + scale * R(theta) @ (frame - frame centre)
    a, b = scale * cos, -scale * sin
    d, e = scale * sin, scale * cos
    c = cx - a * fw / 2 - b * fh / 2
    f = cy - d * fw / 2 - e * fh / 2
    return (a, b, c, d, e, f)


@lru_cache(maxsize=2)
def _noise_bank(height: int, width: int) -> np.ndarray:
    """Unit Gaussian noise, twice the frame's size each way, from a fixed seed: a frame's noise is a window
    of it at an offset of its own (drawing 0.7 M fresh normals per frame would double the build time).
    Read only."""
    bank = np.random.default_rng(0x5A3D).standard_normal((2 * height, 2 * width, 3), dtype=np.float32)
    bank.flags.writeable = False
    return bank


def render(photo: Image.Image, view: View, jit: Jitter, frame_size: tuple[int, int]) -> Image.Image:
    """One RGB frame of a view: moved, zoomed, turned, relit, maybe blurred, and noised as ``jit`` says.

    Bilinear resampling: the frame only ever enlarges the photo (views are at most the frame's width), and
    a bicubic affine warp costs 2.5x more for no visible difference after the noise and the JPEG.
    """
    fw, fh = frame_size
    data = _frame_transform(photo.size, view.box, jit, frame_size)
    img = photo.transform(frame_size, Image.Transform.AFFINE, data, resample=Image.Resampling.BILINEAR)
    if jit.blur > 0:
        img = img.filter(ImageFilter.GaussianBlur(jit.blur))
    arr = np.asarray(img, dtype=np.float32)
    arr = arr * jit.contrast + (128.0 * (1.0 - jit.contrast) + jit.brightness)
    oy, ox = divmod(jit.noise_key, 1 << 20)
    oy, ox = oy % (fh + 1), ox % (fw + 1)
    arr += _noise_bank(fh, fw)[oy : oy + fh, ox : ox + fw] * jit.noise_sigma
    np.clip(arr, 0.0, 255.0, out=arr)
    arr += 0.5
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def jpeg(img: Image.Image, quality: int, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, **kw)
    return buf.getvalue()
