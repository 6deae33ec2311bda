"""The SAM3 text queries built from the taxonomy (``sam-queries.yaml``; the taxonomy itself is ``core.dataset.spec``).

``coco-spec.json`` (read by ``core.dataset.spec``) is a COCO file whose ``categories`` list is the taxonomy: each entry has ``id`` (int; ids
may have gaps and are kept as given, since labels and exported COCO refer to them), ``name`` and
``supercategory``; any other keys (``keypoints``, ``skeleton``, ...) are carried through untouched in
``CategorySpec.extra``. Top-level ``info`` and ``licenses`` are kept for the COCO export.

``sam-queries.yaml`` overrides the text SAM3 is prompted with; the default query for a category is its name::

    # top level: supercategory names from coco-spec.json
    vehicle:
      _all: "vehicle"          # optional: query for every category of `vehicle` without its own entry
      truck: "pickup truck"    # category name -> query text (a string); wins over `_all`
    person:
      person: "person"

A category's entry may also be a mapping, to give its score threshold (what passes from the candidates
``sam3_labels`` keeps: applied when curating, so changing it relabels nothing) and alternative phrasings to
try (prompt trials)::

    vehicle:
      car: {query: "car", threshold: 0.45, alternatives: ["automobile", "passenger car"]}
    _threshold: 0.5            # top level: the threshold of every class without its own (default 0.5)
    _nms_iou: 0.5              # cross-prompt mask NMS: IoU above which the lower score goes (1: off)
    _max_detections: 100       # per image, highest scores first
    _relation_rules: true      # person inside car -> passenger (when the spec has `passenger`)

A missing or empty file, or a supercategory left empty, means the defaults. Categories named in ``derived``
are produced by relation rules from other labels (e.g. ``passenger`` from a ``person`` inside a ``car``);
they are never queried, so they get no query and may not be given one.

Every problem raises ``SpecError`` with one line naming the file, the entry and the fix, because these two
files are hand-edited and the pipeline should stop before spending GPU time on a taxonomy it misreads.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from samantics_dagster.core.dataset.spec import Spec, did_you_mean, spec_error
from samantics_dagster.core.label.candidates import DEFAULT_THRESHOLD, PASSENGER, Selection

ALL_KEY = "_all"
ENTRY_KEYS = ("query", "threshold", "alternatives")
SELECTION_KEYS = ("_threshold", "_nms_iou", "_max_detections", "_relation_rules")  # top-level, not supercategories


@dataclass(frozen=True)
class Query:
    category_id: int
    category_name: str
    text: str


@dataclass(frozen=True)
class QuerySet:
    queries: tuple[Query, ...]

    def fingerprint(self) -> str:
        """Short hex id of what SAM3 is asked, independent of order: labels are redone when it changes."""
        rows = sorted((q.category_id, q.category_name, q.text) for q in self.queries)
        return hashlib.sha1(json.dumps(rows, ensure_ascii=False).encode("utf-8")).hexdigest()[:12]


def _read_overrides(path: Path | None) -> dict:
    if path is None:
        return {}
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}" if mark is not None else "file"
        problem = getattr(e, "problem", None) or str(e)
        raise spec_error(path, where, f"invalid YAML ({problem})", "fix the YAML syntax") from None
    except UnicodeDecodeError:
        raise spec_error(path, "file", "not UTF-8 text", "save it as UTF-8 YAML") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise spec_error(path, "top level", f"is a {type(raw).__name__}, not a mapping",
                    "write 'supercategory: {category: query text}' entries")
    return raw


def _text(path: Path | None, entry: str, value: Any) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise spec_error(path, entry, f"is {type(value).__name__} {value!r}, not a string",
                    "give one query text per category, e.g. 'truck: \"pickup truck\"'")
    text = " ".join(value.split())
    if not text:
        raise spec_error(path, entry, "query text is empty", "write a text query or remove the entry to use the default")
    return text


def load_queries(spec: Spec, path: Path | None, *, derived: Iterable[str] = ()) -> QuerySet:
    """One query per non-derived category: category entry, else its supercategory's ``_all``, else its name."""
    derived = set(derived)
    by_name = spec.by_name()
    unknown = sorted(derived - by_name.keys())
    if unknown:
        raise spec_error(spec.path, f"derived category {unknown[0]!r}", "is not in the spec",
                    f"add it to coco-spec.json or drop it from the relation rules{did_you_mean(unknown[0], by_name)}")
    supers = spec.supercategories()
    raw = _read_overrides(path)

    overrides: dict[str, str] = {}
    for sup, body in raw.items():
        if sup in SELECTION_KEYS:
            continue
        if not isinstance(sup, str):
            raise spec_error(path, f"key {sup!r}", "is not a string", "quote the supercategory name")
        if sup not in supers:
            raise spec_error(path, f"supercategory {sup!r}", "is not in coco-spec.json",
                        f"use a supercategory from coco-spec.json{did_you_mean(sup, supers)}")
        if body is None:
            continue
        if not isinstance(body, dict):
            raise spec_error(path, f"supercategory {sup!r}", f"is a {type(body).__name__}, not a mapping",
                        "write 'category: query text' entries under it")
        all_text = _text(path, f"{sup}.{ALL_KEY}", body[ALL_KEY]) if ALL_KEY in body else None
        for name, value in body.items():
            entry = f"{sup}.{name}"
            if name == ALL_KEY:
                continue
            if not isinstance(name, str):
                raise spec_error(path, entry, "category key is not a string", "quote the category name")
            cat = by_name.get(name)
            if cat is None:
                raise spec_error(path, entry, "unknown category",
                            f"use a category of {sup!r} from coco-spec.json{did_you_mean(name, supers[sup])}")
            if cat.supercategory != sup:
                raise spec_error(path, entry, f"category {name!r} belongs to supercategory {cat.supercategory!r}",
                            f"move the entry under {cat.supercategory!r}")
            if name in derived:
                raise spec_error(path, entry, "is a derived category, made by a relation rule and never queried",
                            "remove the entry")
            if isinstance(value, dict):
                _check_entry(path, entry, value)
                if "query" in value:
                    overrides[name] = _text(path, f"{entry}.query", value["query"])
                continue
            overrides[name] = _text(path, entry, value)
        if all_text is not None:
            for name in supers[sup]:
                overrides.setdefault(name, all_text)

    return QuerySet(tuple(Query(c.id, c.name, overrides.get(c.name, c.name))
                          for c in spec.categories if c.name not in derived))


