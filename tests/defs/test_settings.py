"""Every ``SAMANTICS_*`` / ``LABEL_STUDIO_*`` variable is read in ``core/settings.py`` and nowhere else, and
``.env.example`` lists each with a comment: a user reads one file to learn every knob."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from samantics_dagster.core.settings import Env, Settings

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "samantics_dagster"
SETTINGS = PACKAGE / "core" / "settings.py"
NAME = re.compile(r"(SAMANTICS|LABEL_STUDIO)_[A-Z0-9_]+")
PREFIX = re.compile(r"(SAMANTICS|LABEL_STUDIO)_[A-Z0-9_]*")
READ = re.compile(r"(os\.environ|getenv|EnvVar)\W{1,6}[\"'](SAMANTICS|LABEL_STUDIO)_")


def _reads(root: Path) -> list[str]:
    """A variable's name as a whole string (the key of a lookup, or a constant bound for one), an f-string
    that builds one, or an os.environ / getenv / EnvVar call on one, in any module under root but the settings."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if path == SETTINGS:
            continue
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(root)
        found += [f"{rel}: {m.group(0)}" for m in READ.finditer(text)]
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and NAME.fullmatch(node.value):
                found.append(f"{rel}:{node.lineno}: {node.value!r}")
            elif (isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant)
                  and PREFIX.fullmatch(str(node.values[0].value))):
                found.append(f"{rel}:{node.lineno}: an f-string building a variable name")
    return found


def test_variables_are_read_only_in_the_settings_module():
    found = _reads(PACKAGE)
    assert not found, f"read these through samantics_dagster.core.settings: {found}"


def test_the_check_sees_a_read(tmp_path):
    """The scan above is not vacuous: each way of reading a variable by itself is found."""
    (tmp_path / "constant.py").write_text('import os\nWAIT = "SAMANTICS_SOMETHING"\nx = os.environ.get(WAIT)\n')
    (tmp_path / "literal.py").write_text('import os\nx = os.getenv("LABEL_STUDIO_URL", "")\n')
    (tmp_path / "built.py").write_text('import os\nk = "X"\nx = os.environ[f"SAMANTICS_{k}"]\n')
    (tmp_path / "message.py").write_text('x = "set SAMANTICS_SENSOR=off to start it stopped"\n')
    found = " ".join(_reads(tmp_path))
    assert "constant.py" in found and "literal.py" in found and "built.py" in found and "message.py" not in found


def _env_example() -> dict[str, list[str]]:
    """.env.example's variables, each with the comment lines above its group of assignments."""
    out: dict[str, list[str]] = {}
    comment: list[str] = []
    in_group = False
    for line in (REPO / ".env.example").read_text().splitlines():
        if line.startswith("#"):
            if in_group:
                comment, in_group = [], False
            comment.append(line)
        elif "=" in line:
            out[line.split("=", 1)[0].strip()] = list(comment)
            in_group = True
        else:
            comment, in_group = [], False
    return out


@pytest.mark.parametrize("name", list(Env))
def test_every_variable_is_in_env_example_with_a_comment(name):
    example = _env_example()
    assert name.value in example, f".env.example does not list {name.value}"
    assert example[name.value], f".env.example lists {name.value} without a comment saying what it does"


def test_env_example_as_shipped_parses_to_the_defaults():
    """Copying .env.example to .env changes nothing: its values are the defaults (blank where the default is
    computed), apart from the review variables that are empty until set, and the device: production asks for
    cuda (a run without its GPU fails at start), where unset (the demo) means auto."""
    from dataclasses import replace

    example = {k: v for k, v in (line.split("=", 1) for line in (REPO / ".env.example").read_text().splitlines()
                                 if line and not line.startswith("#") and "=" in line)}
    assert Settings.from_env(example) == replace(Settings(), sam3_device="cuda")
