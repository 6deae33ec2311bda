"""What the backend needs from a project's labeling config: which task field holds the image, and the
``PolygonLabels`` control a click's mask becomes a region of (its name and labels)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from samantics_dagster.core.review_backend.prompts import PromptError


@dataclass(frozen=True)
class Target:
    image_key: str  # the task's data field the <Image value="$..."> reads
    polygon_name: str  # the <PolygonLabels name>, the regions' from_name
    to_name: str  # the <Image name>, the regions' to_name
    labels: frozenset[str]


def polygon_target(label_config: str, to_name: str | None = None) -> Target:
    """The ``PolygonLabels`` control over the image ``to_name`` (the only image if None)."""
    try:
        root = ET.fromstring(label_config or "")
    except ET.ParseError as exc:
        raise PromptError(f"the project's labeling config is not XML ({exc}); /setup or /predict must send it") from None
    images = {el.get("name"): el.get("value", "") for el in root.iter() if el.tag.lower() == "image"}
    if not images:
        raise PromptError("the labeling config has no <Image> tag: this backend segments images")
    polygons = [el for el in root.iter() if el.tag.lower() == "polygonlabels"
                and (to_name is None or el.get("toName") == to_name)]
    if not polygons:
        raise PromptError(f"the labeling config has no <PolygonLabels> over image {to_name or ''!r}: the masks come "
                          "back as polygons, so the project needs one (the review projects have it)")
    el = polygons[0]
    image = el.get("toName", "")
    value = images.get(image, "")
    if not value.startswith("$"):
        raise PromptError(f"<Image name={image!r}> reads {value!r}, not a task field ($name)")
    labels = frozenset(str(lab.get("value")) for lab in el.iter() if lab.tag.lower() == "label" and lab.get("value"))
    return Target(image_key=value[1:], polygon_name=str(el.get("name")), to_name=image, labels=labels)
