"""``SAMANTICS_*`` deployment settings, read from the environment once, in one place.

Sensors and schedules take no run config, so what tunes them (tick interval, quiet period, whether they
start on) is read when the code location loads. The factories in ``defs/automation`` take a
:class:`Settings`, so tests build a sensor with the values they want instead of patching module globals.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from samantics_dagster.core.export.shards import SINGLE_FILES_MAX_IMAGES

_OFF = ("off", "0", "false", "no")


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    value = env.get(name)
    if not value:
        return default
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a number: set it to seconds, e.g. {name}={default:g}") from None


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a whole number: e.g. {name}={default}") from None


def _on(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "on").strip().lower() not in _OFF


@dataclass(frozen=True)
class Settings:
    """Every ``SAMANTICS_*`` variable the code location reads; ``.env.example`` documents them."""

    sensor_on: bool = True
    sensor_interval_s: int = 30
    sensor_quiet_s: float = 30.0
    sensor_time_budget_s: float = 20.0
    automation_on: bool = True
    automation_interval_s: int = 30
    executor: str = "in_process"
    single_files_max_images: int = SINGLE_FILES_MAX_IMAGES

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        executor = env.get("SAMANTICS_EXECUTOR") or "in_process"
        if executor not in ("in_process", "k8s"):
            raise ValueError(f"SAMANTICS_EXECUTOR={executor!r}: use 'k8s' (deploy/k8s.md) or leave it unset")
        return cls(
            sensor_on=_on(env, "SAMANTICS_SENSOR"),
            sensor_interval_s=int(_float(env, "SAMANTICS_SENSOR_INTERVAL_SECONDS", 30)),
            sensor_quiet_s=_float(env, "SAMANTICS_SENSOR_QUIET_SECONDS", 30.0),
            sensor_time_budget_s=_float(env, "SAMANTICS_SENSOR_TIME_BUDGET_SECONDS", 20.0),
            automation_on=_on(env, "SAMANTICS_AUTOMATION"),
            automation_interval_s=int(_float(env, "SAMANTICS_AUTOMATION_INTERVAL_SECONDS", 30)),
            executor=executor,
            single_files_max_images=_int(env, "SAMANTICS_SINGLE_FILES_MAX_IMAGES", SINGLE_FILES_MAX_IMAGES),
        )


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The settings of this process, read on first use."""
    return Settings.from_env()
