"""The sample's hardest classes: where even the low-texture signals were seen to fail on unseen footage.

Each scene is its own canvas (a frame plus a margin for the jitter), because what makes these classes hard
is attached to the *camera*, not the scene: a lens that darkens the corners (vignetting) lays the same
smooth gradient over every frame it films, so a 9x8 dhash of two different walls, or of two crops of one
texture, is the vignette's and agrees. Classes (``LowTexScene.cls``):

* ``vignette_wall``: evenly lit walls of muted colours (saturation 0.10-0.16, one brightness for all) whose
  hues are 60 degrees apart, filmed through a vignetting lens: to a person a sage wall and a grey-blue wall;
  to a colour thumbnail a difference of a few grey levels;
* ``dark_flat``: near-uniform dark frames (grey levels 18-40) in pairs of one tone: a faint glow in
  another place (>= 35% of the width apart), or the same darkness in another tint;
* ``offset_view``: textured views a small offset apart, under a vignette: adjacent crops of one texture
  (moved by 30-40% of the width) and a stereo pair (the background moved by 10-14% of the width, a textured
  object in front of it by twice that): distinct scenes, whose hashes are the vignette's;
* ``long_take``: walls and skies filmed for ``LONG_TAKE`` times as many frames as other scenes (a static
  camera): the removal figure of low-texture footage rests on these.

Pure numpy + Pillow; no Dagster imports.
"""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

HARD_CLASSES: tuple[str, ...] = ("vignette_wall", "dark_flat", "offset_view", "long_take")
#: Frames of a ``long_take`` scene, as a multiple of the sample's ``frames_per_scene``.
LONG_TAKE = 3
_MARGIN = 0.1  # canvas margin around the frame-sized view, per side, as a fraction of the frame


