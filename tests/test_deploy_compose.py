"""docker-compose.yml: the local stack's services, health, ordering, settings and images."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from common.settings import ENVIRONMENT, Settings, SettingsError
from scripts.local.stack import free_port
from tests.k8s import VALUES

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
APPS = ["rest", "worker", "render", "worker-gpu", "logs"]
ALLOWED_EXTRAS = {"PORT", "WEB_CONCURRENCY", "HF_HOME", "TORCHINDUCTOR_CACHE_DIR",
                  "PROMETHEUS_MULTIPROC_DIR"}
REQUIRED = {"REDIS_PASSWORD", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY"}
# What a user puts in .env: real values for the required variables.
DOT_ENV = {"REDIS_PASSWORD": "r3dis-pass", "MINIO_ACCESS_KEY": "store-user",
           "MINIO_SECRET_KEY": "store-secret-123"}


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Apply compose's ${VAR:-default} and ${VAR:?message} with `env` as the shell's."""
    env = DOT_ENV if env is None else env

    def one(match: re.Match) -> str:
        name, op, rest = match.groups()
        if name in env:
            return env[name]
        if op == ":?":
            raise ValueError(f"{name}: {rest}")
        return rest

    return re.sub(r"\$\{(\w+)(:-|:\?)([^}]*)\}", one, str(value))


def test_validates_against_the_compose_specification() -> None:
    """check-jsonschema carries the compose-spec JSON schema (its vendor.compose-spec)."""
    validator = Path(sys.executable).parent / "check-jsonschema"
    command = [str(validator), "--builtin-schema", "vendor.compose-spec"]
    good = subprocess.run([*command, str(ROOT / "docker-compose.yml")], capture_output=True,
                          text=True, timeout=60, check=False)
    assert good.returncode == 0, good.stdout + good.stderr


def test_the_validator_catches_a_wrong_field(tmp_path: Path) -> None:
    broken = {**COMPOSE, "services": {**SERVICES, "rest": {**SERVICES["rest"], "port": [1]}}}
    (tmp_path / "compose.yml").write_text(yaml.safe_dump(broken))
    validator = Path(sys.executable).parent / "check-jsonschema"
    out = subprocess.run([str(validator), "--builtin-schema", "vendor.compose-spec",
                          str(tmp_path / "compose.yml")], capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 1 and "port" in out.stdout


def seconds(duration: str) -> int:
    """Compose duration such as 75s, 2m or 1m30s, in seconds."""
    parts = re.findall(r"(\d+)([hms])", duration)
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def test_services_present() -> None:
    wanted = {"redis", "minio", "rest", "worker", "render", "worker-gpu", "logs"}
    assert wanted == set(SERVICES)  # no one-shot bucket job: the services create them
    # The render worker's own image, without torch, runs it by default.
    assert SERVICES["render"]["build"]["dockerfile"] == "worker/render/Dockerfile"
    assert "command" not in SERVICES["render"]
    assert SERVICES["rest"]["build"]["dockerfile"] == "rest/Dockerfile"
    assert SERVICES["worker"]["build"]["dockerfile"] == "worker/Dockerfile"
    # Built here, never pulled by a name a registry could serve instead.
    for service in (s for s in SERVICES.values() if "build" in s):
        assert service["pull_policy"] == "build"
    assert SERVICES["logs"]["command"] == ["python", "-m", "logs"]
    assert SERVICES["logs"]["image"] == SERVICES["rest"]["image"]


def test_rest_is_published_on_the_loopback_interface_only() -> None:
    (port,) = SERVICES["rest"]["ports"]
    assert interpolate(port, {}) == "127.0.0.1:5000:5000"
    for name, service in SERVICES.items():
        for published in service.get("ports", []):
            assert interpolate(published, {}).startswith("127.0.0.1:"), name


def test_dot_env_stays_out_of_git_and_images() -> None:
    for ignore in (".gitignore", ".dockerignore"):
        lines = (ROOT / ignore).read_text().splitlines()
        assert ".env" in lines, ignore
    out = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT, timeout=10,
                         check=False)
    assert out.returncode == 0


@pytest.mark.parametrize("name", APPS)
def test_required_secrets_have_no_default(name: str) -> None:
    """`docker compose up` stops, naming the variable, until .env sets every required one."""
    env = SERVICES[name]["environment"]
    for variable in REQUIRED:
        assert re.fullmatch(rf"\$\{{{variable}:\?[^}}]+\}}", env[variable]), variable
        with pytest.raises(ValueError, match=variable):
            interpolate(env[variable], {})


def test_example_env_is_refused_until_replaced() -> None:
    """.env.example holds placeholders: the services refuse them, naming the variable."""
    lines = (ROOT / ".env.example").read_text().splitlines()
    example = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert REQUIRED <= set(example)
    env = {k: interpolate(v, example) for k, v in SERVICES["rest"]["environment"].items()}
    with pytest.raises(SettingsError, match="placeholder"):
        Settings.from_env(env).require_secrets()


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_long_running_services_have_healthchecks(name: str) -> None:
    test = SERVICES[name]["healthcheck"]["test"]
    assert test[0] == "CMD" and len(test) > 1


