"""The category taxonomy: ``coco-spec.json``, a COCO file whose ``categories`` list is the dataset's classes.

Each entry has ``id`` (int; ids may have gaps and are kept as given, since labels and exported COCO refer to
them), ``name`` and ``supercategory``; any other keys (``keypoints``, ``skeleton``, ...) are carried through
untouched in ``CategorySpec.extra``. Top-level ``info`` and ``licenses`` are kept for the COCO export. Every
problem raises ``SpecError`` with one line naming the file, the entry and the fix: the file is hand-edited,
and the pipeline should stop before spending GPU time on a taxonomy it misreads. The SAM3 prompts built
from it live apart, in ``core.label.queries``.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

_REQUIRED = {"id": int, "name": str, "supercategory": str}


class SpecError(ValueError):
    """A problem in coco-spec.json or sam-queries.yaml; the message is one line: file, entry, fix."""


@dataclass(frozen=True)
class CategorySpec:
    id: int
    name: str
    supercategory: str
    extra: dict = field(default_factory=dict)  # keypoints, skeleton, ...: preserved for the COCO export


@dataclass(frozen=True)
class Spec:
    categories: tuple[CategorySpec, ...]
    info: dict = field(default_factory=dict)
    licenses: list = field(default_factory=list)
    path: Path | None = field(default=None, compare=False)  # only for error messages

    def by_name(self) -> dict[str, CategorySpec]:
        return {c.name: c for c in self.categories}

    def by_id(self) -> dict[int, CategorySpec]:
        return {c.id: c for c in self.categories}

    def supercategories(self) -> dict[str, list[str]]:
        """Category names per supercategory, in file order."""
        out: dict[str, list[str]] = {}
        for c in self.categories:
            out.setdefault(c.supercategory, []).append(c.name)
        return out


def spec_error(path: Path | str | None, entry: str, problem: str, fix: str) -> SpecError:
    where = f"{path}: " if path is not None else ""
    return SpecError(" ".join(f"{where}{entry}: {problem}; {fix}".split()))


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean ...?)' for close matches, else ' (one of ...)' so the fix is never a guess."""
    choices = sorted(choices)
    close = difflib.get_close_matches(word, choices, n=3)
    if close:
        return f" (did you mean {' or '.join(repr(c) for c in close)}?)"
    return f" (one of {', '.join(repr(c) for c in choices)})" if choices else ""


def load_spec(path: Path) -> Spec:
    """Read and validate coco-spec.json."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise spec_error(path, "file", "not found",
                         f"run `samantics init {path.parent}` for a starter, then edit its 'categories'") from None
    except json.JSONDecodeError as e:
        raise spec_error(path, f"line {e.lineno} column {e.colno}", f"invalid JSON ({e.msg})", "fix the JSON syntax") from None
    except UnicodeDecodeError:
        raise spec_error(path, "file", "not UTF-8 text", "save it as UTF-8 JSON") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("categories"), list):
        raise spec_error(path, "categories", "no 'categories' list at the top level",
                    'write a JSON object {"categories": [{"id": 1, "name": ..., "supercategory": ...}]}')
    info, licenses = raw.get("info", {}), raw.get("licenses", [])
    if not isinstance(info, dict):
        raise spec_error(path, "info", "is not an object", "make 'info' a JSON object or remove it")
    if not isinstance(licenses, list):
        raise spec_error(path, "licenses", "is not a list", "make 'licenses' a JSON list or remove it")

    cats: list[CategorySpec] = []
    ids: dict[int, str] = {}
    names: dict[str, int] = {}
    for i, entry in enumerate(raw["categories"]):
        label = f"categories[{i}]"
        if not isinstance(entry, dict):
            raise spec_error(path, label, "is not an object", 'write {"id": ..., "name": ..., "supercategory": ...}')
        if isinstance(entry.get("name"), str):
            label += f" ({entry['name']!r})"
        for key, typ in _REQUIRED.items():
            if key not in entry:
                raise spec_error(path, label, f"has no '{key}'", f"add a '{key}' ({typ.__name__})")
            value = entry[key]
            if not isinstance(value, typ) or isinstance(value, bool):
                raise spec_error(path, label, f"'{key}' is {value!r}, not {'an' if typ is int else 'a'} {typ.__name__}",
                            f"make '{key}' {'an integer' if typ is int else 'a string'}")
        cid, name = entry["id"], entry["name"]
        if not name.strip():
            raise spec_error(path, label, "'name' is empty", "give the category a name")
        if cid in ids:
            raise spec_error(path, label, f"id {cid} is also used by {ids[cid]!r}", "give each category its own id")
        if name in names:
            raise spec_error(path, label, f"name {name!r} is also used by id {names[name]}", "give each category its own name")
        ids[cid], names[name] = name, cid
        extra = {k: v for k, v in entry.items() if k not in _REQUIRED}
        cats.append(CategorySpec(cid, name, entry["supercategory"], extra))
    return Spec(tuple(cats), info, licenses, path)
