"""Every ``SAMANTICS_*`` and ``LABEL_STUDIO_*`` variable the package reads, read here and nowhere else.

``.env.example`` documents each one (a test holds the two lists equal, and fails on a read of such a
variable anywhere else). The paths of the dataset (``DATASET_DIR``, ``GRABBY_WORKDIR``, ``MODEL_CACHE``) are
not here: Dagster binds them to the resources with ``EnvVar``, where the UI shows them.

Sensors and schedules take no run config, so what tunes them (tick interval, quiet period, whether they
start on) is read when the code location loads, once: :func:`settings`. What a run reads while it runs (how
long it waits for a category or a GPU) is read when it is needed: :func:`read_settings`, so a changed
variable applies to the next run without restarting the code server. Factories take a :class:`Settings`, so
tests build a sensor with the values they want instead of patching module globals. Core code may import
this module; it imports nothing of the package.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

SINGLE_FILES_MAX_IMAGES = 100_000
"""Above this many images the single files wait for the full export: at 100 k a rewrite of them and of
labels.jsonl costs ~3 s, at 1 M ~35 s of disk writes per category (benchmarks/bench_scale.py)."""

CATEGORY_WAIT_DEFAULT_S = 1800.0
DEVICE_WAIT_DEFAULT_S = 600.0


class Env(StrEnum):
    """The variables, by name (``.env.example`` lists each with its comment)."""

    SENSOR = "SAMANTICS_SENSOR"
    SENSOR_INTERVAL = "SAMANTICS_SENSOR_INTERVAL_SECONDS"
    SENSOR_QUIET = "SAMANTICS_SENSOR_QUIET_SECONDS"
    SENSOR_TIME_BUDGET = "SAMANTICS_SENSOR_TIME_BUDGET_SECONDS"
    AUTOMATION = "SAMANTICS_AUTOMATION"
    AUTOMATION_INTERVAL = "SAMANTICS_AUTOMATION_INTERVAL_SECONDS"
    EXECUTOR = "SAMANTICS_EXECUTOR"
    SINGLE_FILES_MAX_IMAGES = "SAMANTICS_SINGLE_FILES_MAX_IMAGES"
    CATEGORY_WAIT = "SAMANTICS_CATEGORY_WAIT_SECONDS"
    DEVICE_LEASE_DIR = "SAMANTICS_DEVICE_LEASE_DIR"
    DEVICE_WAIT = "SAMANTICS_DEVICE_WAIT_SECONDS"
    DEVICE = "SAMANTICS_DEVICE"
    RAY_ADDRESS = "SAMANTICS_RAY_ADDRESS"
    LABEL_STUDIO_URL = "LABEL_STUDIO_URL"
    LABEL_STUDIO_API_KEY = "LABEL_STUDIO_API_KEY"  # bound with EnvVar (a secret: never in a run's config)
    LABEL_STUDIO_DOCUMENT_ROOT = "LABEL_STUDIO_DOCUMENT_ROOT"
    LABEL_STUDIO_DATASET_DIR = "LABEL_STUDIO_DATASET_DIR"
    LABEL_STUDIO_ML_BACKEND_URL = "LABEL_STUDIO_ML_BACKEND_URL"
    ML_BACKEND_CACHE_MB = "SAMANTICS_ML_BACKEND_CACHE_MB"


_OFF = ("off", "0", "false", "no")


def _float(env: Mapping[str, str], name: Env, default: float) -> float:
    value = env.get(name)
    if not value:
        return default
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a number: set it to seconds, e.g. {name}={default:g}") from None


def _int(env: Mapping[str, str], name: Env, default: int) -> int:
    value = env.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a whole number: e.g. {name}={default}") from None


def _device(env: Mapping[str, str]) -> str:
    """The sam3 resource's device. Production sets ``cuda`` (a run without a visible GPU then fails at
    start); unset means ``auto`` (a GPU if visible, else the CPU), for the demo and laptops."""
    value = (env.get(Env.DEVICE) or "auto").strip().lower()
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
        raise ValueError(f"{Env.DEVICE}={value!r}: use cuda (production), cuda:N, cpu, or auto (the default)")
    return value


def _on(env: Mapping[str, str], name: Env) -> bool:
    return env.get(name, "on").strip().lower() not in _OFF


@dataclass(frozen=True)
class Settings:
    """The values of :class:`Env`, parsed, with their defaults."""

    sensor_on: bool = True
    sensor_interval_s: int = 30
    sensor_quiet_s: float = 30.0
    sensor_time_budget_s: float = 20.0
    automation_on: bool = True
    automation_interval_s: int = 30
    executor: str = "in_process"
    single_files_max_images: int = SINGLE_FILES_MAX_IMAGES
    category_wait_s: float = CATEGORY_WAIT_DEFAULT_S
    device_lease_dir: str = ""  # empty: a per-user folder on local storage (core.label.devices)
    device_wait_s: float = DEVICE_WAIT_DEFAULT_S
    sam3_device: str = "auto"
    ray_address: str = ""  # empty: label in the run's own process; else the Ray cluster labelling runs on
    label_studio_url: str = ""
    label_studio_document_root: str = ""
    label_studio_dataset_dir: str = ""
    label_studio_ml_backend_url: str = ""  # the click-to-mask backend as Label Studio reaches it
    ml_backend_cache_mb: float = 1024.0  # `samantics ml-backend`'s embedding cache

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        executor = env.get(Env.EXECUTOR) or "in_process"
        if executor not in ("in_process", "k8s"):
            raise ValueError(f"{Env.EXECUTOR}={executor!r}: use 'k8s' (deploy/k8s.md) or leave it unset")
        return cls(
            sensor_on=_on(env, Env.SENSOR),
            sensor_interval_s=int(_float(env, Env.SENSOR_INTERVAL, 30)),
            sensor_quiet_s=_float(env, Env.SENSOR_QUIET, 30.0),
            sensor_time_budget_s=_float(env, Env.SENSOR_TIME_BUDGET, 20.0),
            automation_on=_on(env, Env.AUTOMATION),
            automation_interval_s=int(_float(env, Env.AUTOMATION_INTERVAL, 30)),
            executor=executor,
            single_files_max_images=_int(env, Env.SINGLE_FILES_MAX_IMAGES, SINGLE_FILES_MAX_IMAGES),
            category_wait_s=_float(env, Env.CATEGORY_WAIT, CATEGORY_WAIT_DEFAULT_S),
            device_lease_dir=env.get(Env.DEVICE_LEASE_DIR) or "",
            device_wait_s=_float(env, Env.DEVICE_WAIT, DEVICE_WAIT_DEFAULT_S),
            sam3_device=_device(env),
            ray_address=(env.get(Env.RAY_ADDRESS) or "").strip(),
            label_studio_url=env.get(Env.LABEL_STUDIO_URL) or "",
            label_studio_document_root=env.get(Env.LABEL_STUDIO_DOCUMENT_ROOT) or "",
            label_studio_dataset_dir=env.get(Env.LABEL_STUDIO_DATASET_DIR) or "",
            label_studio_ml_backend_url=env.get(Env.LABEL_STUDIO_ML_BACKEND_URL) or "",
            ml_backend_cache_mb=_float(env, Env.ML_BACKEND_CACHE_MB, 1024.0),
        )


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The settings of this process as the code location loaded them (sensors, schedules, the executor)."""
    return Settings.from_env()


def read_settings() -> Settings:
    """The settings as the environment says now: for what a run reads while it runs."""
    return Settings.from_env()
