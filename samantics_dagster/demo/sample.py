"""Build a sample grabby workdir from real photos, and score a deduper against its known truth.

Why it exists and what makes it hard (jitter, hard negatives, cross-category repeats, bad files):
``docs/sample-workdir.md``. Pure Python (numpy, Pillow, scikit-image); no Dagster imports.

This module plans the videos and writes the workdir; the parts it is built from live beside it and
every public name is importable from here: ``sample_truth`` (the truth and the dedupe score),
``sample_views`` (photos and the distinct views cut from them), ``sample_render`` (jitter, rendering).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from samantics_dagster.demo.sample_render import Jitter, draw_jitter, jpeg, render
from samantics_dagster.demo.sample_truth import DedupeScore, SampleTruth, scene_photo, score_by_class, score_dedupe
from samantics_dagster.demo.sample_views import PHOTO_NAMES as PHOTO_NAMES
from samantics_dagster.demo.sample_views import STEREO_NAMES, TEXTURES, View, load_photos, plan_views, stereo_box

__all__ = [
    "SampleTruth",
    "DedupeScore",
    "build_sample_workdir",
    "score_dedupe",
    "score_by_class",
    "load_photos",
    "scene_photo",
]

_EXIF_ORIENTATION = 0x0112
#: One planned frame: (rel_path, view, jitter, timestamp_ms, special kind or None).
_FramePlan = tuple[str, View, Jitter, int, str | None]


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
    views: list[View]
    frames: list[_FramePlan] = field(default_factory=list)
    end_ms: int = 0
    takes: list[int] = field(default_factory=list)  # per view: frames as a multiple of frames_per_scene


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
    needs (the defaults need 141 of them, the photos give about 175; see :func:`plan_views` for what
    counts as distinct). When there are fewer frames than special kinds (a one-frame sample), some are left
    out. The defaults write 720 good frames of 143 scenes.

    ``low_texture`` > 0 adds the low-texture classes (:mod:`samantics_dagster.demo.lowtex`: gradients, skies,
    fades to black, lit walls, blurred objects, a low-texture pan; and from :mod:`samantics_dagster.demo.hardcases`
    vignetted walls of muted colours, dark near-uniform pairs, textured views a small offset apart and long takes
    of walls and skies), about ``low_texture`` scenes per class,
    filmed in one more video per folder with one cross-category repeat per class; ``scene_class`` of the
    truth says each scene's class.
    """
    workdir = Path(workdir)
    _check_args(workdir, categories, sources, videos_per_source, scenes_per_video, frames_per_scene)
    rng = np.random.default_rng(seed)
    photos = load_photos()
    runs_by_photo = plan_views(photos, frame_size, seed)
    videos, used_ids = _make_videos(rng, sources, categories, videos_per_source)
    recur = _recur_pair(videos, categories, sources)
    recurring = _assign_views(videos, photos, runs_by_photo, rng, recur, scenes_per_video, frame_size)
    specials = _place_specials(videos, categories, scenes_per_video, frames_per_scene, recurring)
    scene_class: dict[str, str] = {}
    if low_texture > 0:
        photos = _add_low_texture(videos, photos, frame_size, seed, low_texture, used_ids, scene_class)
    _plan_frames(videos, seed, frames_per_scene, specials)
    scene_of, special = _write_frames(workdir, videos, photos, frame_size)
    bad: dict[str, str] = {}
    if bad_files:
        bad = _write_bad_files(workdir, videos, photos, frame_size, np.random.default_rng([seed, 0]))
    return SampleTruth(scene_of=scene_of, bad_files=bad, special=special, scene_class=scene_class)


def _check_args(workdir: Path, categories: Sequence[str], sources: Sequence[str], videos_per_source: int,
                scenes_per_video: int, frames_per_scene: int) -> None:
    """Refuse a sample that can't be built, or a workdir that holds files already, before writing anything."""
    if not categories or not sources:
        raise ValueError("need at least one category and one source")
    if min(videos_per_source, scenes_per_video, frames_per_scene) < 1:
        raise ValueError("videos_per_source, scenes_per_video and frames_per_scene must be >= 1")
    if len(set(categories)) != len(categories) or len(set(sources)) != len(sources):
        raise ValueError("category and source names must be unique")
    if workdir.exists() and any(workdir.iterdir()):
        raise FileExistsError(f"{workdir} is not empty; a sample workdir is only built into an empty folder")


def _make_videos(rng: np.random.Generator, sources: Sequence[str], categories: Sequence[str],
                 videos_per_source: int) -> tuple[list[_Video], set[str]]:
    """The videos (no views yet) and their ids, ordered so that consecutive videos are in different categories."""
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
    return videos, used_ids


def _recur_pair(videos: list[_Video], categories: Sequence[str], sources: Sequence[str]) -> tuple[int, int] | None:
    """Which video replays a scene of another (other category, and other source when there is one)."""
    if len(categories) < 2:
        return None
    a = 0
    cands = [
        i
        for i, v in enumerate(videos)
        if v.category != videos[a].category and (len(sources) < 2 or v.source != videos[a].source)
    ]
    return (a, cands[-1])


