"""Build a sample grabby workdir from real photos, and score a deduper against its known truth.

Why this exists: the pipeline's input is a folder of frames that grabby scraped from videos, and nobody
can ship real scraped video frames with the project. ``samantics demo`` and the tests instead *film*
fake videos over the photos that scikit-image bundles in its wheel (no download needed): each video is a
sequence of scenes, each scene a short run of jittered near-duplicate frames, exactly the redundancy the
deduper exists to remove. Because the builder knows which frame shows which scene, dedupe quality is a
number (``score_dedupe``) instead of an impression.

The sample is built to be hard in the ways real scrapes are hard:

* near-duplicates are not byte-identical: every frame moves a few pixels, zooms a little, changes
  brightness/contrast, carries fresh noise and its own JPEG quality;
* distinct scenes can look alike (*hard negatives*): other crops of the same photo in the same video
  (a pan that moves the view by half its width per scene), and the two views of a stereo pair;
* one scene recurs in a video of another category and another source, so only a *global* deduper keeps
  it once;
* the folder holds files a careless reader trips on: empty, truncated, PNG or text data named ``.jpg``,
  names off the ``{video_id}_{timestamp_ms}.jpg`` pattern, a name with a space, a name that is not UTF-8;
* some good frames are unusual but must decode: a CMYK JPEG, a grayscale JPEG, and a frame whose pixels
  are stored rotated with an EXIF Orientation tag.

Layout written: ``{workdir}/{source}/{category}/{video_id}_{timestamp_ms}.jpg``. Video ids may contain
``_`` and ``-``; the name splits on the *last* ``_``. Timestamps start below and run past 10000 ms, so
lexicographic and numeric order of names differ.

Scene ids name the view they show: ``{photo}@{x},{y}+{w}x{h}`` (the crop box in the photo's pixels), so
hard negatives are recognisable (same photo, different box) when a score looks wrong.

Pure Python (numpy, Pillow, scikit-image); no Dagster imports.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path, PurePath
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

__all__ = [
    "SampleTruth",
    "DedupeScore",
    "build_sample_workdir",
    "score_dedupe",
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

_TRUTH_VERSION = 1
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
        }
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=True) + "\n", encoding="ascii")
        os.replace(tmp, path)

    @classmethod
    def from_json(cls, path: Path) -> "SampleTruth":
        """Read a truth written by :meth:`to_json`."""
        doc = json.loads(Path(path).read_text(encoding="ascii"))
        if doc.get("version") != _TRUTH_VERSION:
            raise ValueError(f"{path}: unsupported sample truth version {doc.get('version')!r}")
        return cls(
            scene_of=dict(doc["scene_of"]),
            bad_files=dict(doc["bad_files"]),
            special=dict(doc.get("special", {})),
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
    """Intersection area over the smaller box's area.

    Two views of one photo are distinct scenes only if this is at most 0.6: a same-size view then has
    moved by at least 40% of its width or height (a pan), and a small view lies mostly outside a big one
    (not a mere zoom-in, which a geometric matcher may rightly call the same scene).
    """
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = min(ax + aw, bx + bw) - max(ax, bx)
    ih = min(ay + ah, by + bh) - max(ay, by)
    if iw <= 0 or ih <= 0:
        return 0.0
    return (iw * ih) / min(aw * ah, bw * bh)


_MAX_OVERLAP = 0.6


def _dhash_bits(gray: Image.Image, box: tuple[float, float, float, float]) -> np.ndarray:
    """The 64-bit difference hash of a box of a grayscale photo (9x8 Lanczos thumbnail, as imagehash does)."""
    thumb = np.asarray(gray.resize((9, 8), Image.Resampling.LANCZOS, box=box, reducing_gap=3.0), dtype=np.float32)
    return (thumb[:, 1:] > thumb[:, :-1]).ravel()


def _is_stable(gray: Image.Image, box: tuple[int, int, int, int], frame_w: int) -> bool:
    """Whether a view has coarse structure that survives the frame jitter.

    A flat view (the rocket's sky, the moon's mare, the retina's black border, the Hubble field whose
    stars vanish in a thumbnail) has a coarse thumbnail whose neighbouring pixels nearly tie, so any
    perceptual hash flips bits under a 4-pixel shift: its own frames would look like different scenes and
    the truth would be unfair to every deduper. The test is direct: the dhash of the view moved by the
    largest jitter (4 output pixels each way, 2% zoom) stays within 5 bits, and the view is not flat.
    """
    x, y, w, h = box
    base = _dhash_bits(gray, (x, y, x + w, y + h))
    extremes = [(dx, dy, 1.0) for dx in (-4.0, 4.0) for dy in (-4.0, 4.0)] + [(0.0, 0.0, 1.02)]
    for dx, dy, zoom in extremes:
        moved = _jittered_box(gray.size, box, dx, dy, zoom, frame_w)
        if int(np.count_nonzero(_dhash_bits(gray, moved) != base)) > _MAX_JITTER_BITS:
            return False
    small = np.asarray(gray.resize((32, 18), Image.Resampling.BOX, box=(x, y, x + w, y + h)), dtype=np.float32)
    return float(small.std()) >= 20.0


_MAX_JITTER_BITS = 5
#: Narrowest view, in photo pixels (a 640-wide frame then upscales it at most 3.2x). Absolute, so the
#: same seed cuts the same scenes at any frame size of one aspect ratio.
_MIN_VIEW_WIDTH = 200
#: View widths as fractions of the widest frame-aspect box of a photo, tried in this order. Mid-size
#: views (upscaled at most 3x) leave room for several distinct views per photo; full-photo views would
#: each block every other view of their photo.
_VIEW_SCALES: tuple[float, ...] = (0.56, 0.42)
#: Most views one photo gives, so videos are not all cut from the photo with the most structure.
_MAX_VIEWS_PER_PHOTO = 8
#: Texture photos: every crop looks alike to a person, so they are used last, only when needed.
TEXTURES: tuple[str, ...] = ("brick", "grass", "gravel")
#: Photos tried, in order, for the guaranteed pan (a row of three views, each moved by half its width).
PAN_PHOTOS: tuple[str, ...] = ("coffee", "rocket", "astronaut", "immunohistochemistry", "camera")


def _pan_boxes(gray: Image.Image, frame_size: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """Three same-size views in one row, each moved by half its width, or [] when the photo can't pan."""
    fw, fh = frame_size
    pw, ph = gray.size
    w = pw // 2
    h = int(round(w * fh / fw))
    if w < _MIN_VIEW_WIDTH or h > ph:
        return []
    for y in sorted({(ph - h) // 2, 0, ph - h, (ph - h) // 4, 3 * (ph - h) // 4}, key=lambda v: abs(v - (ph - h) / 2)):
        boxes = [(x, y, w, h) for x in (0, w // 2, pw - w)]
        if all(_is_stable(gray, b, fw) for b in boxes):
            return boxes
    return []


def _plan_views(
    photos: dict[str, Image.Image], frame_size: tuple[int, int], rng: np.random.Generator
) -> tuple[dict[str, list[_View]], str | None]:
    """Distinct, stable views of each photo (stereo excluded), and the photo that pans (or None).

    Each photo's views are listed pan first, the rest in reading order.

    Candidates are frame-aspect boxes at ``_VIEW_SCALES`` on a grid, tried larger scale first (random order
    within a scale), and kept when stable (:func:`_is_stable`) and overlapping every kept view of that
    photo by at most 60% (:func:`_overlap_of_smaller`), up to ``_MAX_VIEWS_PER_PHOTO``. The first photo
    of ``PAN_PHOTOS`` that can pan starts with three views in a row, each moved by half its width, so one
    video surely pans. Views are at least ``_MIN_VIEW_WIDTH`` photo pixels wide, so none is mush.
    """
    fw, fh = frame_size
    aspect = fw / fh
    min_w = _MIN_VIEW_WIDTH
    out: dict[str, list[_View]] = {}
    pan_photo: str | None = None
    for name in [n for n in PAN_PHOTOS if n in photos] + sorted(n for n in photos if n not in PAN_PHOTOS):
        if name in STEREO_NAMES:
            continue
        img = photos[name]
        gray = img.convert("L")
        pw, ph = img.size
        max_w = min(pw, ph * aspect)
        kept: list[tuple[int, int, int, int]] = []
        if pan_photo is None:
            kept = _pan_boxes(gray, frame_size)
            pan_photo = name if kept else None
        pan_len = len(kept)
        for frac in _VIEW_SCALES:
            w = int(max_w * frac)
            h = int(round(w / aspect))
            if w < min_w or h > ph or w > pw:
                continue
            xs = np.unique(np.linspace(0, pw - w, num=max(1, int(4 * (pw - w) / w) + 1)).astype(int))
            ys = np.unique(np.linspace(0, ph - h, num=max(1, int(4 * (ph - h) / h) + 1)).astype(int))
            candidates = [(int(x), int(y), w, h) for y in ys for x in xs]
            for i in rng.permutation(len(candidates)):
                box = candidates[i]
                if len(kept) >= max(_MAX_VIEWS_PER_PHOTO, pan_len):
                    break
                if all(_overlap_of_smaller(box, k) <= _MAX_OVERLAP for k in kept) and _is_stable(gray, box, fw):
                    kept.append(box)
        rest = sorted(kept[pan_len:], key=lambda b: (b[1], b[0], -b[2]))
        out[name] = [_View(name, b) for b in kept[:pan_len] + rest]
    return out, pan_photo


# --------------------------------------------------------------------------------------------- jitter


@dataclass(frozen=True)
class _Jitter:
    """How one frame differs from the view: drawn up front so rendering is a pure function."""

    dx: float  # output pixels
    dy: float
    zoom: float  # >= 1: zoom in, never out, so the box stays inside the photo
    contrast: float
    brightness: float
    noise_sigma: float
    noise_seed: int
    quality: int


def _draw_jitter(rng: np.random.Generator) -> _Jitter:
    def shift() -> float:
        return float(rng.uniform(1.0, 4.0) * rng.choice((-1.0, 1.0)))

    return _Jitter(
        dx=shift(),
        dy=shift(),
        zoom=float(rng.uniform(1.0, 1.02)),
        contrast=float(rng.uniform(0.95, 1.05)),
        brightness=float(rng.uniform(-8.0, 8.0)),
        noise_sigma=float(rng.uniform(1.0, 3.0)),
        noise_seed=int(rng.integers(0, 2**63 - 1)),
        quality=int(rng.integers(75, 96)),
    )


def _jittered_box(
    photo_size: tuple[int, int], box: tuple[int, int, int, int], dx: float, dy: float, zoom: float, frame_w: int
) -> tuple[float, float, float, float]:
    """The photo box (x0, y0, x1, y1) a frame shows: ``box`` moved by (dx, dy) *output* pixels and zoomed
    in by ``zoom``, pushed back inside the photo where it would leave it (then that side moves less)."""
    pw, ph = photo_size
    x, y, w, h = box
    cw, ch = w / zoom, h / zoom
    scale = w / frame_w  # photo pixels per output pixel
    cx = x + w / 2 + dx * scale
    cy = y + h / 2 + dy * scale
    x0 = min(max(cx - cw / 2, 0.0), pw - cw)
    y0 = min(max(cy - ch / 2, 0.0), ph - ch)
    return (x0, y0, x0 + cw, y0 + ch)


def _render(photo: Image.Image, view: _View, jit: _Jitter, frame_size: tuple[int, int]) -> Image.Image:
    """One RGB frame of a view: the crop moved, zoomed, relit and noised as ``jit`` says."""
    crop = _jittered_box(photo.size, view.box, jit.dx, jit.dy, jit.zoom, frame_size[0])
    img = photo.resize(frame_size, Image.Resampling.BICUBIC, box=crop)
    arr = np.asarray(img, dtype=np.float32)
    arr = (arr - 128.0) * jit.contrast + 128.0 + jit.brightness
    noise = np.random.default_rng(jit.noise_seed).standard_normal(arr.shape, dtype=np.float32)
    arr += noise * jit.noise_sigma
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")


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
    videos_per_source: int = 3,
    scenes_per_video: int = 4,
    frames_per_scene: int = 5,
    frame_size: tuple[int, int] = (640, 360),
    bad_files: bool = True,
) -> SampleTruth:
    """Write a sample grabby workdir under ``workdir`` and return what it contains.

    Every ``(source, category)`` folder gets ``videos_per_source`` videos of ``scenes_per_video`` scenes of
    ``frames_per_scene`` frames (``frame_size`` is ``(width, height)``). The same ``seed`` writes the same
    names and bytes. ``workdir`` must be missing or empty: the builder never mixes its frames into a real
    (or older) workdir. Raises ``ValueError`` when the photos hold fewer distinct views than the sample
    needs (the defaults need 69 of them, the photos give 104; see :func:`_plan_views` for what counts as
    distinct). When there are fewer frames than special kinds (a one-frame sample), some are left out.
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
    by_photo, pan_photo = _plan_views(photos, frame_size, rng)
    have_stereo = all(n in photos for n in STEREO_NAMES)

    # Videos, ordered so that consecutive videos are in different categories.
    videos: list[_Video] = []
    used_ids: set[str] = set()
    nth_youtube = 0
    for vidx in range(videos_per_source):
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

    # The stereo pair goes into the second video (so the first, the pan video, stays a pan); it needs a
    # video with room for two scenes besides a replayed one.
    stereo_video = 1 if len(videos) > 1 else 0
    spare = scenes_per_video - (1 if recur and recur[1] == stereo_video else 0)
    have_stereo = have_stereo and spare >= 2

    n_slots = len(videos) * scenes_per_video
    n_views = n_slots - (1 if recur else 0) - (2 if have_stereo else 0)
    # The pan photo goes first so its pan lands in the first video; textures go last.
    others = [p for p in sorted(by_photo) if p != pan_photo and p not in TEXTURES]
    photo_order = ([pan_photo] if pan_photo else []) + [str(p) for p in rng.permutation(others)]
    photo_order += [p for p in TEXTURES if p in by_photo]
    pool = [v for p in photo_order for v in by_photo[p]]
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

    scene_of: dict[str, str] = {}
    special: dict[str, str] = {}
    for v in videos:
        (workdir / v.source / v.category).mkdir(parents=True, exist_ok=True)
        for rel, view, jit, _t, note in v.frames:
            img = _render(photos[view.photo], view, jit, frame_size)
            if note == "cmyk":
                data = _jpeg(img.convert("CMYK"), jit.quality)
            elif note == "grayscale":
                data = _jpeg(img.convert("L"), jit.quality)
            elif note == "exif-rotated":
                exif = Image.Exif()
                exif[_EXIF_ORIENTATION] = 6  # "rotate 90° clockwise to view": pixels stored turned left
                data = _jpeg(img.transpose(Image.Transpose.ROTATE_90), jit.quality, exif=exif.tobytes())
            else:
                data = _jpeg(img, jit.quality)
            (workdir / rel).write_bytes(data)
            scene_of[rel] = view.scene_id
            if note:
                special[rel] = note

    bad: dict[str, str] = {}
    if bad_files:
        bad = _write_bad_files(workdir, videos, photos, frame_size, np.random.default_rng([seed, 0]))
    return SampleTruth(scene_of=scene_of, bad_files=bad, special=special)


def _stereo_box(photo: Image.Image, frame_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The largest centred frame-aspect box of a stereo view (same box for both views)."""
    fw, fh = frame_size
    pw, ph = photo.size
    w = int(min(pw, ph * fw / fh))
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
