"""Build a sample grabby workdir from real photos, and score a deduper against its known truth.

Why it exists and what makes it hard (jitter, hard negatives, cross-category repeats, bad files):
``docs/sample-workdir.md``. Pure Python (numpy, Pillow, scikit-image); no Dagster imports.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path, PurePath

import numpy as np
from PIL import Image, ImageFilter

__all__ = [
    "SampleTruth",
    "DedupeScore",
    "build_sample_workdir",
    "score_dedupe",
    "score_by_class",
    "load_photos",
    "scene_photo",
]

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

_TRUTH_VERSION = 2  # 2 adds scene_class; version 1 files still read (every scene a photo)
_EXIF_ORIENTATION = 0x0112


# ----------------------------------------------------------------------------------------------- truth


@dataclass(frozen=True)
class SampleTruth:
    """What the sample workdir really contains, keyed by POSIX path relative to the workdir.

    ``scene_of`` lists every good frame (including the unusual ones in ``special``) with its scene id;
    ``bad_files`` lists every file a reader must reject, with what is wrong; ``special`` marks good frames
    that are unusual (``cmyk``, ``grayscale``, ``exif-rotated``) but must decode and dedupe normally.
    Names that are not UTF-8 appear as ``os.fsdecode`` gives them (surrogate escapes), so
    ``Path(workdir, rel_path)`` still opens them on POSIX.
    """

    scene_of: dict[str, str]
    bad_files: dict[str, str]
    special: dict[str, str] = field(default_factory=dict)
    #: scene id -> its class (``photo``, or one of ``lowtex.LOW_TEXTURE_CLASSES``); a scene missing here is a photo
    scene_class: dict[str, str] = field(default_factory=dict)

    def to_json(self, path: Path) -> None:
        """Write the truth as JSON (ASCII-escaped, so surrogate-escaped names survive the round trip).

        Keep it outside the workdir's ``{source}/{category}`` folders: it is not a frame.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "version": _TRUTH_VERSION,
            "scene_of": self.scene_of,
            "bad_files": self.bad_files,
            "special": self.special,
            "scene_class": self.scene_class,
        }
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=True) + "\n", encoding="ascii")
        os.replace(tmp, path)

    @classmethod
    def from_json(cls, path: Path) -> SampleTruth:
        """Read a truth written by :meth:`to_json`."""
        doc = json.loads(Path(path).read_text(encoding="ascii"))
        if doc.get("version") not in (1, _TRUTH_VERSION):
            raise ValueError(f"{path}: unsupported sample truth version {doc.get('version')!r}")
        return cls(
            scene_of=dict(doc["scene_of"]),
            bad_files=dict(doc["bad_files"]),
            special=dict(doc.get("special", {})),
            scene_class=dict(doc.get("scene_class", {})),
        )

    @property
    def scenes(self) -> set[str]:
        """The distinct scene ids."""
        return set(self.scene_of.values())

    def frames_by_scene(self) -> dict[str, list[str]]:
        """Scene id -> its frames' rel_paths (sorted), for tests and reports."""
        out: dict[str, list[str]] = {}
        for rel, scene in sorted(self.scene_of.items()):
            out.setdefault(scene, []).append(rel)
        return out


def scene_photo(scene_id: str) -> str:
    """The photo a scene id was cut from (``"rocket@0,123+320x180"`` -> ``"rocket"``)."""
    return scene_id.split("@", 1)[0]


# ----------------------------------------------------------------------------------------------- score


@dataclass(frozen=True)
class DedupeScore:
    """How well a deduper did on a sample: what it lost (recall) and what it removed (redundancy).

    Both numbers matter: keeping everything has perfect recall and removes nothing; keeping one frame in
    the whole dataset removes everything and loses almost every scene.
    """

    scenes: int
    scenes_kept: int
    redundant_frames: int
    redundant_removed: int

    @property
    def scene_recall(self) -> float:
        """Fraction of scenes with at least one accepted frame (1.0 = no scene lost)."""
        return self.scenes_kept / self.scenes if self.scenes else 1.0

    @property
    def removed_fraction(self) -> float:
        """Fraction of redundant frames (all but one per scene) the deduper rejected (1.0 = all)."""
        return self.redundant_removed / self.redundant_frames if self.redundant_frames else 1.0


