"""docker-compose.yml and docker/ agree with the code: Docker does not run here, so read them.

Checks that compose's services, health checks, ports and GKD_* variables match what
service.settings.Settings reads, that the compose environment actually builds production
Settings, and that the images' dependency sets follow pyproject.toml's extras (the API image: base +
``server``, which keeps torch out; the worker image: base + ``server`` + ``worker``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
# numpy and pillow stay in the API image: POST /v1/datasets runs gkd_core's torch-free validator.
ML_ONLY = {"torch", "torchvision", "timm", "safetensors", "onnx", "onnxruntime", "onnxscript"}
SECRETS = {"GKD_S3_ACCESS_KEY", "GKD_S3_SECRET_KEY", "GKD_SECRET_KEY", "POSTGRES_PASSWORD"}
_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} substitution."""

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if env.get(name):
            return env[name]
        if op == ":?":
            raise KeyError(f"{name}: {arg}")
        return arg if op == ":-" else ""

    return _VAR.sub(substitute, value.replace("$$", "\0")).replace("\0", "$")


def requirement_name(line: str) -> str:
    return re.split(r"[\[<>=!~; ]", line.strip(), maxsplit=1)[0].lower().replace("_", "-")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def settings_env_names() -> set[str]:
    prefix = Settings.model_config.get("env_prefix", "")
    return {f"{prefix}{name}".upper() for name in Settings.model_fields}


def test_services_present(services: dict[str, Any]) -> None:
    assert set(services) == {"postgres", "redis", "minio", "migrate", "api", "worker"}


