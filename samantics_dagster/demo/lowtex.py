"""Low-texture scene classes for the sample workdir: the footage where perceptual hashes are coin tosses.

Why: a 9x8 dhash of a smooth frame (a sky, a lit wall, a colour gradient, a frame fading to black, a
blurred object on a flat background) is decided by gradients of a grey level or two, so two unrelated
smooth frames collide at distance <= 4 and a deduper that trusts the hash loses a scene. The sample
builder (:mod:`samantics_dagster.demo.sample`) films these classes like its photo scenes (the same
handheld jitter, noise, blur and JPEG qualities), so a deduper is scored per class, and each class is
*generated* from a seed (colours, angles, object shapes and places are drawn), so a deduper tuned on one
sample is tested on other draws of the same classes.

Each class gives canvases (synthetic "photos", RGB) and views (crop boxes) on them; every view is one
scene. Hard negatives are built in: two crops of one gradient about half overlapping, one blurred object
seen at places 30-40% of the frame width apart, pans over a low-texture landscape in steps of 25-35%.
Distinct scenes are distinct to a person by construction: colours come from well-separated palettes,
and crops of one canvas move along its gradient (``tests/core/test_sample.py`` checks it per seed).

Pure numpy + Pillow; no Dagster imports.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from samantics_dagster.demo.hardcases import HARD_CLASSES, plan_hard_cases

#: The classes, in the order the builder lays them out. ``photo`` (the ordinary scenes) is not one of them.
LOW_TEXTURE_CLASSES: tuple[str, ...] = ("gradient", "sky", "fade", "wall", "blurred_object", "lowtex_pan", *HARD_CLASSES)
#: Classes whose scenes of one group are filmed in one video, in order (a camera moving sideways).
_RUN_CLASSES = ("lowtex_pan", "offset_view")

#: Well-separated base colours (RGB): walls and gradient ends are drawn from these without repeats, so two
#: distinct flat scenes never share a colour a person could confuse.
_PALETTE: tuple[tuple[int, int, int], ...] = (
    (200, 60, 50), (60, 160, 70), (50, 80, 190), (220, 200, 70), (150, 70, 170), (60, 180, 190),
    (230, 140, 60), (120, 120, 120), (235, 235, 225), (40, 40, 45), (170, 110, 80), (110, 160, 230),
)
#: Sky palettes (zenith, horizon): night, day, dusk, overcast, dawn; one per sky scene.
_SKIES: tuple[tuple[tuple[int, int, int], tuple[int, int, int]], ...] = (
    ((8, 14, 48), (40, 70, 130)), ((40, 110, 200), (170, 205, 240)), ((60, 30, 90), (240, 140, 70)),
    ((120, 125, 135), (190, 192, 195)), ((20, 40, 90), (230, 180, 170)),
)


@dataclass(frozen=True)
class LowTexScene:
    """One scene of a class: a view (``box`` = x, y, w, h in canvas pixels) of a named canvas."""

    cls: str
    canvas: str
    box: tuple[int, int, int, int]
    group: str  # scenes of one group are hard negatives of each other (kept in different videos unless a pan)
    takes: int = 1  # frames of the scene, as a multiple of the sample's frames_per_scene


def _linear(size: tuple[int, int], c0, c1, angle: float) -> np.ndarray:
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = np.cos(angle) * xx / w + np.sin(angle) * yy / h
    t = (d - d.min()) / (d.max() - d.min())
    c0, c1 = np.asarray(c0, np.float32), np.asarray(c1, np.float32)
    return c0 + t[..., None] * (c1 - c0)


def _smooth_noise(rng: np.random.Generator, size: tuple[int, int], cells: int, amp: float) -> np.ndarray:
    """Low-frequency noise (clouds, uneven plaster): a coarse random grid upsampled bicubically."""
    w, h = size
    grid = rng.uniform(-amp, amp, size=(max(2, cells * h // w), cells)).astype(np.float32)
    return np.asarray(Image.fromarray(grid, "F").resize((w, h), Image.Resampling.BICUBIC), np.float32)


def _img(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "RGB")


def _gradient(rng, canvas, view, colours) -> Image.Image:
    c0, c1 = colours
    # Mostly along x (the direction its crops move in), never perpendicular to it.
    return _img(_linear(canvas, c0, c1, float(rng.uniform(-0.5, 0.5))))


def _sky(rng, canvas, palette, with_object: bool) -> Image.Image:
    zenith, horizon = palette
    arr = _linear(canvas, zenith, horizon, np.pi / 2) + _smooth_noise(rng, canvas, 6, 4.0)[..., None]
    img = _img(arr)
    if with_object:  # a thin tower and a thin rocket: a few pixels wide, as in the photos that were lost
        draw = ImageDraw.Draw(img)
        w, h = canvas
        tone = tuple(int(c * 0.5) for c in horizon)
        x = int(rng.uniform(0.3, 0.7) * w)
        draw.rectangle([x, int(h * rng.uniform(0.45, 0.7)), x + int(rng.integers(3, 7)), h], fill=tone)
        rx, ry = int(rng.uniform(0.3, 0.7) * w), int(rng.uniform(0.2, 0.4) * h)
        draw.line([rx, ry, rx + int(rng.integers(-10, 10)), ry + int(rng.integers(40, 90))], fill=(200, 200, 200), width=3)
    return img


def _wall(rng, canvas, colour) -> Image.Image:
    w, h = canvas
    light = _linear(canvas, (0, 0, 0), (1, 1, 1), float(rng.uniform(0, 2 * np.pi)))[..., :1] * 14.0 - 7.0
    arr = np.asarray(colour, np.float32) + light + _smooth_noise(rng, canvas, 40, 2.0)[..., None]
    return _img(arr)


def _blurred_object(rng, canvas, background: int, colour, strength: tuple[float, float] = (0.25, 0.4)) -> Image.Image:
    """A faint, blurred object on a grey background that brightens gently across the canvas (a lit studio
    wall): a normalised thumbnail of such a frame is mostly the ramp, the same wherever the view is."""
    w, h = canvas
    ramp = float(rng.uniform(12, 22))
    base = _linear(canvas, (background - ramp,) * 3, (background + ramp,) * 3, float(rng.uniform(-0.4, 0.4)))
    mask = Image.new("L", canvas, 0)
    draw = ImageDraw.Draw(mask)
    ow, oh = int(rng.uniform(0.08, 0.13) * w), int(rng.uniform(0.2, 0.35) * h)
    cx, cy = int(rng.uniform(0.4, 0.6) * w), int(rng.uniform(0.3, 0.7) * h)
    shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
    shape([cx - ow // 2, cy - oh // 2, cx + ow // 2, cy + oh // 2], fill=255)
    alpha = np.asarray(mask.filter(ImageFilter.GaussianBlur(float(rng.uniform(10, 18)))), np.float32)[..., None] / 255
    # A muted object, yet one a person sees: its colour sits >= 90 levels from the grey in some channel,
    # so the tint stands 22-40+ levels off the background.
    tint = base + float(rng.uniform(*strength)) * (np.asarray(colour, np.float32) - base)
    return _img(base * (1 - alpha) + tint * alpha)


def _landscape(rng, canvas, sky, ground) -> Image.Image:
    """A soft horizon under a smooth sky: what a slow pan over a field or a sea shows."""
    w, h = canvas
    arr = _linear(canvas, sky[0], sky[1], np.pi / 2)
    xs = np.arange(w, dtype=np.float32)
    horizon = h * (0.6 + 0.08 * np.sin(xs / w * 2 * np.pi * rng.uniform(1.0, 2.0) + rng.uniform(0, 6))
                   + 0.05 * np.sin(xs / w * 2 * np.pi * rng.uniform(3.0, 4.0)))
    yy = np.arange(h, dtype=np.float32)[:, None]
    below = np.clip((yy - horizon[None, :]) / 12.0, 0, 1)[..., None]
    arr = arr * (1 - below) + np.asarray(ground, np.float32) * below + _smooth_noise(rng, canvas, 8, 5.0)[..., None]
    return _img(np.asarray(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(3)),
                           np.float32))


def plan_low_texture(
    seed: int, frame_size: tuple[int, int], photos: dict[str, Image.Image], scenes_per_class: int = 4
) -> tuple[dict[str, Image.Image], list[LowTexScene]]:
    """Canvases (name -> RGB image) and the scenes of every class, drawn from ``seed``.

    ``photos`` provides the fades' pictures (dimmed to 12-30% of their brightness). Views are frame-sized
    (the frame neither zooms in nor out of the canvas). Per class ``scenes_per_class`` distinct scenes
    (a pan gives ``scenes_per_class - 1`` views of one landscape).
    """
    rng = np.random.default_rng([seed, 911])
    fw, fh = frame_size
    canvas = (2 * fw, 2 * fh)
    canvases: dict[str, Image.Image] = {}
    scenes: list[LowTexScene] = []
    colours = [tuple(c) for c in rng.permutation(np.array(_PALETTE))]
    n = scenes_per_class

    def add(cls: str, name: str, img: Image.Image, boxes: list[tuple[int, int, int, int]]) -> None:
        canvases[name] = img
        scenes.extend(LowTexScene(cls, name, b, name) for b in boxes)

    def centred(x: int | None = None) -> tuple[int, int, int, int]:
        x = (canvas[0] - fw) // 2 if x is None else x
        return (x, (canvas[1] - fh) // 2, fw, fh)

    # Gradients: the first gives two crops about half overlapping (a shift of 45-55% of the width).
    for k in range(max(1, n - 1)):
        c0 = colours[(2 * k) % len(colours)]
        if k == 0 and max(c0) - min(c0) < 30:
            # Two crops of a grey ramp differ only in brightness, which exposure changes too: not a new view.
            c0 = next(c for c in colours if max(c) - min(c) >= 30)
        far = [c for c in _PALETTE if sum(abs(a - b) for a, b in zip(c, c0)) >= 220]  # a visible span
        img = _gradient(rng, canvas, None, (c0, far[int(rng.integers(len(far)))]))
        if k == 0:
            step = int(rng.uniform(0.45, 0.55) * fw)
            x0 = int(rng.integers(0, canvas[0] - fw - step + 1))
            add("gradient", f"lt-gradient-{k}", img, [centred(x0), centred(x0 + step)])
        else:
            add("gradient", f"lt-gradient-{k}", img, [centred(int(rng.integers(0, canvas[0] - fw + 1)))])
    # Skies: distinct palettes; every other one with a thin tower and rocket.
    for k, pi in enumerate(rng.permutation(len(_SKIES))[:n]):
        add("sky", f"lt-sky-{k}", _sky(rng, canvas, _SKIES[int(pi)], with_object=k % 2 == 0), [centred()])
    # Fades to black: a photo dimmed to 12-30%, one per photo.
    names = sorted(p for p in photos if not p.startswith("motorcycle"))
    for k, pi in enumerate(rng.permutation(len(names))[:n]):
        photo = photos[names[int(pi)]].resize(canvas, Image.Resampling.BILINEAR)
        dim = float(rng.uniform(0.12, 0.3))
        add("fade", f"lt-fade-{k}", _img(np.asarray(photo, np.float32) * dim), [centred()])
    # Evenly lit walls: one palette colour each (after the gradients' colours).
    for k in range(n):
        add("wall", f"lt-wall-{k}", _wall(rng, canvas, colours[(2 * n + k) % len(colours)]), [centred()])
    # Blurred objects on flat grey: each seen from two places 30-40% of the width apart.
    greys = rng.permutation([95, 135, 175])
    for k in range(max(1, n // 2)):
        grey = int(greys[k % 3])
        vivid = [c for c in colours if max(abs(int(v) - grey) for v in c) >= 90]
        img = _blurred_object(rng, canvas, grey, vivid[(k + 5) % len(vivid)])
        step = int(rng.uniform(0.30, 0.40) * fw)
        x0 = (canvas[0] - fw - step) // 2
        add("blurred_object", f"lt-blob-{k}", img, [centred(x0), centred(x0 + step)])
    # A pan over a low-texture landscape: consecutive views 25-35% of the width apart.
    sky = _SKIES[int(rng.integers(len(_SKIES)))]
    img = _landscape(rng, canvas, sky, colours[int(rng.integers(len(colours)))])
    x, boxes = 0, []
    for _ in range(max(2, n - 1)):
        boxes.append(centred(x))
        x += int(np.ceil(rng.uniform(0.25, 0.35) * fw))
        if x + fw > canvas[0]:
            break
    add("lowtex_pan", "lt-pan-0", img, boxes)
    # The hard cases (``hardcases.py``) from a generator of their own: the classes above stay as they were.
    for cls, name, img, box, group, takes in plan_hard_cases(np.random.default_rng([seed, 919]), frame_size, photos, n):
        canvases[name] = img
        scenes.append(LowTexScene(cls, name, box, group, takes))
    return canvases, scenes


def assign_to_videos(
    scenes: list[LowTexScene], folders: list[tuple[str, str]], seed: int
) -> list[tuple[str, str, list[LowTexScene]]]:
    """Lay the scenes out in one new video per ``(source, category)`` folder, with cross-video repeats.

    A pan stays one run of one video (in order). The other views of one canvas (hard negatives) go to
    videos of other categories where there are any. Each class has one scene filmed again in a video of
    another category and source (the repeat a global deduper must remove), at the end of that video.
    """
    rng = np.random.default_rng([seed, 913])
    videos: list[tuple[str, str, list[LowTexScene]]] = [(s, c, []) for s, c in folders]
    groups: dict[str, list[LowTexScene]] = {}
    for sc in scenes:
        groups.setdefault(sc.group, []).append(sc)
    order = [str(g) for g in rng.permutation(sorted(groups))]
    home: dict[LowTexScene, int] = {}
    cursor = 0
    for g in order:
        members = groups[g]
        if members[0].cls in _RUN_CLASSES:
            vi = int(np.argmin([len(v[2]) for v in videos]))
            videos[vi][2].extend(members)
            home.update({m: vi for m in members})
            continue
        used_categories: set[str] = set()
        for m in members:
            for step in range(len(videos)):
                vi = (cursor + step) % len(videos)
                if videos[vi][1] not in used_categories or len(used_categories) >= len({c for _s, c in folders}):
                    break
            videos[vi][2].append(m)
            home[m] = vi
            used_categories.add(videos[vi][1])
            cursor = vi + 1
    for v in videos:  # shuffle scene order within a video, keeping a pan's views consecutive and in order
        runs: list[list[LowTexScene]] = []
        for sc in v[2]:
            if runs and sc.cls in _RUN_CLASSES and runs[-1][0].group == sc.group:
                runs[-1].append(sc)
            else:
                runs.append([sc])
        v[2][:] = [sc for i in rng.permutation(len(runs)) for sc in runs[int(i)]]
    for cls in LOW_TEXTURE_CLASSES:
        first = next((sc for sc in scenes if sc.cls == cls), None)
        if first is None:
            continue
        src, cat = videos[home[first]][0], videos[home[first]][1]
        others = [i for i, v in enumerate(videos) if v[1] != cat and (v[0] != src or len({s for s, _c in folders}) < 2)]
        if not others:
            others = [i for i in range(len(videos)) if i != home[first]]
        if others:
            target = min(others, key=lambda i: (len(videos[i][2]), i))
            videos[target][2].append(first)
    return videos