def score_dedupe(truth: SampleTruth, accepted: Iterable[str | os.PathLike[str]]) -> DedupeScore:
    """Score the rel_paths a deduper accepted against the truth.

    Redundant frames are the good frames beyond the first of each scene. A scene with ``k`` accepted
    frames keeps ``k - 1`` redundant ones. Accepted paths that are bad files or unknown are ignored (a
    deduper that accepts a bad file is caught by other checks, not by this score); paths given twice count
    once.
    """
    kept_per_scene: dict[str, int] = {}
    for rel in {_as_rel(p) for p in accepted}:
        scene = truth.scene_of.get(rel)
        if scene is not None:
            kept_per_scene[scene] = kept_per_scene.get(scene, 0) + 1
    scenes = len(set(truth.scene_of.values()))
    redundant = len(truth.scene_of) - scenes
    redundant_kept = sum(k - 1 for k in kept_per_scene.values() if k > 1)
    return DedupeScore(
        scenes=scenes,
        scenes_kept=len(kept_per_scene),
        redundant_frames=redundant,
        redundant_removed=redundant - redundant_kept,
    )


def score_by_class(truth: SampleTruth, accepted: Iterable[str | os.PathLike[str]]) -> dict[str, DedupeScore]:
    """:func:`score_dedupe` per scene class (``photo`` and the low-texture classes): a deduper that keeps
    every photo but loses skies must show it, not hide it in an average."""
    accepted = list(accepted)
    by_class: dict[str, dict[str, str]] = {}
    for rel, scene in truth.scene_of.items():
        by_class.setdefault(truth.scene_class.get(scene, "photo"), {})[rel] = scene
    return {cls: score_dedupe(SampleTruth(scene_of=sub, bad_files={}), accepted) for cls, sub in sorted(by_class.items())}


def _as_rel(p: str | os.PathLike[str]) -> str:
    return p if isinstance(p, str) else PurePath(p).as_posix()


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
class _View:
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


def _plan_views(
    photos: dict[str, Image.Image], frame_size: tuple[int, int], seed: int
) -> dict[str, list[list[_View]]]:
    """Distinct, textured views of each photo (stereo excluded), grouped in runs: photo -> [run, ...].

    A run is what one stretch of a video films: one to ``_PAN_LEN`` same-size views, consecutive ones
    moved by ``_PAN_STEP`` of the view (a pan left or right, or a tilt up or down). Runs are placed at
    random (size from ``_VIEW_SCALES``, position, steps, direction; ``_PLACEMENT_TRIES`` tries), a run
    cut short at its first view that is flat (:func:`_is_textured`) or overlaps a view of an earlier run
    (or a non-neighbour of its own) by more than ``_MAX_OVERLAP``; at most ``_MAX_VIEWS_PER_PHOTO`` views
    per photo. Each photo draws from its own generator, so its views depend only on the seed and the photo.
    """
    out: dict[str, list[list[_View]]] = {}
    for idx, name in enumerate(PHOTO_NAMES):
        if name not in photos or name in _EXCLUDED:
            continue
        rng = np.random.default_rng([seed, 101, idx])
        gray = photos[name].convert("L")
        pw, ph = gray.size
        sizes = _view_sizes(gray.size, frame_size)
        kept: list[tuple[int, int, int, int]] = []
        runs: list[list[_View]] = []
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
                runs.append([_View(name, b) for b in run])
        out[name] = runs
    return out


# --------------------------------------------------------------------------------------------- jitter


@dataclass(frozen=True)
class _Jitter:
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


def _draw_jitter(rng: np.random.Generator) -> _Jitter:
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
    return _Jitter(dx, dy, zoom, angle, contrast, brightness, noise_sigma, noise_key, blur, quality)


