"""The code location: every Dagster definition under ``defs/``, found by ``load_from_defs_folder``.

``dg dev`` (or ``dg dev -w workspace.yaml`` from any folder) loads ``defs`` from here. The package carries its own
``dg.toml`` so that an installed copy (the user-code image, a wheel) finds its project config too.
"""

from pathlib import Path

import dagster as dg

defs = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
