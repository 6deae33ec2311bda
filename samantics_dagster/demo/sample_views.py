"""The sample's photos and the distinct views (scenes) cut from them. Split from ``sample.py`` (which
re-exports the public names); the rules for what counts as a distinct view are ``docs/sample-workdir.md``.
Pure numpy + Pillow (scikit-image only to load its bundled photos); no Dagster imports.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

#: Photos of scikit-image that ship inside its wheel (checked offline with scikit-image 0.26). ``cat`` is
#: the same picture as ``chelsea`` and is left out on purpose: two "different" scenes cut from one
#: picture would be a false truth. Binary/synthetic images (horse, checkerboard, blobs) have nothing a
#: deduper or a labeller can use. Loaders that need a download are skipped at run time.
PHOTO_NAMES: tuple[str, ...] = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "retina",
    "immunohistochemistry",
    "camera",
    "coins",
    "moon",
    "clock",
    "cell",
    "page",
    "text",
    "brick",
    "grass",
    "gravel",
)

#: The stereo pair becomes two scenes of one video (a hard negative: parallax only).
STEREO_NAMES: tuple[str, str] = ("motorcycle_left", "motorcycle_right")


# ---------------------------------------------------------------------------------------------- photos


@lru_cache(maxsize=1)
def load_photos() -> dict[str, Image.Image]:
    """The bundled scikit-image photos as RGB Pillow images, by name (stereo views included).

    Grayscale photos are converted to RGB (video frames are colour); an alpha channel is dropped. A
    loader that would need a download (pooch) is skipped, so this works offline. Cached: the images are
    only read (``resize`` with a box never changes its source).
    """
    import skimage.data as skd  # imported here: it is slow to import and only the builder needs it

    photos: dict[str, Image.Image] = {}
    for name in PHOTO_NAMES:
        try:
            arr = np.asarray(getattr(skd, name)())
        except Exception:  # noqa: BLE001 - any loader failure (missing pooch, no network) means "skip it"
            continue
        img = _to_rgb(arr)
        if img is not None:
            photos[name] = img
    try:
        left, right, _disp = skd.stereo_motorcycle()
    except Exception:  # noqa: BLE001
        pass
    else:
        for name, arr in zip(STEREO_NAMES, (left, right)):
            img = _to_rgb(np.asarray(arr))
            if img is not None:
                photos[name] = img
    return photos


def _to_rgb(arr: np.ndarray) -> Image.Image | None:
    if arr.dtype == bool:
        return None
    if arr.dtype != np.uint8:
        arr = np.clip(arr.astype(np.float64) * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., :3]
    elif not (arr.ndim == 3 and arr.shape[2] == 3):
        return None
    return Image.fromarray(np.ascontiguousarray(arr), "RGB")


# ----------------------------------------------------------------------------------------------- views


@dataclass(frozen=True)
class View:
    """A crop box (x, y, w, h, in photo pixels, aspect of the frame) of one photo: one scene."""

    photo: str
    box: tuple[int, int, int, int]

    @property
    def scene_id(self) -> str:
        x, y, w, h = self.box
        return f"{self.photo}@{x},{y}+{w}x{h}"


def _overlap_of_smaller(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection area over the smaller box's area."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = min(ax + aw, bx + bw) - max(ax, bx)
    ih = min(ay + ah, by + bh) - max(ay, by)
    if iw <= 0 or ih <= 0:
        return 0.0
    return (iw * ih) / min(aw * ah, bw * bh)


#: Two views of one photo are distinct scenes only if they overlap by at most this much of the smaller
#: one: a same-size view has then moved by at least 30% of its width or height, and a smaller view lies
#: at least 30% outside a bigger one (never a mere zoom-in, which a geometric matcher may rightly call the
#: same scene). A frame's jitter moves it by at most 8 px and zooms it by at most 3%.
_MAX_OVERLAP = 0.70
#: Consecutive views of a pan (a run of same-size views in one row, or one column for a tilt) move by this
#: fraction of the view's width (height): they overlap by 65-75%, the closest distinct scenes of the sample.
#: Views of a run that are not neighbours, and views of different runs, obey ``_MAX_OVERLAP``.
_PAN_STEP: tuple[float, float] = (0.25, 0.35)
#: Longest pan (views per run) and the share of runs that tilt (move vertically) instead of panning.
_PAN_LEN = 3
_TILT_SHARE = 0.3
#: Narrowest view, in photo pixels (a 640-wide frame then upscales it at most 3.2x). Absolute, so the
#: same seed cuts the same scenes at any frame size of one aspect ratio.
_MIN_VIEW_WIDTH = 200
#: View widths as fractions of the widest frame-aspect box of a photo (kept between ``_MIN_VIEW_WIDTH``
#: and the frame width, so a frame never downscales its view). Full-photo views would each block every
#: other view of their photo.
_VIEW_SCALES: tuple[float, ...] = (0.62, 0.5, 0.4)
#: Most views one photo gives, so videos are not all cut from the photo with the most room.
_MAX_VIEWS_PER_PHOTO = 12
#: Random run placements tried per photo.
_PLACEMENT_TRIES = 400
#: A view is kept only if it is not flat: its 32x18 grey thumbnail has a standard deviation of at least
#: ``_MIN_TEXTURE_STD`` grey levels, and at least three of its four quadrants have ``_MIN_QUADRANT_STD``.
#: That rules out a sky, the moon's mare, an empty stretch of cell background or retina border with
#: something in one corner: views a person could not tell apart. Views whose hash is unstable under the
#: jitter are *not* ruled out: a real video has them too.
_MIN_TEXTURE_STD = 10.0
_MIN_QUADRANT_STD = 5.0
#: Texture photos: every crop looks alike to a person, so they are used last, only when needed. The brick
#: wall is periodic (two crops a brick apart are the same picture), so it is never used.
TEXTURES: tuple[str, ...] = ("grass", "gravel")
_EXCLUDED: tuple[str, ...] = ("brick",)


def _is_textured(gray: Image.Image, box: tuple[int, int, int, int]) -> bool:
    """Whether a view has visible structure (see ``_MIN_TEXTURE_STD``)."""
    x, y, w, h = box
    small = np.asarray(gray.resize((32, 18), Image.Resampling.BOX, box=(x, y, x + w, y + h)), dtype=np.float32)
    quadrants = [small[:9, :16], small[:9, 16:], small[9:, :16], small[9:, 16:]]
    busy = sum(float(q.std()) >= _MIN_QUADRANT_STD for q in quadrants)
    return float(small.std()) >= _MIN_TEXTURE_STD and busy >= 3


def _view_sizes(photo_size: tuple[int, int], frame_size: tuple[int, int]) -> list[tuple[int, int]]:
    fw, fh = frame_size
    pw, ph = photo_size
    aspect = fw / fh
    max_w = min(pw, ph * aspect)
    sizes = []
    for frac in _VIEW_SCALES:
        w = int(min(max(max_w * frac, _MIN_VIEW_WIDTH), fw))
        h = int(round(w / aspect))
        if w <= pw and h <= ph and (w, h) not in sizes:
            sizes.append((w, h))
    return sizes


def plan_views(
    photos: dict[str, Image.Image], frame_size: tuple[int, int], seed: int
) -> dict[str, list[list[View]]]:
    """Distinct, textured views of each photo (stereo excluded), grouped in runs: photo -> [run, ...].

    A run is what one stretch of a video films: one to ``_PAN_LEN`` same-size views, consecutive ones
    moved by ``_PAN_STEP`` of the view (a pan left or right, or a tilt up or down). Runs are placed at
    random (size from ``_VIEW_SCALES``, position, steps, direction; ``_PLACEMENT_TRIES`` tries), a run
    cut short at its first view that is flat (:func:`_is_textured`) or overlaps a view of an earlier run
    (or a non-neighbour of its own) by more than ``_MAX_OVERLAP``; at most ``_MAX_VIEWS_PER_PHOTO`` views
    per photo. Each photo draws from its own generator, so its views depend only on the seed and the photo.
    """
    out: dict[str, list[list[View]]] = {}
    for idx, name in enumerate(PHOTO_NAMES):
        if name not in photos or name in _EXCLUDED:
            continue
        rng = np.random.default_rng([seed, 101, idx])
        gray = photos[name].convert("L")
        pw, ph = gray.size
        sizes = _view_sizes(gray.size, frame_size)
        kept: list[tuple[int, int, int, int]] = []
        runs: list[list[View]] = []
        for _ in range(_PLACEMENT_TRIES if sizes else 0):
            if len(kept) >= _MAX_VIEWS_PER_PHOTO:
                break
            w, h = sizes[int(rng.integers(len(sizes)))]
            tilt = bool(rng.random() < _TILT_SHARE)
            span, room = (h, ph) if tilt else (w, pw)
            steps = [int(np.ceil(span * rng.uniform(*_PAN_STEP))) for _ in range(_PAN_LEN - 1)]
            n = _PAN_LEN
            while n > 1 and span + sum(steps[: n - 1]) > room:
                n -= 1
            offsets = [0, *np.cumsum(steps[: n - 1]).tolist()]
            if rng.random() < 0.5:  # pan left / tilt up
                offsets = [offsets[-1] - o for o in offsets]
            if tilt:
                x0 = int(rng.integers(0, pw - w + 1))
                y0 = int(rng.integers(0, ph - h - max(offsets) + 1))
                boxes = [(x0, y0 + int(o), w, h) for o in offsets]
            else:
                x0 = int(rng.integers(0, pw - w - max(offsets) + 1))
                y0 = int(rng.integers(0, ph - h + 1))
                boxes = [(x0 + int(o), y0, w, h) for o in offsets]
            run: list[tuple[int, int, int, int]] = []
            for box in boxes:
                if len(kept) + len(run) >= _MAX_VIEWS_PER_PHOTO:
                    break
                if any(_overlap_of_smaller(box, k) > _MAX_OVERLAP for k in kept + run[:-1]):
                    break
                if not _is_textured(gray, box):
                    break
                run.append(box)
            if run:
                kept.extend(run)
                runs.append([View(name, b) for b in run])
        out[name] = runs
    return out


def stereo_box(photo: Image.Image, frame_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The largest centred frame-aspect box of a stereo view, at most the frame's width (same box for both
    views)."""
    fw, fh = frame_size
    pw, ph = photo.size
    w = int(min(pw, ph * fw / fh, fw))
    h = int(round(w * fh / fw))
    return ((pw - w) // 2, (ph - h) // 2, w, h)
