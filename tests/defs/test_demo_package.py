"""The demo's instance and workspace files ship in the package, so a non-editable install runs the demo."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from samantics_dagster.demo.config import INSTANCE_FILES, read_instance_file, write_demo_instance

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", INSTANCE_FILES)
def test_the_package_copy_is_the_repository_file(name):
    packaged = REPO / "samantics_dagster" / "demo" / "instance" / name
    assert packaged.read_text() == (REPO / name).read_text(), (
        f"{packaged.relative_to(REPO)} differs from {name}: edit {name}, then `cp {name} {packaged.relative_to(REPO)}`")
    assert read_instance_file(name) == packaged.read_text()


def test_the_demo_instance_loads_with_its_limits_and_the_workspace_names_the_code_location(tmp_path):
    from dagster import DagsterInstance

    workspace = write_demo_instance(tmp_path / "home", tmp_path)
    with DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 4
    target = yaml.safe_load(workspace.read_text())["load_from"][0]["python_module"]
    assert target == {"module_name": "samantics_dagster.definitions", "location_name": "samantics_dagster"}


def test_only_the_instance_files_are_served():
    with pytest.raises(ValueError, match="not one of"):
        read_instance_file("../../dg.toml")


@pytest.mark.slow
def test_a_built_wheel_carries_the_package_data_and_runs_from_outside_the_checkout(tmp_path):
    """The wheel is built from what the user-code image's build context holds (pyproject, README, package)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "samantics_dagster", src / "samantics_dagster",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                    str(src)], check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("samantics_dagster-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        zf.extractall(tmp_path / "site")
    for data in ("samantics_dagster/dg.toml", "samantics_dagster/demo/instance/dagster.yaml",
                 "samantics_dagster/demo/instance/workspace.yaml"):
        assert data in names, f"{data} missing from {wheel.name}: list it in [tool.setuptools.package-data]"
    code = ("import samantics_dagster, sys; from samantics_dagster.demo.config import read_instance_file; "
            "assert samantics_dagster.__file__.startswith(sys.argv[1]), samantics_dagster.__file__; "
            "assert 'max_concurrent_runs' in read_instance_file('dagster.yaml'); "
            "from samantics_dagster.cli.main import main; sys.exit(main(['demo', '--help']))")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "site")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--no-serve" in proc.stdout, proc.stdout + proc.stderr
