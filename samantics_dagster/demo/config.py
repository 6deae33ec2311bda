"""The demo's Dagster instance (``dagster.yaml``) and workspace (``workspace.yaml``), read as package data.

An installed copy of the package (a wheel, the user-code image) has no repository beside it, so
``samantics demo`` takes both files from ``samantics_dagster/demo/instance/``. The repository root keeps
the same two files for ``dg dev -w workspace.yaml`` and the docs; ``tests/defs/test_demo_package.py``
checks that they hold the same text.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

INSTANCE_FILES = ("dagster.yaml", "workspace.yaml")


def read_instance_file(name: str) -> str:
    """The text of one of :data:`INSTANCE_FILES` as the package ships it."""
    if name not in INSTANCE_FILES:
        raise ValueError(f"{name!r} is not one of the demo's instance files {INSTANCE_FILES}")
    return (files("samantics_dagster.demo") / "instance" / name).read_text(encoding="utf-8")


def write_demo_instance(home: Path, root: Path) -> Path:
    """``dagster.yaml`` into the demo's ``DAGSTER_HOME`` and ``workspace.yaml`` into the demo folder
    (not the home: Dagster would read it as instance config); returns the workspace file for ``dg dev -w``."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(read_instance_file("dagster.yaml"), encoding="utf-8")
    workspace = root / "workspace.yaml"
    workspace.write_text(read_instance_file("workspace.yaml"), encoding="utf-8")
    return workspace