def _vignette(size: tuple[int, int], strength: float) -> np.ndarray:
    """A lens's fall-off: 1 at the centre, ``1 - strength`` in the corners (cos^4-like, radial)."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    return (1.0 - strength * r2 / 2.0)[..., None]


def _plaster(rng: np.random.Generator, size: tuple[int, int], amp: float) -> np.ndarray:
    w, h = size
    grid = rng.uniform(-amp, amp, size=(max(2, 30 * h // w), 30)).astype(np.float32)
    return np.asarray(Image.fromarray(grid, "F").resize((w, h), Image.Resampling.BICUBIC), np.float32)[..., None]


def _img(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "RGB")


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.asarray(colorsys.hsv_to_rgb(h % 1.0, s, v), np.float32) * 255.0


def _texture(photos: dict[str, Image.Image], name: str, size: tuple[int, int]) -> np.ndarray:
    """A photo texture mirror-tiled to ``size`` at its own scale (grains stay grains), contrast halved."""
    tex = np.asarray(photos[name].convert("RGB"), np.float32)
    w, h = size
    tile = np.concatenate([tex, tex[:, ::-1]], axis=1)
    tile = np.concatenate([tile, tile[::-1]], axis=0)
    reps = (-(-h // tile.shape[0]), -(-w // tile.shape[1]), 1)
    arr = np.tile(tile, reps)[:h, :w]
    return arr.mean() + 0.5 * (arr - arr.mean())


def plan_hard_cases(rng: np.random.Generator, frame_size: tuple[int, int], photos: dict[str, Image.Image],
                    n: int) -> list[tuple[str, str, Image.Image, tuple[int, int, int, int], str, int]]:
    """``(cls, canvas name, canvas, box, group, takes)`` per scene, about ``n`` scenes per class.

    ``group``: scenes of one group are hard negatives of each other; ``offset_view`` groups stay in one
    video in order (a camera moving sideways). ``takes``: the scene's frames as a multiple of the
    sample's ``frames_per_scene``."""
    fw, fh = frame_size
    mx, my = int(_MARGIN * fw), int(_MARGIN * fh)
    canvas = (fw + 2 * mx, fh + 2 * my)
    box = (mx, my, fw, fh)
    out: list[tuple[str, str, Image.Image, tuple[int, int, int, int], str, int]] = []

    # Vignetted walls: one saturation and brightness, hues 60 degrees apart from a random start.
    h0, s, v = float(rng.uniform(0, 1)), float(rng.uniform(0.10, 0.16)), float(rng.uniform(0.55, 0.75))
    for k in range(n):
        colour = _hsv(h0 + k / 6.0, s, v)
        arr = colour * _vignette(canvas, float(rng.uniform(0.3, 0.45))) + _plaster(rng, canvas, 1.5)
        out.append(("vignette_wall", f"hc-vwall-{k}", _img(arr), box, "hc-vwall", 1))

    # Dark near-uniform pairs: a glow moved >= 35% of the width; or one darkness in two tints.
    for k in range(max(1, n // 2)):
        level = float(rng.uniform(18, 40))
        if k % 2 == 0:
            xs = [float(rng.uniform(0.2, 0.3)), float(rng.uniform(0.65, 0.8))]
            for j, gx in enumerate(xs):
                base = np.full((canvas[1], canvas[0], 3), level, np.float32)
                yy, xx = np.mgrid[0:canvas[1], 0:canvas[0]].astype(np.float32)
                glow = np.exp(-(((xx - gx * canvas[0]) / (0.12 * canvas[0])) ** 2
                                + ((yy - 0.45 * canvas[1]) / (0.2 * canvas[1])) ** 2))[..., None]
                arr = base + float(rng.uniform(14, 20)) * glow * _vignette(canvas, 0.3) + _plaster(rng, canvas, 1.0)
                out.append(("dark_flat", f"hc-dark-{k}{'ab'[j]}", _img(arr), box, f"hc-dark-{k}", 1))
        else:
            hue = float(rng.uniform(0, 1))
            for j in range(2):
                colour = _hsv(hue + j / 3.0, 0.45, level / 255.0 * 1.2)
                arr = colour * _vignette(canvas, 0.35) + _plaster(rng, canvas, 1.0)
                out.append(("dark_flat", f"hc-dark-{k}{'ab'[j]}", _img(arr), box, f"hc-dark-{k}", 1))

    # Textured views a small offset apart, under one lens's vignette.
    textures = [t for t in ("gravel", "grass") if t in photos]
    if textures:
        name = textures[int(rng.integers(len(textures)))]
        n_adj = max(2, n // 2)
        step = [int(rng.uniform(0.30, 0.40) * fw) for _ in range(n_adj - 1)]
        wide = _texture(photos, name, (canvas[0] + sum(step), canvas[1]))
        vig = _vignette(canvas, float(rng.uniform(0.35, 0.5)))
        x = 0
        for k in range(n_adj):
            arr = wide[:, x : x + canvas[0]] * vig
            out.append(("offset_view", f"hc-adjacent-{k}", _img(arr), box, "hc-adjacent", 1))
            x += step[k] if k < len(step) else 0
        # A stereo pair: background moved by d, an object in front by 2d.
        other = textures[(textures.index(name) + 1) % len(textures)]
        d = int(rng.uniform(0.10, 0.14) * fw)
        back = _texture(photos, other, (canvas[0] + 2 * d, canvas[1]))
        front = _texture(photos, name, (canvas[0] // 3, canvas[1] // 2))[..., ::-1] * 0.8
        vig = _vignette(canvas, float(rng.uniform(0.35, 0.5)))
        ox, oy = canvas[0] // 3, canvas[1] // 4
        for j in range(2):
            arr = back[:, (1 - j) * d : (1 - j) * d + canvas[0]].copy()
            fx = ox + (1 - j) * 2 * d - d
            arr[oy : oy + front.shape[0], fx : fx + front.shape[1]] = front
            out.append(("offset_view", f"hc-stereo-{'lr'[j]}", _img(arr * vig), box, "hc-stereo", 1))

    # Long takes of walls and skies (no vignette): the removal figure.
    for k in range(n):
        if k % 2 == 0:
            colour = _hsv(float(rng.uniform(0, 1)), float(rng.uniform(0.2, 0.5)), float(rng.uniform(0.4, 0.85)))
            light = np.linspace(-8, 8, canvas[0], dtype=np.float32)[None, :, None] * float(rng.choice((-1.0, 1.0)))
            arr = colour + light + _plaster(rng, canvas, 2.0)
        else:
            top, bottom = _hsv(float(rng.uniform(0.55, 0.65)), 0.6, 0.55), _hsv(float(rng.uniform(0.55, 0.65)), 0.25, 0.9)
            t = np.linspace(0, 1, canvas[1], dtype=np.float32)[:, None, None]
            arr = top + t * (bottom - top) + _plaster(rng, canvas, 3.0)
            img = _img(arr)
            if rng.random() < 0.5:  # a bird or a wire: a thin dark line
                draw = ImageDraw.Draw(img)
                y = int(rng.uniform(0.2, 0.5) * canvas[1])
                draw.line([0, y, canvas[0], y + int(rng.integers(-20, 20))], fill=(40, 40, 50), width=2)
                img = img.filter(ImageFilter.GaussianBlur(0.6))
            out.append(("long_take", f"hc-long-{k}", img, box, f"hc-long-{k}", LONG_TAKE))
            continue
        out.append(("long_take", f"hc-long-{k}", _img(arr), box, f"hc-long-{k}", LONG_TAKE))
    return out