def test_health_commands() -> None:
    assert SERVICES["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "/readyz" in SERVICES["rest"]["healthcheck"]["test"][-1]
    for name in ("worker", "render", "worker-gpu"):
        test = SERVICES[name]["healthcheck"]["test"]
        assert test == ["CMD", "python", "-m", "worker.runtime.healthcheck"]


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_depends_on_waits_for_health(name: str) -> None:
    for dependency, rule in SERVICES[name].get("depends_on", {}).items():
        assert rule == {"condition": "service_healthy"}, (name, dependency)
        assert dependency in SERVICES
    if name in APPS:
        assert {"redis"} <= set(SERVICES[name]["depends_on"])


@pytest.mark.parametrize("name", APPS)
def test_environment_names_are_settings(name: str) -> None:
    env = {k: interpolate(v) for k, v in SERVICES[name]["environment"].items()}
    assert set(env) <= set(ENVIRONMENT) | ALLOWED_EXTRAS, set(env) - set(ENVIRONMENT)
    assert env["MINIO_HOST"] == "minio:9000"
    settings = Settings.from_env(env).require_secrets()
    assert settings.redis_url == "redis://:r3dis-pass@redis:6379/0"
    # Private callback targets only when .env asks: compose may run on a server.
    assert env["CALLBACK_ALLOW_PRIVATE"] == "false" and not settings.callback_allow_private
    opted_in = interpolate(SERVICES[name]["environment"]["CALLBACK_ALLOW_PRIVATE"],
                           {**DOT_ENV, "CALLBACK_ALLOW_PRIVATE": "true"})
    assert Settings.from_env({**env, "CALLBACK_ALLOW_PRIVATE": opted_in}).callback_allow_private


def test_credentials_match_the_services() -> None:
    minio, redis = SERVICES["minio"]["environment"], SERVICES["redis"]["environment"]
    rest = SERVICES["rest"]["environment"]
    assert minio["MINIO_ROOT_USER"] == rest["MINIO_ACCESS_KEY"]
    assert minio["MINIO_ROOT_PASSWORD"] == rest["MINIO_SECRET_KEY"]
    assert redis["REDIS_PASSWORD"] == redis["REDISCLI_AUTH"] == rest["REDIS_PASSWORD"]


def test_redis_requires_its_password(tmp_path: Path) -> None:
    """The compose command, run by a shell as compose would: Redis refuses clients without it."""
    redis_server = shutil.which("redis-server")
    assert redis_server, "redis-server is missing"
    port = free_port()
    (tmp_path / "redis.conf").write_text(f"port {port}\nbind 127.0.0.1\nsave \"\"\n")
    # The image's entrypoint stays (no `entrypoint:`): it runs this shell command.
    assert "entrypoint" not in SERVICES["redis"] and SERVICES["redis"]["command"][:2] == [
        "/bin/sh", "-c"]
    command = SERVICES["redis"]["command"][2].replace("$$", "$")
    command = command.replace("/usr/local/etc/redis/redis.conf", str(tmp_path / "redis.conf"))
    command = command.replace("/tmp/auth.conf", str(tmp_path / "auth.conf"))
    env = {"PATH": os.environ["PATH"], "REDIS_PASSWORD": "r3dis-pass"}
    process = subprocess.Popen(["sh", "-c", command], env=env, stdout=subprocess.DEVNULL)
    authorized = redis.Redis(port=port, password="r3dis-pass", socket_timeout=2)
    try:
        for _ in range(100):  # until it listens
            try:
                assert authorized.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        assert authorized.ping()
        with pytest.raises(redis.AuthenticationError), redis.Redis(port=port) as anonymous:
            anonymous.ping()
    finally:
        authorized.close()
        process.terminate()
        process.wait(10)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_images_are_pinned(name: str) -> None:
    image = SERVICES[name]["image"]
    if "build" in SERVICES[name]:  # built here, named as the Kubernetes manifests name it
        assert re.fullmatch(rf"{re.escape(VALUES['registry'])}/\w+:\d+\.\d+\.\d+(-cpu|-cuda)?",
                            image), image
    else:  # third-party: by digest, the tag beside it for readers
        assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", image), image


def test_redis_persists() -> None:
    service = SERVICES["redis"]
    (conf_path,) = [v.split(":")[1] for v in service["volumes"]
                    if v.startswith("./redis/redis.conf:")]
    assert f"exec redis-server {conf_path} " in service["command"][2]
    assert any(v.split(":")[1] == "/data" for v in service["volumes"])
    lines = (ROOT / "redis" / "redis.conf").read_text().splitlines()
    conf = dict(line.split(None, 1) for line in lines if line.strip() and not line.startswith("#"))
    assert conf["appendonly"] == "yes"
    assert conf["appendfsync"] == "everysec"
    assert conf["maxmemory-policy"] == "noeviction"
    assert conf["dir"] == "/data"


def test_gpu_worker() -> None:
    gpu = SERVICES["worker-gpu"]
    assert gpu["profiles"] == ["gpu"] and "profiles" not in SERVICES["worker"]
    assert gpu["build"]["args"]["TORCH_VARIANT"] == "cu130"
    # Triton loads what it compiles: the caches live on a volume, not on the noexec tmpfs.
    assert "compile-cache:/cache" in gpu["volumes"] and "compile-cache" in COMPOSE["volumes"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert gpu["environment"]["DEMUCS_DEVICE"] == "cuda"


@pytest.mark.parametrize("name", ["worker", "render", "worker-gpu"])
def test_worker_gets_its_shutdown_grace(name: str) -> None:
    grace = int(SERVICES[name]["environment"]["SHUTDOWN_GRACE_S"])
    assert seconds(SERVICES[name]["stop_grace_period"]) > grace
