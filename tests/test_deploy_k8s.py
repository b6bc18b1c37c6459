"""Kubernetes manifests: every overlay renders, validates and keeps the deployment promises."""

from __future__ import annotations

import base64
import re
import subprocess
import tomllib
from typing import Any

import kubernetes_validate
import pytest
import yaml

from common.settings import ENVIRONMENT, Settings, SettingsError
from tests.k8s import (
    ALLOWED_EXTRAS,
    CLUSTER_SCOPED,
    K8S_VERSION,
    NAMESPACE,
    OVERLAYS,
    ROOT,
    SECRET_NAMES,
    app_containers,
    config,
    container_env,
    one,
    pod_spec,
    quantity_bytes,
    render,
    render_everything,
    selects,
    workloads,
)

CRD_APIS = ("keda.sh/", "monitoring.coreos.com/", "gateway.networking.k8s.io/")


@pytest.mark.parametrize("path", ["base"] + [f"overlays/{name}" for name in OVERLAYS])
def test_renders_and_validates_strictly(path: str) -> None:
    for obj in render(path):
        if not obj["apiVersion"].startswith(CRD_APIS):  # custom resources: own tests
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_every_component_renders_and_validates() -> None:
    for obj in render_everything():
        if not obj["apiVersion"].startswith(CRD_APIS):
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_strict_validation_catches_unknown_fields() -> None:
    deployment = dict(one(render("overlays/cpu"), "Deployment", "rest"))
    deployment["spec"] = {**deployment["spec"], "replica": 2}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS + ["everything"])
def test_every_namespaced_object_is_in_one_namespace(overlay: str) -> None:
    objs = render_everything() if overlay == "everything" else render(f"overlays/{overlay}")
    for obj in objs:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] in CLUSTER_SCOPED:
            assert obj["metadata"]["name"] == NAMESPACE and "namespace" not in obj["metadata"]
        else:
            assert obj["metadata"].get("namespace") == NAMESPACE, where
    # KEDA dials Redis by its cluster name, which must name the same namespace.
    for scaled in (o for o in objs if o["kind"] == "ScaledObject"):
        for trigger in scaled["spec"]["triggers"]:
            assert trigger["metadata"]["address"] == f"redis.{NAMESPACE}.svc.cluster.local:6379"


