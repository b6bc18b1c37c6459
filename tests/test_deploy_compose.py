"""docker-compose.yml: the local stack's services, health, ordering, settings and images."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from common.settings import ENVIRONMENT, Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
APPS = ["rest", "worker", "worker-gpu", "logs"]
ALLOWED_EXTRAS = {"PORT", "WEB_CONCURRENCY", "HF_HOME", "TORCHINDUCTOR_CACHE_DIR"}
ONE_SHOT = {"createbuckets"}


def interpolate(value: str) -> str:
    """Apply compose's ${VAR:-default} with nothing set in the environment."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))


def seconds(duration: str) -> int:
    """Compose duration such as 75s, 2m or 1m30s, in seconds."""
    parts = re.findall(r"(\d+)([hms])", duration)
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def test_services_present() -> None:
    wanted = {"redis", "minio", "createbuckets", "rest", "worker", "worker-gpu", "logs"}
    assert wanted <= set(SERVICES)
    assert SERVICES["rest"]["ports"] == ["5000:5000"]
    assert SERVICES["rest"]["build"]["dockerfile"] == "rest/Dockerfile"
    assert SERVICES["worker"]["build"]["dockerfile"] == "worker/Dockerfile"
    assert SERVICES["logs"]["command"] == ["python", "-m", "logs"]
    assert SERVICES["logs"]["image"] == SERVICES["rest"]["image"]


@pytest.mark.parametrize("name", sorted(set(SERVICES) - ONE_SHOT))
def test_long_running_services_have_healthchecks(name: str) -> None:
    test = SERVICES[name]["healthcheck"]["test"]
    assert test[0] == "CMD" and len(test) > 1


def test_health_commands() -> None:
    assert SERVICES["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "/readyz" in SERVICES["rest"]["healthcheck"]["test"][-1]
    for name in ("worker", "worker-gpu"):
        test = SERVICES[name]["healthcheck"]["test"]
        assert test == ["CMD", "python", "-m", "worker.healthcheck"]


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_depends_on_waits_for_health(name: str) -> None:
    for dependency, rule in SERVICES[name].get("depends_on", {}).items():
        wanted = "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
        assert rule == {"condition": wanted}, (name, dependency)
        assert dependency in SERVICES
    if name in APPS:
        assert {"redis"} <= set(SERVICES[name]["depends_on"])


@pytest.mark.parametrize("name", APPS)
def test_environment_names_are_settings(name: str) -> None:
    env = {k: interpolate(v) for k, v in SERVICES[name]["environment"].items()}
    assert set(env) <= set(ENVIRONMENT) | ALLOWED_EXTRAS, set(env) - set(ENVIRONMENT)
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert env["MINIO_HOST"] == "minio:9000"
    assert env["CALLBACK_ALLOW_PRIVATE"] == "true"
    settings = Settings.from_env(env)
    assert settings.redis_url == "redis://redis:6379/0" and settings.callback_allow_private


def test_minio_credentials_match_the_services() -> None:
    minio = SERVICES["minio"]["environment"]
    rest = SERVICES["rest"]["environment"]
    assert minio["MINIO_ROOT_USER"] == rest["MINIO_ACCESS_KEY"]
    assert minio["MINIO_ROOT_PASSWORD"] == rest["MINIO_SECRET_KEY"]
    command = " ".join(SERVICES["createbuckets"]["command"])
    assert "store/songs" in command and "store/output" in command


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_images_are_pinned(name: str) -> None:
    repo, _, tag = SERVICES[name]["image"].rpartition(":")
    assert repo and tag and tag != "latest" and "/" not in tag
    assert re.search(r"\d+\.\d+\.\d+|RELEASE\.\d{4}-", tag), SERVICES[name]["image"]


def test_redis_persists() -> None:
    redis = SERVICES["redis"]
    (conf_path,) = [v.split(":")[1] for v in redis["volumes"]
                    if v.startswith("./redis/redis.conf:")]
    assert redis["command"] == ["redis-server", conf_path]
    assert any(v.split(":")[1] == "/data" for v in redis["volumes"])
    lines = (ROOT / "redis" / "redis.conf").read_text().splitlines()
    conf = dict(line.split(None, 1) for line in lines if line.strip() and not line.startswith("#"))
    assert conf["appendonly"] == "yes"
    assert conf["appendfsync"] == "everysec"
    assert conf["maxmemory-policy"] == "noeviction"
    assert conf["dir"] == "/data"


def test_gpu_worker() -> None:
    gpu = SERVICES["worker-gpu"]
    assert gpu["profiles"] == ["gpu"] and "profiles" not in SERVICES["worker"]
    assert gpu["build"]["args"]["TORCH_VARIANT"].startswith("cu")
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert gpu["environment"]["DEMUCS_DEVICE"] == "cuda"


@pytest.mark.parametrize("name", ["worker", "worker-gpu"])
def test_worker_gets_its_shutdown_grace(name: str) -> None:
    grace = int(SERVICES[name]["environment"]["SHUTDOWN_GRACE_S"])
    assert seconds(SERVICES[name]["stop_grace_period"]) > grace
