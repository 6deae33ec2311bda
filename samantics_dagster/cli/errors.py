"""What every ``samantics`` command shares: the one-line error, the problem report, the dataset folder."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


class CliError(Exception):
    """A one-line message that says what to do; exits non-zero."""


def report_problems(problems: list[str], what: str) -> None:
    """The first problems on stderr, then a one-line error if there were any."""
    for problem in problems[:20]:
        print(f"  problem: {problem}", file=sys.stderr)
    if problems:
        raise CliError(f"{len(problems)} problems in {what} (listed above); fix the labels or the spec and run again")


def dataset_dir_of(args: argparse.Namespace) -> Path:
    value = getattr(args, "dataset_dir", None) or os.environ.get("DATASET_DIR")
    if not value:
        raise CliError("no dataset: pass --dataset-dir or set DATASET_DIR")
    return Path(value)
