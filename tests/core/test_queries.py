import json
from pathlib import Path

import pytest

from samantics_dagster.core.dataset.spec import SpecError, load_spec
from samantics_dagster.core.label.queries import Query, QuerySet, load_queries, truncate_queries

CATEGORIES = [
    {"id": 1, "name": "person", "supercategory": "person",
     "keypoints": ["nose", "left_eye"], "skeleton": [[1, 2]]},
    {"id": 3, "name": "car", "supercategory": "vehicle"},
    {"id": 7, "name": "truck", "supercategory": "vehicle"},
    {"id": 8, "name": "bus", "supercategory": "vehicle"},
    {"id": 12, "name": "passenger", "supercategory": "person"},
]


def write_spec(tmp_path: Path, categories=CATEGORIES, **top) -> Path:
    path = tmp_path / "coco-spec.json"
    path.write_text(json.dumps({"categories": categories, **top}))
    return path


def write_yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sam-queries.yaml"
    path.write_text(text)
    return path


def texts(qs: QuerySet) -> dict[str, str]:
    return {q.category_name: q.text for q in qs.queries}


@pytest.fixture
def spec(tmp_path):
    return load_spec(write_spec(tmp_path))


def test_spec_keeps_ids_with_gaps_extra_info_and_licenses(tmp_path):
    spec = load_spec(write_spec(tmp_path, info={"year": 2025}, licenses=[{"id": 1, "name": "CC"}]))
    assert [c.id for c in spec.categories] == [1, 3, 7, 8, 12]
    person = spec.by_name()["person"]
    assert person.extra == {"keypoints": ["nose", "left_eye"], "skeleton": [[1, 2]]}
    assert spec.by_id()[7].name == "truck"
    assert spec.by_id()[3].extra == {}
    assert spec.info == {"year": 2025} and spec.licenses == [{"id": 1, "name": "CC"}]


@pytest.mark.parametrize("queries", [None, "missing", "", "# only a comment\n"])
def test_defaults_are_category_names(tmp_path, spec, queries):
    path = None if queries is None else tmp_path / "sam-queries.yaml"
    if queries not in (None, "missing"):
        write_yaml(tmp_path, queries)
    qs = load_queries(spec, path)
    assert [(q.category_id, q.category_name, q.text) for q in qs.queries] == [
        (1, "person", "person"), (3, "car", "car"), (7, "truck", "truck"), (8, "bus", "bus"),
        (12, "passenger", "passenger")]


def test_supercategory_all_and_category_precedence(tmp_path, spec):
    path = write_yaml(tmp_path, 'vehicle:\n  truck: "pickup truck"\n  _all: "road vehicle"\nperson:\n')
    assert texts(load_queries(spec, path)) == {
        "person": "person", "car": "road vehicle", "truck": "pickup truck", "bus": "road vehicle",
        "passenger": "passenger"}


def test_whitespace_in_query_is_normalised(tmp_path, spec):
    path = write_yaml(tmp_path, 'vehicle:\n  car: "  sports   car "\n')
    assert texts(load_queries(spec, path))["car"] == "sports car"


def test_derived_categories_get_no_query(tmp_path, spec):
    path = write_yaml(tmp_path, "person:\n  _all: human\n")
    qs = load_queries(spec, path, derived=["passenger"])
    assert texts(qs) == {"person": "human", "car": "car", "truck": "truck", "bus": "bus"}


def test_fingerprint_is_stable_and_follows_text(tmp_path, spec):
    base = load_queries(spec, None)
    assert base.fingerprint() == load_queries(spec, None).fingerprint()
    assert base.fingerprint() == QuerySet(tuple(reversed(base.queries))).fingerprint()
    assert len(base.fingerprint()) == 12 and int(base.fingerprint(), 16) >= 0
    changed = load_queries(spec, write_yaml(tmp_path, "vehicle:\n  car: automobile\n"))
    assert changed.fingerprint() != base.fingerprint()


def spec_error(tmp_path, body: str) -> str:
    path = tmp_path / "coco-spec.json"
    path.write_text(body)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


