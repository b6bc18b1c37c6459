"""Credentials on Kubernetes: one Secret per credential, each pod given only its own, MinIO's
root user kept in MinIO, which creates a user per service; Redis's password everywhere it is
needed and refused when it is a placeholder."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from common.settings import Settings, SettingsError
from tests.k8s import (
    OVERLAYS,
    ROOT,
    SECRET_NAMES,
    app_containers,
    config,
    container_env,
    one,
    pod_spec,
    render,
    secrets_read,
    workloads,
)

# Which Secrets each workload may read, and nothing more.
OWN = {
    "rest": {"redis-auth", "rest-store", "api-keys"},
    "worker": {"redis-auth", "worker-store", "callback-secret"},
    "render": {"redis-auth", "render-store", "callback-secret"},
    "logs": {"redis-auth"},
    "redis": {"redis-auth"},
    "minio": {"minio-root", "rest-store", "worker-store", "render-store"},
}
BASE = ROOT / "k8s" / "base"


def _secret_name(objs: tuple[dict, ...], name: str) -> str:
    """The generated name (with its hash) of a Secret."""
    return one(objs, "Secret", name)["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_pod_gets_only_its_own_credentials(overlay: str) -> None:
    objs = render(f"overlays/{overlay}")
    for workload in workloads(objs):
        name, spec = workload["metadata"]["name"], pod_spec(workload)
        wanted = {_secret_name(objs, s) for s in OWN[name] if overlay != "gpu-external-s3"
                  or s != "minio-root"}
        read = set().union(*(secrets_read(c) for c in spec["containers"]
                             + spec.get("initContainers", [])))
        assert read == wanted, name
    # The three store users are distinct, and none is MinIO's root.
    stores = [one(objs, "Secret", f"{s}-store")["data"] for s in ("rest", "worker", "render")]
    assert len({s["MINIO_ACCESS_KEY"] for s in stores}) == 3
    if overlay != "gpu-external-s3":
        root = one(objs, "Secret", "minio-root")["data"]
        assert root["MINIO_ROOT_USER"] not in {s["MINIO_ACCESS_KEY"] for s in stores}


def test_the_secrets_cover_the_settings() -> None:
    objs = render("base")
    keys = {k for o in objs if o["kind"] == "Secret" and o["metadata"]["name"][:10] != "minio-root"
            for k in o["data"]}
    assert keys == SECRET_NAMES


def test_the_example_secrets_are_refused_by_every_service() -> None:
    """The shipped placeholders render, but no service starts with them."""
    objs = render("overlays/cpu")
    for name, container in app_containers(objs):
        with pytest.raises(SettingsError, match="placeholder"):
            Settings.from_env(container_env(objs, container, decode=True)).require_secrets()
        assert name in OWN


def test_minio_creates_a_user_per_service_with_only_what_it_needs() -> None:
    objs = render("overlays/cpu")
    (minio,) = pod_spec(one(objs, "StatefulSet", "minio"))["containers"]
    script = (BASE / "minio-users.sh").read_text()
    shellcheck = Path(sys.executable).parent / "shellcheck"
    linted = subprocess.run([str(shellcheck), str(BASE / "minio-users.sh")], timeout=60,
                            capture_output=True, text=True, check=False)
    assert linted.returncode == 0, linted.stdout
    # MinIO's image has bash, coreutils and mc, no sed or grep.
    assert not re.search(r"\b(sed|grep|awk|dirname|jq)\b", script.split("set -eu", 1)[1])
    hook = minio["lifecycle"]["postStart"]["exec"]["command"]
    assert hook == ["/bin/bash", "/etc/minio-users/minio-users.sh"]
    mounts = {m["mountPath"]: m["name"] for m in minio["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(one(objs, "StatefulSet", "minio"))["volumes"]}
    users = one(objs, "ConfigMap", "minio-users")
    assert volumes[mounts["/etc/minio-users"]]["configMap"]["name"] == users["metadata"]["name"]
    assert users["data"]["minio-users.sh"] == script
    # Every variable the script reads is in MinIO's environment.
    env = set(container_env(objs, minio))
    assert set(re.findall(r"\$\{?([A-Z][A-Z_]+)", script)) - {"MC_CONFIG_DIR"} <= env
    for service in ("REST", "WORKER", "RENDER"):
        assert re.search(rf'^user "\${service}_ACCESS_KEY" "\${service}_SECRET_KEY" ', script,
                         re.M), service
    buckets = {config(objs)["SONGS_BUCKET"], config(objs)["OUTPUT_BUCKET"]}
    app = _allowed(users["data"]["minio-policy-app.json"], config(objs))
    render_worker = _allowed(users["data"]["minio-policy-render.json"], config(objs))
    for allowed in (app, render_worker):
        assert {r.split(":::")[1].split("/")[0] for r in allowed} == buckets
        assert not any("*" in a for actions in allowed.values() for a in actions)
    songs = f"arn:aws:s3:::{config(objs)['SONGS_BUCKET']}/*"
    assert "s3:PutObject" in app[songs] and render_worker[songs] == {"s3:DeleteObject"}


def _allowed(policy: str, settings: dict[str, str]) -> dict[str, set[str]]:
    """{resource: actions} of an IAM policy, with the bucket names the script fills in."""
    for name in ("SONGS_BUCKET", "OUTPUT_BUCKET"):
        policy = policy.replace(name, settings[name])
    allowed: dict[str, set[str]] = {}
    for statement in json.loads(policy)["Statement"]:
        assert statement["Effect"] == "Allow"
        for resource in statement["Resource"]:
            allowed.setdefault(resource, set()).update(statement["Action"])
    return allowed


def test_redis_has_the_lua_fix_and_a_password_every_client_sends() -> None:
    objs = render("overlays/gpu")
    (redis,) = pod_spec(one(objs, "StatefulSet", "redis"))["containers"]
    version = re.search(r":(\d+)\.(\d+)\.(\d+)", redis["image"]).groups()
    assert tuple(int(n) for n in version) >= (7, 4, 6)  # CVE-2025-49844
    secret = _secret_name(objs, "redis-auth")
    for name in ("REDIS_PASSWORD", "REDISCLI_AUTH"):
        (ref,) = [e["valueFrom"]["secretKeyRef"] for e in redis["env"] if e["name"] == name]
        assert ref == {"name": secret, "key": "REDIS_PASSWORD"}
    assert "--include /tmp/auth.conf" in _redis_start(objs)
    for name, container in app_containers(objs):  # rest, workers, logs
        assert "REDIS_PASSWORD" in container_env(objs, container), name
        assert config(objs)["REDIS_URL"] == ""  # so REDIS_PASSWORD builds the URL
    auth = one(objs, "TriggerAuthentication", "redis")["spec"]["secretTargetRef"]
    assert auth == [{"parameter": "password", "name": secret, "key": "REDIS_PASSWORD"}]
    for scaled in (o for o in objs if o["kind"] == "ScaledObject"):
        for trigger in scaled["spec"]["triggers"]:
            assert trigger["authenticationRef"] == {"name": "redis"}


def _redis_start(objs: tuple[dict, ...]) -> str:
    (redis,) = pod_spec(one(objs, "StatefulSet", "redis"))["containers"]
    assert "command" not in redis and redis["args"][:2] == ["/bin/sh", "-c"]
    return redis["args"][2]


@pytest.mark.parametrize("password", ["", "CHANGE-ME-redis-password", "my-changeme-pw"])
def test_redis_refuses_to_start_without_a_real_password(password: str) -> None:
    out = subprocess.run(["sh", "-c", _redis_start(render("overlays/cpu"))], timeout=10,
                         env={"PATH": "/usr/bin:/bin", "REDIS_PASSWORD": password},
                         capture_output=True, text=True, check=False)
    assert out.returncode == 1 and "REDIS_PASSWORD" in out.stderr


def test_redis_runs_the_shared_config() -> None:
    objs = render("overlays/cpu")
    conf = one(objs, "ConfigMap", "redis-config")
    assert conf["data"]["redis.conf"] == (ROOT / "redis" / "redis.conf").read_text()
    assert "exec redis-server /usr/local/etc/redis/redis.conf" in _redis_start(objs)