def _shorten(text: str, count_tokens: Callable[[str], int], max_tokens: int) -> str:
    words = text.split()
    while len(words) > 1 and count_tokens(" ".join(words)) > max_tokens:
        words.pop()
    short = " ".join(words)
    while len(short) > 1 and count_tokens(short) > max_tokens:  # one over-long word left: cut characters
        short = short[:-1]
    return short


def truncate_queries(qs: QuerySet, count_tokens: Callable[[str], int],
                     max_tokens: int = 30) -> tuple[QuerySet, list[str]]:
    """Shorten queries word by word to ``max_tokens`` tokens (``count_tokens`` excludes BOS/EOS).

    SAM3's processor pads text to 32 tokens including BOS/EOS and never truncates, so a longer prompt
    crashes the batch; cutting it here, with a warning per changed query, keeps labelling running and
    makes the cut visible (the fingerprint follows the text actually sent).
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    out, warnings = [], []
    for q in qs.queries:
        n = count_tokens(q.text)
        if n <= max_tokens:
            out.append(q)
            continue
        short = _shorten(q.text, count_tokens, max_tokens)
        out.append(Query(q.category_id, q.category_name, short))
        warnings.append(f"query for category {q.category_name!r} (id {q.category_id}) is {n} tokens, over "
                        f"{max_tokens}; shortened to {short!r}; put a shorter text in sam-queries.yaml")
    return QuerySet(tuple(out)), warnings


def _check_entry(path: Path | None, entry: str, value: dict) -> None:
    unknown = sorted(str(k) for k in value if k not in ENTRY_KEYS)
    if unknown:
        raise spec_error(path, entry, f"has unknown key {unknown[0]!r}",
                         f"use only {', '.join(ENTRY_KEYS)} (e.g. '{{query: \"car\", threshold: 0.45}}')")
    if "threshold" in value:
        _unit(path, f"{entry}.threshold", value["threshold"])
    alts = value.get("alternatives", [])
    if not isinstance(alts, list):
        raise spec_error(path, f"{entry}.alternatives", f"is a {type(alts).__name__}, not a list",
                         "write a list of query texts, e.g. ['automobile', 'passenger car']")
    for k, alt in enumerate(alts):
        _text(path, f"{entry}.alternatives[{k}]", alt)


def _unit(path: Path | None, entry: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise spec_error(path, entry, f"is {value!r}, not a number between 0 and 1", "give a score, e.g. 0.45")
    return float(value)


def _category_entries(spec: Spec, path: Path | None, derived: Iterable[str]) -> Iterator[tuple[str, dict]]:
    """(category name, its mapping entry) for the mapping entries, after ``load_queries`` validated the file."""
    load_queries(spec, path, derived=derived)
    for sup, body in _read_overrides(path).items():
        if sup in SELECTION_KEYS or not isinstance(body, dict):
            continue
        for name, value in body.items():
            if name != ALL_KEY and isinstance(value, dict):
                yield name, value


def load_selection(spec: Spec, path: Path | None, *, derived: Iterable[str] = ()) -> Selection:
    """What passes from the candidates, as ``sam-queries.yaml`` says (defaults where it is silent)."""
    derived = list(derived)
    raw = _read_overrides(path)
    default = _unit(path, "_threshold", raw["_threshold"]) if "_threshold" in raw else DEFAULT_THRESHOLD
    nms = _unit(path, "_nms_iou", raw["_nms_iou"]) if "_nms_iou" in raw else 0.5
    cap = raw.get("_max_detections", 100)
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        raise spec_error(path, "_max_detections", f"is {cap!r}, not a whole number >= 1", "give e.g. 100")
    rules = raw.get("_relation_rules", True)
    if not isinstance(rules, bool):
        raise spec_error(path, "_relation_rules", f"is {rules!r}, not true or false", "write true or false")
    by_name = spec.by_name()
    thresholds = {by_name[name].id: _unit(path, f"{name}.threshold", value["threshold"])
                  for name, value in _category_entries(spec, path, derived) if "threshold" in value}
    return Selection(default=default, thresholds=thresholds, nms_iou=None if nms >= 1 else nms,
                     max_detections=cap, relation_rules=(PASSENGER,) if rules else (),
                     name_to_id={c.name: c.id for c in spec.categories})


def load_alternatives(spec: Spec, path: Path | None, *, derived: Iterable[str] = ()) -> dict[str, list[str]]:
    """Category name -> the alternative phrasings listed for it (prompt trials); only categories that list some."""
    out: dict[str, list[str]] = {}
    for name, value in _category_entries(spec, path, derived):
        alts = [" ".join(a.split()) for a in value.get("alternatives", [])]
        if alts:
            out[name] = alts
    return out


def set_thresholds(text: str, spec: Spec, thresholds: Mapping[str, float]) -> str:
    """``sam-queries.yaml``'s text with the given categories' thresholds set (a string entry becomes a
    mapping that keeps its query). Comments are lost: the caller keeps the old file and prints the diff."""
    raw = yaml.safe_load(text) if text.strip() else {}
    raw = raw if isinstance(raw, dict) else {}
    by_name = spec.by_name()
    for name, value in sorted(thresholds.items()):
        sup = by_name[name].supercategory
        body = raw.get(sup)
        body = body if isinstance(body, dict) else {}
        entry = body.get(name)
        entry = dict(entry) if isinstance(entry, dict) else ({"query": entry} if isinstance(entry, str) else {})
        entry["threshold"] = round(float(value), 4)
        body[name] = entry
        raw[sup] = body
    return yaml.safe_dump(raw, sort_keys=False, allow_unicode=True, default_flow_style=None)