def test_the_namespace_enforces_the_restricted_pod_security_standard() -> None:
    labels = one(render("overlays/gpu"), "Namespace", NAMESPACE)["metadata"]["labels"]
    for mode in ("enforce", "warn", "audit"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"


def _disk_scratch_bytes(spec: dict[str, Any]) -> int:
    """Bytes of the pod's disk-backed emptyDir volumes (their sizeLimit)."""
    return sum(quantity_bytes(v["emptyDir"]["sizeLimit"]) for v in spec.get("volumes", [])
               if "emptyDir" in v and v["emptyDir"].get("medium") != "Memory")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_hardened(overlay: str) -> None:
    for workload in workloads(render(f"overlays/{overlay}")):
        spec, name = pod_spec(workload), workload["metadata"]["name"]
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        scratch = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        for container in spec["containers"]:
            where = f"{name}/{container['name']}"
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), where
            # The scheduler reserves the scratch space the pod may fill.
            requested = container["resources"]["requests"]["ephemeral-storage"]
            assert quantity_bytes(requested) >= _disk_scratch_bytes(spec), where
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True and context["runAsUser"] == 10001, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts.get("/tmp") in scratch, f"{where} has no emptyDir at /tmp"
            assert "readinessProbe" in container and "livenessProbe" in container, where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_one_shot_job_to_reapply(overlay: str) -> None:
    """A Job's template cannot change on a later apply: the services create the buckets."""
    assert not [o for o in render(f"overlays/{overlay}") if o["kind"] in ("Job", "CronJob")]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_liveness_never_depends_on_redis(overlay: str) -> None:
    """A Redis failover must not restart workers (and lose their songs): liveness asks the
    process; readiness may ask Redis."""
    objs = render(f"overlays/{overlay}")
    for name in ("worker", "render", "logs"):
        (container,) = pod_spec(one(objs, "Deployment", name))["containers"]
        for probe in ("livenessProbe", "startupProbe"):
            check = container.get(probe)
            if check is None:
                continue
            command = " ".join(check.get("exec", {}).get("command", []))
            assert "redis" not in command.lower() and "healthcheck" not in command, (name, probe)
            if "httpGet" in check:
                ports = {p["name"]: p["containerPort"] for p in container["ports"]}
                assert check["httpGet"]["path"] == "/healthz"
                assert ports[check["httpGet"]["port"]] == int(config(objs)["METRICS_PORT"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_third_party_images_are_pinned_by_digest(overlay: str) -> None:
    for workload in workloads(render(f"overlays/{overlay}")):
        for container in pod_spec(workload)["containers"]:
            image = container["image"]
            if image.startswith("micro-demucs/"):
                continue  # built here; the overlay names the registry's tag
            assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", image), image


def _version(image: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.search(r":(\d+)\.(\d+)\.(\d+)", image).groups())


def test_redis_has_the_lua_fix_and_a_password_every_client_sends() -> None:
    objs = render("overlays/gpu")
    (redis,) = pod_spec(one(objs, "StatefulSet", "redis"))["containers"]
    assert _version(redis["image"]) >= (7, 4, 6)  # CVE-2025-49844
    secret = one(objs, "Secret", "micro-demucs-secrets")["metadata"]["name"]
    for name in ("REDIS_PASSWORD", "REDISCLI_AUTH"):
        (ref,) = [e["valueFrom"]["secretKeyRef"] for e in redis["env"] if e["name"] == name]
        assert ref == {"name": secret, "key": "REDIS_PASSWORD"}
    assert "--include /tmp/auth.conf" in redis["args"][0]
    for name, container in app_containers(objs):  # rest, workers, logs: from the Secret
        assert "REDIS_PASSWORD" in container_env(objs, container), name
        assert config(objs)["REDIS_URL"] == ""  # so REDIS_PASSWORD builds the URL
    auth = one(objs, "TriggerAuthentication", "redis")["spec"]["secretTargetRef"]
    assert auth == [{"parameter": "password", "name": secret, "key": "REDIS_PASSWORD"}]
    for scaled in (o for o in objs if o["kind"] == "ScaledObject"):
        for trigger in scaled["spec"]["triggers"]:
            assert trigger["authenticationRef"] == {"name": "redis"}


def _redis_start(objs: tuple[dict, ...]) -> str:
    (redis,) = pod_spec(one(objs, "StatefulSet", "redis"))["containers"]
    assert redis["command"] == ["/bin/sh", "-c"]
    return redis["args"][0]


@pytest.mark.parametrize("password", ["", "CHANGE-ME-redis-password", "my-changeme-pw"])
def test_redis_refuses_to_start_without_a_real_password(password: str) -> None:
    out = subprocess.run(["sh", "-c", _redis_start(render("overlays/cpu"))], timeout=10,
                         env={"PATH": "/usr/bin:/bin", "REDIS_PASSWORD": password},
                         capture_output=True, text=True, check=False)
    assert out.returncode == 1 and "REDIS_PASSWORD" in out.stderr


def test_the_example_secret_is_refused_by_every_service() -> None:
    """The shipped placeholders render, but no service starts with them."""
    objs = render("overlays/cpu")
    secret = {k: base64.b64decode(v).decode()
              for k, v in one(objs, "Secret", "micro-demucs-secrets")["data"].items()}
    for _, container in app_containers(objs):
        env = {**container_env(objs, container), **secret}
        with pytest.raises(SettingsError, match="placeholder"):
            Settings.from_env(env).require_secrets()


def test_probes_hit_the_service_endpoints() -> None:
    objs = render("overlays/cpu")
    (rest,) = pod_spec(one(objs, "Deployment", "rest"))["containers"]
    assert rest["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert rest["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {p["containerPort"] for p in rest["ports"]} == {5000}
    for name in ("worker", "render"):
        (worker,) = pod_spec(one(objs, "Deployment", name))["containers"]
        assert worker["readinessProbe"]["exec"]["command"] == [
            "python", "-m", "worker.runtime.healthcheck"]
    (render_worker,) = pod_spec(one(objs, "Deployment", "render"))["containers"]
    assert render_worker["command"] == ["python", "-m", "worker.render"]
    (logs,) = pod_spec(one(objs, "Deployment", "logs"))["containers"]
    assert logs["command"] == ["python", "-m", "logs"]
    assert logs["image"] == rest["image"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_env_names_are_settings(overlay: str) -> None:
    objs = render(f"overlays/{overlay}")
    for name, container in app_containers(objs):
        env = container_env(objs, container)
        assert set(env) <= set(ENVIRONMENT) | ALLOWED_EXTRAS, (name, set(env) - set(ENVIRONMENT))
        Settings.from_env({k: v for k, v in env.items() if k not in SECRET_NAMES})


def test_configmap_and_secret_cover_the_settings() -> None:
    objs = render("base")
    assert set(config(objs)) == set(ENVIRONMENT) - SECRET_NAMES
    assert set(one(objs, "Secret", "micro-demucs-secrets")["data"]) == SECRET_NAMES


def test_compose_uses_the_same_names() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    objs = render("overlays/cpu")
    k8s = {name: set(container_env(objs, c)) for name, c in app_containers(objs)}
    for service, deployment in {"rest": "rest", "worker": "worker", "render": "render",
                                "worker-gpu": "worker", "logs": "logs"}.items():
        names = set(compose[service]["environment"])
        assert names <= k8s[deployment], (service, names - k8s[deployment])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_replica_counts_belong_to_the_autoscalers(overlay: str) -> None:
    objs = render(f"overlays/{overlay}")
    # KEDA and the HPA own the replica counts; a fixed one would be reset on every apply.
    for name in ("worker", "render", "rest"):
        assert "replicas" not in one(objs, "Deployment", name)["spec"], name


def test_rest_memory_holds_every_concurrent_upload() -> None:
    """Each process receives at most MAX_CONCURRENT_UPLOADS bodies at once, each at most ~3x
    MAX_UPLOAD_MB (a JSON upload: 268 MB measured for 100 MB; multipart: 102 MB), plus the
    process itself."""
    objs = render("overlays/cpu")
    (rest,) = pod_spec(one(objs, "Deployment", "rest"))["containers"]
    processes = int(container_env(objs, rest)["WEB_CONCURRENCY"])
    uploads = int(config(objs)["MAX_CONCURRENT_UPLOADS"])
    upload = 3 * int(config(objs)["MAX_UPLOAD_MB"]) * 1024 ** 2
    needed = processes * (uploads * upload + 128 * 1024 ** 2)
    assert quantity_bytes(rest["resources"]["limits"]["memory"]) >= needed


def test_rest_drains_before_it_stops() -> None:
    spec = pod_spec(one(render("overlays/cpu"), "Deployment", "rest"))
    (rest,) = spec["containers"]
    delay = rest["lifecycle"]["preStop"]["sleep"]["seconds"]
    graceful = int(re.search(r"^graceful_timeout = (\d+)$",
                             (ROOT / "rest" / "gunicorn.conf.py").read_text(), re.M).group(1))
    assert delay >= 5 and spec["terminationGracePeriodSeconds"] >= delay + graceful


# The HTTPRoute fields this component uses, as Gateway API v1 (standard channel) defines them.
@pytest.mark.parametrize("overlay", ["gpu", "gpu-external-s3"])
def test_gpu_overlay(overlay: str) -> None:
    objs = render(f"overlays/{overlay}")
    spec = pod_spec(one(objs, "Deployment", "worker"))
    (worker,) = spec["containers"]
    assert worker["image"].endswith("-cuda")
    resources = worker["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == 1
    # The GPU request places the pod; a GPU Feature Discovery label may not exist.
    assert "nodeSelector" not in spec and "affinity" not in spec
    mounts = {m["mountPath"]: m["name"] for m in worker["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
    # Compiled kernels persist across pods, on a volume that allows exec.
    claim = volumes[mounts["/cache"]]["persistentVolumeClaim"]["claimName"]
    pvc = one(objs, "PersistentVolumeClaim", claim)
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]  # every GPU worker shares it
    assert config(objs)["DEMUCS_DEVICE"] == "cuda" and config(objs)["DEMUCS_COMPILE"] == "true"
    cpu = pod_spec(one(render("overlays/cpu"), "Deployment", "worker"))["containers"][0]
    assert cpu["image"].endswith("-cpu") and "nvidia.com/gpu" not in cpu["resources"]["limits"]


def test_external_s3_replaces_minio() -> None:
    objs = render("overlays/gpu-external-s3")
    assert not [o for o in objs if o["metadata"]["name"].startswith("minio")
                and o["kind"] in ("StatefulSet", "NetworkPolicy")]
    assert one(objs, "Service", "minio")["spec"]["type"] == "ExternalName"
    assert config(objs)["MINIO_SECURE"] == "true"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_stateful_sets_have_headless_services(overlay: str) -> None:
    objs = render(f"overlays/{overlay}")
    for stateful in (o for o in objs if o["kind"] == "StatefulSet"):
        service = one(objs, "Service", stateful["spec"]["serviceName"])
        assert service["spec"]["clusterIP"] == "None"
        assert selects({"matchLabels": service["spec"]["selector"]},
                        stateful["spec"]["template"]["metadata"]["labels"])


def test_redis_runs_the_shared_config() -> None:
    objs = render("overlays/cpu")
    conf = one(objs, "ConfigMap", "redis-config")
    assert conf["data"]["redis.conf"] == (ROOT / "redis" / "redis.conf").read_text()
    assert "exec redis-server /usr/local/etc/redis/redis.conf" in _redis_start(objs)


def test_image_tags_follow_the_project_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    images = [c["image"] for _, c in app_containers(render("overlays/gpu"))]
    images += [c["image"] for _, c in app_containers(render("overlays/cpu"))]
    images += [s["image"] for s in compose.values() if s["image"].startswith("micro-demucs/")]
    assert images and all(re.fullmatch(rf"micro-demucs/\w+:{version}(-cpu|-cuda)?", i)
                          for i in images), images
