"""Label Studio's smart-tool clicks (``params.context.result`` of ``/predict``) as one SAM prompt in pixels.

What arrives, read from Label Studio 1.23's editor: a click with a smart ``KeyPointLabels`` tool is a
``keypointlabels`` region ``{"value": {"x", "y", "width", "keypointlabels": [label]}, "is_positive": bool,
"original_width", "original_height", "image_rotation", "from_name", "to_name"}`` (x and y in percent of the
image; Alt+click makes ``is_positive`` false); a smart ``RectangleLabels`` box is a ``rectanglelabels``
region with ``x, y, width, height`` in percent. The editor sends every smart region of the same type and
label as the one just drawn, oldest first, so the points of one label accumulate across clicks. As in the
SAM backends Label Studio ships, they all prompt one object: every point, and the most recent box.

Percent coordinates are turned into pixels of the image the backend actually read (not the
``original_width`` the editor reports), so a resized copy still lines up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

POINT, BOX = "keypointlabels", "rectanglelabels"


class PromptError(ValueError):
    """The request cannot become a prompt; the message says what was wrong and what to send instead."""


@dataclass
class Prompt:
    """One object's prompt in image pixels: points with labels (1 positive, 0 negative) and/or a box."""

    label: str
    to_name: str
    points: list[tuple[float, float]] = field(default_factory=list)
    point_labels: list[int] = field(default_factory=list)
    box: tuple[float, float, float, float] | None = None  # x1, y1, x2, y2

    @property
    def empty(self) -> bool:
        return not self.points and self.box is None


def _num(value: object, what: str) -> float:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise PromptError(f"{what} is {value!r}, not a number (Label Studio sends percent of the image)") from None
    if out != out:  # NaN
        raise PromptError(f"{what} is NaN")
    return out


def _label(region: dict, kind: str) -> str:
    labels = region.get("value", {}).get(kind) or region.get("value", {}).get("labels") or []
    if not labels:
        raise PromptError(f"a {kind} region carries no label: pick a label in the smart tool before clicking")
    return str(labels[0])


def parse_context(context: object, width: int, height: int) -> Prompt:
    """The prompt in ``context`` for an image of ``width`` x ``height`` pixels, or a :class:`PromptError`."""
    if not isinstance(context, dict) or not context.get("result"):
        raise PromptError("empty context: send the smart tool's regions as params.context.result (a click with a "
                          "smart KeyPointLabels or RectangleLabels tool does)")
    results = context["result"]
    if not isinstance(results, Sequence) or isinstance(results, (str, bytes)):
        raise PromptError(f"params.context.result must be a list of regions, not {type(results).__name__}")
    regions = [r for r in results if isinstance(r, dict) and r.get("type") in (POINT, BOX)]
    if not regions:
        kinds = sorted({str(r.get("type")) for r in results if isinstance(r, dict)})
        raise PromptError(f"no keypointlabels or rectanglelabels region in the context (got {kinds or 'none'}): "
                          "use the smart keypoint or rectangle tool")
    labels = {_label(r, r["type"]) for r in regions}
    if len(labels) > 1:
        raise PromptError(f"the context mixes labels {sorted(labels)}: one request prompts one object of one label")
    rotated = [r for r in regions if _num(r.get("image_rotation", 0) or 0, "image_rotation") % 360]
    if rotated:
        raise PromptError("the image is rotated in the editor: rotate it back to 0 degrees before clicking")
    prompt = Prompt(label=labels.pop(), to_name=str(regions[-1].get("to_name") or ""))
    for r in regions:
        v = r.get("value") or {}
        if r["type"] == POINT:
            x, y = _num(v.get("x"), "the point's x"), _num(v.get("y"), "the point's y")
            if not (0.0 <= x <= 100.0 and 0.0 <= y <= 100.0):
                raise PromptError(f"the point ({x:.2f}%, {y:.2f}%) is outside the image (0-100% on both axes)")
            prompt.points.append((min(x / 100.0 * width, width - 0.5), min(y / 100.0 * height, height - 0.5)))
            prompt.point_labels.append(0 if r.get("is_positive") is False else 1)
        else:
            x, y = _num(v.get("x"), "the box's x"), _num(v.get("y"), "the box's y")
            w, h = _num(v.get("width"), "the box's width"), _num(v.get("height"), "the box's height")
            if _num(v.get("rotation", 0) or 0, "the box's rotation") % 360:
                raise PromptError("the box is rotated: SAM takes axis-aligned boxes only")
            x1, x2 = sorted((x, x + w))
            y1, y2 = sorted((y, y + h))
            if x2 <= 0.0 or y2 <= 0.0 or x1 >= 100.0 or y1 >= 100.0:
                raise PromptError(f"the box ({x:.2f}%, {y:.2f}%, {w:.2f}% x {h:.2f}%) is outside the image")
            x1, y1, x2, y2 = (max(0.0, x1), max(0.0, y1), min(100.0, x2), min(100.0, y2))
            if x2 - x1 <= 0.0 or y2 - y1 <= 0.0:
                raise PromptError("the box has no area: drag a box, don't click")
            prompt.box = (x1 / 100.0 * width, y1 / 100.0 * height, x2 / 100.0 * width, y2 / 100.0 * height)
    if prompt.points and not any(prompt.point_labels) and prompt.box is None:
        raise PromptError("only negative points (Alt+click): add a positive click on the object first")
    return prompt