@pytest.mark.parametrize("body, fragments", [
    ('{"categories": [\n  {"id": 1,}\n]}', ["line 2", "invalid JSON", "fix the JSON syntax"]),
    ('{"info": {}}', ["categories", "no 'categories' list"]),
    ('[]', ["no 'categories' list"]),
    ('{"categories": [{"id": 1, "supercategory": "x"}]}', ["categories[0]", "has no 'name'", "add a 'name'"]),
    ('{"categories": [{"name": "car", "supercategory": "x"}]}', ["categories[0] ('car')", "has no 'id'"]),
    ('{"categories": [{"id": 1, "name": "car"}]}', ["'car'", "has no 'supercategory'"]),
    ('{"categories": [{"id": "1", "name": "car", "supercategory": "x"}]}', ["'car'", "'id' is '1'", "integer"]),
    ('{"categories": [{"id": true, "name": "car", "supercategory": "x"}]}', ["'id' is True", "integer"]),
    ('{"categories": [{"id": 1, "name": 5, "supercategory": "x"}]}', ["categories[0]", "'name' is 5"]),
    ('{"categories": [{"id": 1, "name": "car", "supercategory": null}]}', ["'supercategory' is None"]),
    ('{"categories": [{"id": 1, "name": "car", "supercategory": "v"}, {"id": 1, "name": "bus", "supercategory": "v"}]}',
     ["categories[1] ('bus')", "id 1 is also used by 'car'", "own id"]),
    ('{"categories": [{"id": 1, "name": "car", "supercategory": "v"}, {"id": 2, "name": "car", "supercategory": "v"}]}',
     ["categories[1] ('car')", "also used by id 1", "own name"]),
])
def test_spec_errors_name_file_entry_and_fix(tmp_path, body, fragments):
    message = spec_error(tmp_path, body)
    for fragment in fragments:
        assert fragment in message


def test_missing_spec_file(tmp_path):
    with pytest.raises(SpecError, match="coco-spec.json: file: not found"):
        load_spec(tmp_path / "coco-spec.json")


@pytest.mark.parametrize("text, fragments", [
    ("vehicle:\n  car: [a\n", ["line 3", "invalid YAML", "fix the YAML syntax"]),
    ("- car\n- truck\n", ["top level", "not a mapping"]),
    ("vehicles:\n  car: car\n", ["supercategory 'vehicles'", "not in coco-spec.json", "did you mean 'vehicle'"]),
    ("zzz:\n  car: car\n", ["supercategory 'zzz'", "one of 'person', 'vehicle'"]),
    ("vehicle: car\n", ["supercategory 'vehicle'", "not a mapping"]),
    ("vehicle:\n  truk: lorry\n", ["vehicle.truk", "unknown category", "did you mean 'truck'"]),
    ("person:\n  car: car\n", ["person.car", "belongs to supercategory 'vehicle'", "move the entry under 'vehicle'"]),
    ("vehicle:\n  car: [sedan, hatchback]\n", ["vehicle.car", "not a string", "one query text"]),
    ("vehicle:\n  car: 3\n", ["vehicle.car", "not a string"]),
    ('vehicle:\n  car: "  "\n', ["vehicle.car", "query text is empty"]),
    ("vehicle:\n  car:\n", ["vehicle.car", "query text is empty"]),
    ('vehicle:\n  _all: ""\n', ["vehicle._all", "query text is empty"]),
    ("person:\n  passenger: rider\n", ["person.passenger", "derived", "remove the entry"]),
])
def test_query_errors_name_file_entry_and_fix(tmp_path, spec, text, fragments):
    path = write_yaml(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_queries(spec, path, derived=["passenger"])
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_unknown_derived_category_names_spec(tmp_path, spec):
    with pytest.raises(SpecError, match=r"coco-spec.json: derived category 'pasenger'.*did you mean 'passenger'"):
        load_queries(spec, None, derived=["pasenger"])


def words(text: str) -> int:
    return len(text.split())


def test_truncation_word_by_word():
    qs = QuerySet((Query(1, "person", "person"),
                   Query(3, "car", "red sports car parked by the road")))
    short, warnings = truncate_queries(qs, words, max_tokens=3)
    assert [q.text for q in short.queries] == ["person", "red sports car"]
    assert short.queries[0] is qs.queries[0]
    assert len(warnings) == 1
    assert "'car'" in warnings[0] and "7 tokens" in warnings[0] and "'red sports car'" in warnings[0]
    assert short.fingerprint() != qs.fingerprint()


def test_truncation_leaves_fitting_queries_alone():
    qs = QuerySet((Query(1, "a", "one two three"),))
    assert truncate_queries(qs, words, max_tokens=3) == (qs, [])


def test_truncation_cuts_a_single_long_word():
    chars = len  # one token per character
    qs = QuerySet((Query(1, "x", "supercalifragilistic"),))
    short, warnings = truncate_queries(qs, chars, max_tokens=5)
    assert short.queries[0].text == "super" and len(warnings) == 1