def test_long_running_services_have_health_checks(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if name == "migrate":
            assert service.get("restart") == "no", "migrate is one-shot"
            continue
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no health check"


def test_dependencies_wait_for_health(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            expected = "service_completed_successfully" if dependency == "migrate" else "service_healthy"
            assert rule == {"condition": expected}, f"{name} -> {dependency}: {rule}"
    assert set(services["api"]["depends_on"]) >= {"migrate", "redis"}
    assert set(services["worker"]["depends_on"]) >= {"migrate", "redis"}
    assert set(services["migrate"]["depends_on"]) >= {"postgres"}


def test_gkd_variables_are_settings_fields(services: dict[str, Any]) -> None:
    known = settings_env_names()
    for name, service in services.items():
        env = service.get("environment", {})
        assert isinstance(env, dict), f"{name}: use the mapping form for environment"
        unknown = {key for key in env if key.startswith("GKD_")} - known
        assert not unknown, f"{name} sets {sorted(unknown)}, which Settings does not read"
    required = {
        "GKD_MODE",
        "GKD_DATABASE_URL",
        "GKD_BROKER_URL",
        "GKD_STORAGE_URL",
        "GKD_S3_ENDPOINT_URL",
        "GKD_S3_ACCESS_KEY",
        "GKD_S3_SECRET_KEY",
        "GKD_QUEUES",
    }
    assert required <= known, f"Settings lost fields compose relies on: {sorted(required - known)}"
    for name in ("migrate", "api", "worker"):
        missing = required - set(services[name]["environment"])
        assert not missing, f"{name} lacks {sorted(missing)}"


def test_secrets_are_required_not_defaulted(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for key, value in service.get("environment", {}).items():
            for match in _VAR.finditer(str(value)):
                if match["name"] in SECRETS:
                    assert match["op"] == ":?", f"{name}.{key}: secret {match['name']} must use ${{VAR:?...}}"
            if key in SECRETS | {"MINIO_ROOT_PASSWORD", "MINIO_ROOT_USER"}:
                assert str(value).startswith("${"), f"{name}.{key} is hard-coded"
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
        interpolate(services["api"]["environment"]["GKD_DATABASE_URL"], {})


@pytest.mark.parametrize("service_name", ["migrate", "api", "worker"])
def test_compose_environment_builds_production_settings(
    services: dict[str, Any], service_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    host_env = {name: f"{name.lower()}-0123456789abcdef" for name in SECRETS}
    for key in list(os.environ):
        if key.startswith("GKD_"):
            monkeypatch.delenv(key)
    for key, value in services[service_name]["environment"].items():
        monkeypatch.setenv(key, interpolate(str(value), host_env))
    settings = Settings()
    assert settings.mode == "production"
    assert settings.queues == ["gpu"]
    assert [str(root) for root in settings.allowed_roots] == ["/datasets"]
    database = urlsplit(settings.resolved_database_url)
    assert database.scheme.startswith("postgresql") and database.hostname == "postgres"
    assert database.password == host_env["POSTGRES_PASSWORD"]
    assert urlsplit(settings.resolved_broker_url).hostname == "redis"
    assert settings.resolved_storage_url == "s3://gkd-artifacts/artifacts"
    endpoint = urlsplit(settings.s3_endpoint_url or "")
    assert endpoint.hostname == "minio"
    minio_ports = {str(port).split(":")[-1] for port in services["minio"]["ports"]}
    assert str(endpoint.port) in minio_ports
    assert "--address" in services["minio"]["command"]
    assert services["minio"]["command"][services["minio"]["command"].index("--address") + 1] == f":{endpoint.port}"
    minio_env = services["minio"]["environment"]
    assert interpolate(minio_env["MINIO_ROOT_USER"], host_env) == settings.s3_access_key
    assert interpolate(minio_env["MINIO_ROOT_PASSWORD"], host_env) == settings.s3_secret_key


def test_api_port_matches_image_command_and_health_check(services: dict[str, Any]) -> None:
    dockerfile = (ROOT / "docker" / "api.Dockerfile").read_text()
    cmd = re.search(r"^CMD \[(.*)\]$", dockerfile, re.MULTILINE)
    assert cmd, "api.Dockerfile has no exec-form CMD"
    args = [part.strip().strip('"') for part in cmd.group(1).split(",")]
    port = args[args.index("--port") + 1]
    assert args[:3] == ["python", "-m", "api"] and args[args.index("--host") + 1] == "0.0.0.0"
    published = [interpolate(str(p), {}) for p in services["api"]["ports"]]
    assert published == [f"8000:{port}"]
    assert f"127.0.0.1:{port}/healthz" in " ".join(services["api"]["healthcheck"]["test"])


@pytest.mark.parametrize("service_name", ["api", "worker"])
def test_what_a_service_reads_is_mounted_and_its_data_folder_writable(
    services: dict[str, Any], service_name: str
) -> None:
    """The API validates registrations: every allowed root must be mounted there as on the workers, and its
    data folder (the s3:// copies) must be a volume the image's user owns."""
    service = services[service_name]
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *mode = interpolate(str(volume), {}).split(":")
        mounts[target] = (source, mode)
    environment = service["environment"]
    for root in yaml.safe_load(environment["GKD_ALLOWED_ROOTS"]).split(","):
        assert root in mounts and mounts[root][1] == ["ro"], f"{service_name}: {root} not mounted read-only"
    data_dir = environment["GKD_DATA_DIR"]
    source, _ = mounts[data_dir]
    assert source in (compose_volumes := yaml.safe_load(COMPOSE.read_text())["volumes"]), compose_volumes
    dockerfile = (ROOT / "docker" / f"{service_name}.Dockerfile").read_text()
    user = re.findall(r"^USER (\S+)$", dockerfile, re.MULTILINE)[-1]
    assert re.search(rf"mkdir -p {data_dir} && chown {user} {data_dir}", dockerfile), "a fresh volume would be root's"


def test_the_worker_keeps_downloaded_weights_in_its_data_volume() -> None:
    dockerfile = (ROOT / "docker" / "worker.Dockerfile").read_text()
    data_dir = re.findall(r"^ENV GKD_DATA_DIR=(\S+)$", dockerfile, re.MULTILINE)[-1]
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(re.findall(r"^ENV (.+)$", dockerfile, re.MULTILINE))))
    assert env["HF_HOME"].startswith(data_dir + "/") and env["TORCH_HOME"].startswith(data_dir + "/")


def test_the_worker_has_time_to_hand_a_job_back_before_it_is_killed(services: dict[str, Any]) -> None:
    grace = services["worker"]["stop_grace_period"]
    seconds = int(grace[:-1]) * {"s": 1, "m": 60}[grace[-1]]
    assert seconds > Settings.model_fields["stop_grace_s"].default + 30  # the ranks' grace, then the push


def test_worker_reserves_a_gpu(services: dict[str, Any]) -> None:
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in device["capabilities"] and device["driver"] == "nvidia" for device in devices)


def test_build_files_exist(services: dict[str, Any]) -> None:
    for name in ("migrate", "api", "worker"):
        build = services[name]["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).is_file()
    prestart = ROOT / "docker" / "prestart.sh"
    assert services["migrate"]["command"] == ["bash", "docker/prestart.sh"]
    assert prestart.is_file() and os.access(prestart, os.X_OK)
    assert "alembic -c migrations/alembic.ini upgrade head" in prestart.read_text()
    assert (ROOT / "migrations" / "alembic.ini").is_file()


def install_set(*extras: str) -> dict[str, str]:
    """pyproject's base dependencies plus ``extras``, by requirement name (references to the project dropped)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = project["dependencies"] + [line for extra in extras for line in project["optional-dependencies"][extra]]
    return {requirement_name(line): line for line in lines if requirement_name(line) != project["name"]}


def test_api_image_has_no_ml_stack_and_follows_pyproject() -> None:
    runtime = install_set("server")
    lines = [
        line.strip()
        for line in (ROOT / "docker" / "api-requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    api = {requirement_name(line): line for line in lines}
    assert not set(api) & ML_ONLY, f"API image would install {sorted(set(api) & ML_ONLY)}"
    assert set(api) == set(runtime), "api-requirements.txt drifted from pyproject's base + server dependencies"
    for name, line in api.items():
        assert line == runtime[name], f"{name}: api-requirements says {line!r}, pyproject {runtime[name]!r}"
    dockerfile = (ROOT / "docker" / "api.Dockerfile").read_text()
    assert "-c /tmp/deps/constraints.txt -r /tmp/deps/api-requirements.txt" in dockerfile
    assert "pip install --no-deps ." in dockerfile, "installing the project with deps would pull torch"
    assert '! python -c "import torch"' in dockerfile
    assert "nvidia/cuda" not in dockerfile


def test_worker_image_pins_cuda_torch_and_timm() -> None:
    dockerfile = (ROOT / "docker" / "worker.Dockerfile").read_text()
    assert re.search(r"^ARG CUDA_IMAGE=nvidia/cuda:\S+", dockerfile, re.MULTILINE)
    assert re.search(r"pip install -c /tmp/deps/constraints.txt --index-url \S+ torch torchvision", dockerfile)
    assert "pip install -c /tmp/deps/constraints.txt -r /tmp/deps/requirements.txt" in dockerfile
    assert "import torch, gkd_core, timm" in dockerfile
    constraints = (ROOT / "constraints.txt").read_text()
    assert re.search(r"^torch==\S+$", constraints, re.MULTILINE), "torch must be pinned for the worker image"


def test_worker_image_installs_base_server_and_worker_extras() -> None:
    dockerfile = (ROOT / "docker" / "worker.Dockerfile").read_text()
    match = re.search(r'RUN python -c "(?P<code>[^"]+)"\s*\\\s*> /tmp/deps/requirements.txt', dockerfile)
    assert match, "the worker image no longer derives requirements.txt from pyproject"
    code = match["code"].replace("/tmp/deps/pyproject.toml", str(ROOT / "pyproject.toml"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert sorted(out.split()) == sorted(install_set("server", "worker").values())