def _frame_transform(
    photo_size: tuple[int, int], box: tuple[int, int, int, int], jit: _Jitter, frame_size: tuple[int, int]
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


def _render(photo: Image.Image, view: _View, jit: _Jitter, frame_size: tuple[int, int]) -> Image.Image:
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


def _jpeg(img: Image.Image, quality: int, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, **kw)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------- build

_YT_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _video_id(source: str, rng: np.random.Generator, nth_youtube: int) -> str:
    """A plausible id: numeric for vimeo, 11 chars of YouTube's alphabet otherwise.

    The first YouTube-style id is ``xxx_12-xxxx``: an ``_`` followed by digits, so a reader that splits the
    name on the *first* ``_`` gets a wrong id and timestamp; the second ends in ``_`` (``…_`` + ``_15400``).
    """
    if "vimeo" in source.lower():
        return str(int(rng.integers(10_000_000, 999_999_999)))
    chars = [_YT_ALPHABET[int(i)] for i in rng.integers(0, 62, size=11)]  # letters/digits only
    if nth_youtube == 0:
        chars[3], chars[4], chars[5], chars[6] = "_", "1", "2", "-"
    elif nth_youtube == 1:
        chars[10] = "_"
    elif rng.random() < 0.5:
        chars[int(rng.integers(1, 10))] = "-_"[int(rng.integers(0, 2))]
    return "".join(chars)


@dataclass
class _Video:
    source: str
    category: str
    video_id: str
    views: list[_View]
    # filled while planning frames: (rel_path, view, jitter, timestamp, special)
    frames: list[tuple[str, _View, _Jitter, int, str | None]] = field(default_factory=list)
    end_ms: int = 0


def build_sample_workdir(
    workdir: Path,
    *,
    seed: int = 0,
    categories: Sequence[str] = ("gym", "street", "kitchen"),
    sources: Sequence[str] = ("youtube", "vimeo"),
    videos_per_source: int = 4,
    scenes_per_video: int = 6,
    frames_per_scene: int = 5,
    frame_size: tuple[int, int] = (640, 360),
    bad_files: bool = True,
    low_texture: int = 0,
) -> SampleTruth:
    """Write a sample grabby workdir under ``workdir`` and return what it contains.

    Every ``(source, category)`` folder gets ``videos_per_source`` videos of ``scenes_per_video`` scenes of
    ``frames_per_scene`` frames (``frame_size`` is ``(width, height)``). The same ``seed`` writes the same
    names and bytes. ``workdir`` must be missing or empty: the builder never mixes its frames into a real
    (or older) workdir. Raises ``ValueError`` when the photos hold fewer distinct views than the sample
    needs (the defaults need 141 of them, the photos give about 175; see :func:`_plan_views` for what
    counts as distinct). When there are fewer frames than special kinds (a one-frame sample), some are left
    out. The defaults write 720 good frames of 143 scenes.

    ``low_texture`` > 0 adds the low-texture classes (:mod:`samantics_dagster.demo.lowtex`: gradients, skies,
    fades to black, lit walls, blurred objects, a low-texture pan), about ``low_texture`` scenes per class,
    filmed in one more video per folder with one cross-category repeat per class; ``scene_class`` of the
    truth says each scene's class.
    """
    workdir = Path(workdir)
    if not categories or not sources:
        raise ValueError("need at least one category and one source")
    if min(videos_per_source, scenes_per_video, frames_per_scene) < 1:
        raise ValueError("videos_per_source, scenes_per_video and frames_per_scene must be >= 1")
    if len(set(categories)) != len(categories) or len(set(sources)) != len(sources):
        raise ValueError("category and source names must be unique")
    if workdir.exists() and any(workdir.iterdir()):
        raise FileExistsError(f"{workdir} is not empty; a sample workdir is only built into an empty folder")

    rng = np.random.default_rng(seed)
    photos = load_photos()
    runs_by_photo = _plan_views(photos, frame_size, seed)
    have_stereo = all(n in photos for n in STEREO_NAMES)

    # Videos, ordered so that consecutive videos are in different categories.
    videos: list[_Video] = []
    used_ids: set[str] = set()
    nth_youtube = 0
    for _ in range(videos_per_source):
        for source in sources:
            for category in categories:
                while True:
                    vid = _video_id(source, rng, nth_youtube)
                    if vid not in used_ids:
                        break
                if "vimeo" not in source.lower():
                    nth_youtube += 1
                used_ids.add(vid)
                videos.append(_Video(source, category, vid, []))

    # Which video replays a scene of another (other category, and other source when there is one).
    recur: tuple[int, int] | None = None
    if len(categories) >= 2:
        a = 0
        cands = [
            i
            for i, v in enumerate(videos)
            if v.category != videos[a].category and (len(sources) < 2 or v.source != videos[a].source)
        ]
        recur = (a, cands[-1])

    # The stereo pair opens the second video; it needs a video with room for two scenes besides a
    # replayed one.
    stereo_video = 1 if len(videos) > 1 else 0
    spare = scenes_per_video - (1 if recur and recur[1] == stereo_video else 0)
    have_stereo = have_stereo and spare >= 2

    n_slots = len(videos) * scenes_per_video
    n_views = n_slots - (1 if recur else 0) - (2 if have_stereo else 0)
    # Views in runs (pans, tilts), photo by photo in random order, textures last: a video films a run
    # of views as consecutive scenes, so pans and other views of one photo land in one video.
    others = [p for p in sorted(runs_by_photo) if p not in TEXTURES]
    photo_order = [str(p) for p in rng.permutation(others)] + [p for p in TEXTURES if p in runs_by_photo]
    pool = [v for p in photo_order for run in runs_by_photo[p] for v in run]
    if len(pool) < n_views:
        raise ValueError(
            f"the sample needs {n_views} distinct views but the bundled photos give only {len(pool)}; "
            "lower videos_per_source, scenes_per_video or the number of categories/sources"
        )
    it = iter(pool)
    for i, v in enumerate(videos):
        if have_stereo and i == stereo_video:
            v.views.extend(_View(name, _stereo_box(photos[name], frame_size)) for name in STEREO_NAMES)
        n = scenes_per_video - len(v.views) - (1 if recur and i == recur[1] else 0)
        v.views.extend(next(it) for _ in range(n))
    recurring: _View | None = None
    if recur:
        recurring = videos[recur[0]].views[0]
        videos[recur[1]].views.append(recurring)  # the replaying video's last scene

    # Special frames: in different categories (round-robin), in the category's last video, on scenes
    # that do not recur; cmyk and grayscale as a scene's first frame (so they are the frame a deduper
    # keeps and later stages must read), the EXIF-rotated one mid-scene (a deduper that ignores the
    # orientation sees a new scene there).
    specials: dict[tuple[int, int, int], str] = {}
    by_category: dict[str, list[int]] = {}
    for i, v in enumerate(videos):
        by_category.setdefault(v.category, []).append(i)
    for k, (note, frame_idx) in enumerate((("cmyk", 0), ("grayscale", 0), ("exif-rotated", frames_per_scene // 2))):
        vi = by_category[categories[k % len(categories)]][-1]
        spots = [(vi, s, frame_idx) for s in range(scenes_per_video) if videos[vi].views[s] != recurring]
        spots += [(vi, s, f) for s in range(scenes_per_video) for f in range(frames_per_scene)]
        for spot in spots:
            if spot not in specials:
                specials[spot] = note
                break

    scene_class: dict[str, str] = {}
    if low_texture > 0:
        photos = _add_low_texture(videos, photos, frame_size, seed, low_texture, used_ids, scene_class)

    # Plan every frame (names, timestamps, jitter) before rendering, from one rng per video, so a frame's
    # bytes depend only on the seed and its place.
    for i, v in enumerate(videos):
        vrng = np.random.default_rng([seed, 1 + i])
        t = int(vrng.integers(0, 4000))
        for s, view in enumerate(v.views):
            if s:
                t += int(vrng.integers(2000, 9000))  # cut to the next scene
            for f in range(frames_per_scene):
                if f:
                    t += int(vrng.integers(200, 501))
                rel = f"{v.source}/{v.category}/{v.video_id}_{t}.jpg"
                v.frames.append((rel, view, _draw_jitter(vrng), t, specials.get((i, s, f))))
        v.end_ms = t

    def encode(item: tuple[str, _View, _Jitter, int, str | None]) -> bytes:
        _rel, view, jit, _t, note = item
        img = _render(photos[view.photo], view, jit, frame_size)
        if note == "cmyk":
            return _jpeg(img.convert("CMYK"), jit.quality)
        if note == "grayscale":
            return _jpeg(img.convert("L"), jit.quality)
        if note == "exif-rotated":
            exif = Image.Exif()
            exif[_EXIF_ORIENTATION] = 6  # "rotate 90° clockwise to view": pixels stored turned left
            return _jpeg(img.transpose(Image.Transpose.ROTATE_90), jit.quality, exif=exif.tobytes())
        return _jpeg(img, jit.quality)

    # Rendering is a pure function of each frame's plan, so threads (Pillow and numpy release the GIL)
    # change nothing in the bytes written.
    scene_of: dict[str, str] = {}
    special: dict[str, str] = {}
    items = [item for v in videos for item in v.frames]
    for v in videos:
        (workdir / v.source / v.category).mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool_ex:
        for (rel, view, _jit, _t, note), data in zip(items, pool_ex.map(encode, items)):
            (workdir / rel).write_bytes(data)
            scene_of[rel] = view.scene_id
            if note:
                special[rel] = note

    bad: dict[str, str] = {}
    if bad_files:
        bad = _write_bad_files(workdir, videos, photos, frame_size, np.random.default_rng([seed, 0]))
    return SampleTruth(scene_of=scene_of, bad_files=bad, special=special, scene_class=scene_class)


def _add_low_texture(videos: list[_Video], photos: dict[str, Image.Image], frame_size: tuple[int, int], seed: int,
                     per_class: int, used_ids: set[str], scene_class: dict[str, str]) -> dict[str, Image.Image]:
    """Append one low-texture video per folder (after the photo videos: the special and bad frames stay
    where they were); returns the photos with the class canvases added."""
    from samantics_dagster.demo.lowtex import assign_to_videos, plan_low_texture

    canvases, scenes = plan_low_texture(seed, frame_size, photos, per_class)
    folders: list[tuple[str, str]] = []
    for v in videos:
        if (v.source, v.category) not in folders:
            folders.append((v.source, v.category))
    rng = np.random.default_rng([seed, 917])
    for source, category, members in assign_to_videos(scenes, folders, seed):
        if not members:
            continue
        while (vid := _video_id(source, rng, 2)) in used_ids:
            pass
        used_ids.add(vid)
        views = [_View(m.canvas, m.box) for m in members]
        videos.append(_Video(source, category, vid, views))
        for m, view in zip(members, views):
            scene_class[view.scene_id] = m.cls
    return {**photos, **canvases}


def _stereo_box(photo: Image.Image, frame_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The largest centred frame-aspect box of a stereo view, at most the frame's width (same box for both
    views)."""
    fw, fh = frame_size
    pw, ph = photo.size
    w = int(min(pw, ph * fw / fh, fw))
    h = int(round(w * fh / fw))
    return ((pw - w) // 2, (ph - h) // 2, w, h)


def _write_bad_files(
    workdir: Path,
    videos: list[_Video],
    photos: dict[str, Image.Image],
    frame_size: tuple[int, int],
    rng: np.random.Generator,
) -> dict[str, str]:
    """Write the files a reader must reject, one per kind, spread round-robin over the folders.

    Files with a well-formed name use a real video id of their folder and a timestamp after that video's
    end (a grab that died half-way); their content, where there is any, is a jittered frame of that video,
    so a reader that skips validation would see a plausible duplicate, not noise.
    """
    folders: list[tuple[str, str]] = []
    for v in videos:
        if (v.source, v.category) not in folders:
            folders.append((v.source, v.category))
    first_video = {}
    for v in videos:
        first_video.setdefault((v.source, v.category), v)

    def frame_bytes(v: _Video) -> bytes:
        view = v.views[-1]
        jit = _draw_jitter(rng)
        return _jpeg(_render(photos[view.photo], view, jit, frame_size), jit.quality)

    bumps: dict[str, int] = {}

    def valid_name(v: _Video) -> str:
        bumps[v.video_id] = bumps.get(v.video_id, 0) + 1
        return f"{v.video_id}_{v.end_ms + 700 * bumps[v.video_id]}.jpg"

    def png_bytes(v: _Video) -> bytes:
        view = v.views[-1]
        img = _render(photos[view.photo], view, _draw_jitter(rng), frame_size)
        buf = io.BytesIO()
        img.save(buf, "PNG", compress_level=1)
        return buf.getvalue()

    kinds: list[tuple[str, object]] = [
        ("zero-byte", lambda v: (valid_name(v), b"")),
        ("truncated", lambda v: (valid_name(v), (lambda b: b[: len(b) // 2])(frame_bytes(v)))),
        ("png-named-jpg", lambda v: (valid_name(v), png_bytes(v))),
        ("text-named-jpg", lambda v: (valid_name(v), b"grabby: download failed (HTTP 403)\n")),
        ("bad-name", lambda v: ("notes.jpg", frame_bytes(v))),
        ("bad-name", lambda v: ("clip_final.jpg", frame_bytes(v))),
        ("space-in-name", lambda v: ("my video_1200.jpg", frame_bytes(v))),
        ("non-utf8-name", lambda v: (b"vid\xff_1300.jpg", frame_bytes(v))),
    ]
    out: dict[str, str] = {}
    for k, (what, make) in enumerate(kinds):
        source, category = folders[k % len(folders)]
        v = first_video[(source, category)]
        name, data = make(v)  # type: ignore[operator]
        folder = workdir / source / category
        if isinstance(name, bytes):
            target: bytes | Path = os.fsencode(folder) + b"/" + name
            rel = f"{source}/{category}/{os.fsdecode(name)}"
        else:
            target = folder / name
            rel = f"{source}/{category}/{name}"
        try:
            with open(target, "wb") as fh:
                fh.write(data)
        except (OSError, UnicodeError):
            # Some file systems (and macOS) refuse names that are not UTF-8: then there is no such file.
            continue
        out[rel] = what
    return out
