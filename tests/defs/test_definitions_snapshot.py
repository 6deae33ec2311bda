"""The code location's names, compared with a committed snapshot (``definitions_snapshot.json``).

Asset keys, partitions, jobs, schedules, sensors and check names are what other tools rely on: run
configs, backfill scripts, the UI's bookmarks, sensors' cursors and run keys, and ``docs/design.md``'s
list of names. A change to any of them must be deliberate, so this test fails on any difference
and says how to refresh the snapshot:

    SAMANTICS_UPDATE_SNAPSHOT=1 .venv/bin/python -m pytest -q tests/defs/test_definitions_snapshot.py

then review ``git diff tests/defs/definitions_snapshot.json`` like any other change.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SNAPSHOT = Path(__file__).with_name("definitions_snapshot.json")
REFRESH = "SAMANTICS_UPDATE_SNAPSHOT=1 .venv/bin/python -m pytest -q tests/defs/test_definitions_snapshot.py"


def _condition(cond: Any) -> dict[str, str] | None:
    """An automation condition as its label and its operator tree (what the automation sensor evaluates)."""
    if cond is None:
        return None

    def tree(c: Any) -> str:
        kids = list(getattr(c, "children", []))
        return c.name + (f"({', '.join(tree(k) for k in kids)})" if kids else "")

    return {"label": cond.get_label() or "", "tree": tree(cond)}


def _partitions(pdef: Any) -> str | None:
    if pdef is None:
        return None
    name = getattr(pdef, "name", None)
    return f"{type(pdef).__name__}:{name}" if name else type(pdef).__name__


def definitions_snapshot(defs: Any) -> dict[str, Any]:
    """Every name of ``defs`` that another tool could depend on, as plain sorted JSON data."""
    from dagster import AutomationConditionSensorDefinition

    graph = defs.resolve_asset_graph()
    repo = defs.get_repository_def()
    checks: dict[str, dict[str, bool]] = {}
    for check_key in graph.asset_check_keys:
        spec = graph.get_check_spec(check_key)
        checks.setdefault(check_key.asset_key.to_user_string(), {})[check_key.name] = bool(spec.blocking)
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        name = key.to_user_string()
        assets[name] = {
            "deps": sorted(d.to_user_string() for d in node.parent_keys),
            "partitions": _partitions(node.partitions_def),
            "group": node.group_name,
            "pools": sorted(node.pools or ()),
            "kinds": sorted(node.kinds),
            "io_manager_key": node.io_manager_key,
            "automation_condition": _condition(node.automation_condition),
            "checks (name: blocking)": dict(sorted(checks.get(name, {}).items())),
        }
    jobs = {
        job.name: {
            "assets": sorted(k.to_user_string() for k in job.asset_layer.executable_asset_keys),
            "partitions": _partitions(job.partitions_def),
            "tags": dict(sorted(job.tags.items())),
        }
        for job in repo.get_all_jobs() if not job.name.startswith("__")
    }
    schedules = {
        s.name: {"cron": s.cron_schedule, "timezone": s.execution_timezone, "job": s.job_name,
                 "default_status": s.default_status.value}
        for s in repo.schedule_defs
    }
    sensors = {}
    for s in repo.sensor_defs:
        is_automation = isinstance(s, AutomationConditionSensorDefinition)
        sensors[s.name] = {
            "type": "automation_condition" if is_automation else "sensor",
            "default_status": s.default_status.value,
            "minimum_interval_seconds": s.minimum_interval_seconds,
            "jobs": sorted(j.name for j in s.jobs) if s.has_jobs else [],
            "target": str(s.asset_selection) if s.asset_selection is not None else None,
        }
    return {
        "assets": assets,
        "jobs": dict(sorted(jobs.items())),
        "schedules": dict(sorted(schedules.items())),
        "sensors": dict(sorted(sensors.items())),
        "resources": sorted(repo.get_top_level_resources()),
    }


def _differences(old: Any, new: Any, path: str = "") -> list[str]:
    """One line per changed, added or removed leaf, e.g. ``assets.sam3_labels.pools: ['gpu'] -> []``."""
    if isinstance(old, dict) and isinstance(new, dict):
        lines = []
        for k in sorted(set(old) | set(new)):
            where = f"{path}.{k}" if path else k
            if k not in new:
                lines.append(f"{where}: removed")
            elif k not in old:
                lines.append(f"{where}: added {json.dumps(new[k])}")
            else:
                lines.extend(_differences(old[k], new[k], where))
        return lines
    return [] if old == new else [f"{path}: {json.dumps(old)} -> {json.dumps(new)}"]


def _default_settings_snapshot() -> dict[str, Any]:
    """The snapshot of the code location as it loads with no ``SAMANTICS_*`` variables set: default
    statuses and intervals come from them, and another test (or the shell) may have set some."""
    from samantics_dagster.core.settings import Settings, settings

    if settings() == Settings():
        from samantics_dagster.definitions import defs

        return definitions_snapshot(defs)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAMANTICS_", "LABEL_STUDIO_"))}
    code = ("import json; from samantics_dagster.definitions import defs; "
            "from tests.defs.test_definitions_snapshot import definitions_snapshot; "
            "print(json.dumps(definitions_snapshot(defs)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_definitions_match_the_snapshot():
    current = _default_settings_snapshot()
    if os.environ.get("SAMANTICS_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=False) + "\n")
        return
    assert SNAPSHOT.exists(), f"no {SNAPSHOT.name}: create it with `{REFRESH}`"
    committed = json.loads(SNAPSHOT.read_text())
    diff = _differences(committed, current)
    assert not diff, (
        f"the definitions no longer match {SNAPSHOT.relative_to(REPO)} (names other tools rely on):\n  "
        + "\n  ".join(diff)
        + f"\nIf the change is deliberate, refresh it with `{REFRESH}`, review the diff, and update "
          "docs/design.md's list of names where it names them."
    )


def test_the_snapshot_names_every_stage():
    """The committed snapshot is not an empty or truncated file: it holds the pipeline's five stages."""
    committed = json.loads(SNAPSHOT.read_text())
    for key in ("ingress_frames", "deduped_images", "sam3_labels", "curated_coco", "coco_dataset"):
        assert key in committed["assets"], f"{key} missing from {SNAPSHOT.name}"
    assert {"category_pipeline", "coco_export"} <= set(committed["jobs"])


def test_dg_project_config_is_the_same_in_pyproject_and_the_package():
    """``pyproject.toml``'s ``[tool.dg]`` serves a checkout, ``samantics_dagster/dg.toml`` an installed copy."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["dg"]
    packaged = tomllib.loads((REPO / "samantics_dagster" / "dg.toml").read_text())
    assert packaged["project"] == pyproject["project"]
    assert packaged["directory_type"] == pyproject["directory_type"] == "project"


@pytest.mark.slow
def test_dg_check_defs_passes():
    dg = Path(sys.executable).parent / "dg"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAMANTICS_")}
    env["VIRTUAL_ENV"] = str(Path(sys.executable).parent.parent)
    result = subprocess.run([str(dg), "check", "defs"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"`dg check defs` failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert "All definitions loaded successfully" in result.stdout + result.stderr