def _assign_views(videos: list[_Video], photos: dict[str, Image.Image], runs_by_photo: dict[str, list[list[View]]],
                  rng: np.random.Generator, recur: tuple[int, int] | None, scenes_per_video: int,
                  frame_size: tuple[int, int]) -> View | None:
    """Give every video its scenes (the stereo pair, runs of views, the replayed one); returns the replayed view."""
    # The stereo pair opens the second video; it needs a video with room for two scenes besides a
    # replayed one.
    stereo_video = 1 if len(videos) > 1 else 0
    spare = scenes_per_video - (1 if recur and recur[1] == stereo_video else 0)
    have_stereo = all(n in photos for n in STEREO_NAMES) and spare >= 2

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
            v.views.extend(View(name, stereo_box(photos[name], frame_size)) for name in STEREO_NAMES)
        n = scenes_per_video - len(v.views) - (1 if recur and i == recur[1] else 0)
        v.views.extend(next(it) for _ in range(n))
    recurring: View | None = None
    if recur:
        recurring = videos[recur[0]].views[0]
        videos[recur[1]].views.append(recurring)  # the replaying video's last scene
    return recurring


def _place_specials(videos: list[_Video], categories: Sequence[str], scenes_per_video: int, frames_per_scene: int,
                    recurring: View | None) -> dict[tuple[int, int, int], str]:
    """(video, scene, frame) -> special kind.

    In different categories (round-robin), in the category's last video, on scenes that do not recur;
    cmyk and grayscale as a scene's first frame (so they are the frame a deduper keeps and later stages
    must read), the EXIF-rotated one mid-scene (a deduper that ignores the orientation sees a new scene
    there)."""
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
    return specials


def _plan_frames(videos: list[_Video], seed: int, frames_per_scene: int,
                 specials: dict[tuple[int, int, int], str]) -> None:
    """Plan every frame (names, timestamps, jitter) before rendering, from one rng per video, so a frame's
    bytes depend only on the seed and its place."""
    for i, v in enumerate(videos):
        vrng = np.random.default_rng([seed, 1 + i])
        t = int(vrng.integers(0, 4000))
        for s, view in enumerate(v.views):
            if s:
                t += int(vrng.integers(2000, 9000))  # cut to the next scene
            for f in range(frames_per_scene * (v.takes[s] if s < len(v.takes) else 1)):
                if f:
                    t += int(vrng.integers(200, 501))
                rel = f"{v.source}/{v.category}/{v.video_id}_{t}.jpg"
                v.frames.append((rel, view, draw_jitter(vrng), t, specials.get((i, s, f))))
        v.end_ms = t


def _encode(item: _FramePlan, photos: dict[str, Image.Image], frame_size: tuple[int, int]) -> bytes:
    """One planned frame's file bytes (a pure function of the plan)."""
    _rel, view, jit, _t, note = item
    img = render(photos[view.photo], view, jit, frame_size)
    if note == "cmyk":
        return jpeg(img.convert("CMYK"), jit.quality)
    if note == "grayscale":
        return jpeg(img.convert("L"), jit.quality)
    if note == "exif-rotated":
        exif = Image.Exif()
        exif[_EXIF_ORIENTATION] = 6  # "rotate 90° clockwise to view": pixels stored turned left
        return jpeg(img.transpose(Image.Transpose.ROTATE_90), jit.quality, exif=exif.tobytes())
    return jpeg(img, jit.quality)


def _write_frames(workdir: Path, videos: list[_Video], photos: dict[str, Image.Image],
                  frame_size: tuple[int, int]) -> tuple[dict[str, str], dict[str, str]]:
    """Render and write every planned frame; returns (rel_path -> scene id, rel_path -> special kind).

    Rendering is a pure function of each frame's plan, so threads (Pillow and numpy release the GIL)
    change nothing in the bytes written."""
    scene_of: dict[str, str] = {}
    special: dict[str, str] = {}
    items = [item for v in videos for item in v.frames]
    for v in videos:
        (workdir / v.source / v.category).mkdir(parents=True, exist_ok=True)
    encode = partial(_encode, photos=photos, frame_size=frame_size)
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool_ex:
        for (rel, view, _jit, _t, note), data in zip(items, pool_ex.map(encode, items)):
            (workdir / rel).write_bytes(data)
            scene_of[rel] = view.scene_id
            if note:
                special[rel] = note
    return scene_of, special


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
        views = [View(m.canvas, m.box) for m in members]
        videos.append(_Video(source, category, vid, views, takes=[m.takes for m in members]))
        for m, view in zip(members, views):
            scene_class[view.scene_id] = m.cls
    return {**photos, **canvases}


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
    first_video: dict[tuple[str, str], _Video] = {}
    for v in videos:
        first_video.setdefault((v.source, v.category), v)

    def frame_bytes(v: _Video) -> bytes:
        view = v.views[-1]
        jit = draw_jitter(rng)
        return jpeg(render(photos[view.photo], view, jit, frame_size), jit.quality)

    bumps: dict[str, int] = {}

    def valid_name(v: _Video) -> str:
        bumps[v.video_id] = bumps.get(v.video_id, 0) + 1
        return f"{v.video_id}_{v.end_ms + 700 * bumps[v.video_id]}.jpg"

    def png_bytes(v: _Video) -> bytes:
        view = v.views[-1]
        img = render(photos[view.photo], view, draw_jitter(rng), frame_size)
        buf = io.BytesIO()
        img.save(buf, "PNG", compress_level=1)
        return buf.getvalue()

    kinds: list[tuple[str, Callable[[_Video], tuple[str | bytes, bytes]]]] = [
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
        name, data = make(v)
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
