"""Small previews of labelled frames (masks and boxes drawn) for the Dagster UI's metadata panel.

Dagster renders markdown metadata, including images given as data URIs, so a few thumbnails let a
person see at a glance whether the prompts find what they should; they are kept small (JPEG, 320 px)
because metadata is stored in the event log.
"""

from __future__ import annotations

import base64
import colorsys
import io

import numpy as np
from PIL import Image, ImageDraw

from samantics_dagster.core.label.masks import decode_rle


def _colour(category_id: int) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb((category_id * 0.618034) % 1.0, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def render_preview(image: Image.Image, instances: list[dict], names: dict[int, str], width: int = 320) -> bytes:
    """JPEG bytes of ``image`` with each instance's mask tinted and its box and class drawn."""
    canvas = np.asarray(image.convert("RGB"), dtype=np.float32).copy()
    for inst in instances:
        mask = decode_rle(inst["rle"])
        if mask.shape == canvas.shape[:2]:
            canvas[mask] = 0.5 * canvas[mask] + 0.5 * np.array(_colour(inst["category_id"]), dtype=np.float32)
    out = Image.fromarray(canvas.astype(np.uint8))
    scale = width / out.width
    out = out.resize((width, max(1, round(out.height * scale))), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(out)
    for inst in instances:
        x0, y0, x1, y1 = (v * scale for v in inst["bbox_xyxy"])
        colour = _colour(inst["category_id"])
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=2)
        draw.text((x0 + 2, y0 + 1), f"{names.get(inst['category_id'], inst['category_id'])} {inst['score']:.2f}", fill=colour)
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=80)
    return buf.getvalue()


def previews_markdown(previews: list[tuple[str, bytes]]) -> str:
    """Markdown with each (caption, JPEG bytes) as an inline image, as Dagster's docs show for plots."""
    parts = []
    for caption, data in previews:
        parts.append(f"**{caption}**\n\n![{caption}](data:image/jpeg;base64,{base64.b64encode(data).decode()})")
    return "\n\n".join(parts) if parts else "no labelled frames with detections"
