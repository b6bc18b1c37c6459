"""Kubernetes manifests: every overlay renders, validates and keeps the deployment promises."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from common.settings import ENVIRONMENT, Settings

ROOT = Path(__file__).resolve().parent.parent
K8S_VERSION = "1.32.0"  # the kubectl client's minor; kubernetes-validate ships its schemas
OVERLAYS = ["cpu", "gpu", "gpu-external-s3"]
ALLOWED_EXTRAS = {"PORT", "WEB_CONCURRENCY", "HF_HOME", "TORCHINDUCTOR_CACHE_DIR"}
SECRET_NAMES = {name for name, (_, about) in ENVIRONMENT.items() if "(secret)" in about}
WORKLOADS = ("Deployment", "StatefulSet", "Job")
# Every metadata key KEDA documents for the `redis` (Redis Lists) trigger.
KEDA_REDIS_KEYS = {
    "address", "addressFromEnv", "host", "hostFromEnv", "port", "portFromEnv",
    "usernameFromEnv", "passwordFromEnv", "listName", "listLength", "activationListLength",
    "enableTLS", "unsafeSsl", "databaseIndex",
}


@functools.cache
def render(path: str) -> tuple[dict[str, Any], ...]:
    """Objects that `kubectl kustomize` renders for a folder under k8s/."""
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is missing: the manifests cannot be rendered"
    out = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "k8s" / path)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert out.returncode == 0, out.stderr
    return tuple(obj for obj in yaml.safe_load_all(out.stdout) if obj)


def one(objs: tuple[dict, ...], kind: str, name: str) -> dict[str, Any]:
    """The object of this kind whose name is `name` or a generated `name-<hash>`."""
    found = [o for o in objs if o["kind"] == kind
             and re.fullmatch(rf"{name}(-[a-z0-9]{{10}})?", o["metadata"]["name"])]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def config(objs: tuple[dict, ...]) -> dict[str, str]:
    """Data of the settings ConfigMap."""
    return one(objs, "ConfigMap", "micro-demucs-config")["data"]


def workloads(objs: tuple[dict, ...]) -> Iterator[dict[str, Any]]:
    """Every object that runs pods."""
    return (o for o in objs if o["kind"] in WORKLOADS)


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    """The pod template spec of a workload."""
    return workload["spec"]["template"]["spec"]


def container_env(objs: tuple[dict, ...], container: dict[str, Any]) -> dict[str, str]:
    """The environment a container starts with (Secret values stay base64; fieldRefs empty)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef") or source["secretRef"]
        kind = "ConfigMap" if "configMapRef" in source else "Secret"
        found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == ref["name"]]
        assert found, f"{container['name']} reads missing {kind} {ref['name']}"
        env.update(found[0].get("data", {}))
    env.update({item["name"]: item.get("value", "") for item in container.get("env", [])})
    return env


def app_containers(objs: tuple[dict, ...]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(workload name, container) for the project's own images."""
    for workload in workloads(objs):
        for container in pod_spec(workload)["containers"]:
            if container["image"].startswith("micro-demucs/"):
                yield workload["metadata"]["name"], container


@pytest.mark.parametrize("path", ["base"] + [f"overlays/{name}" for name in OVERLAYS])
def test_renders_and_validates_strictly(path: str) -> None:
    objs = render(path)
    for obj in objs:
        if obj["apiVersion"].startswith("keda.sh/"):
            continue  # not a Kubernetes API: test_keda_scaled_object checks it
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_strict_validation_catches_unknown_fields() -> None:
    deployment = dict(one(render("overlays/cpu"), "Deployment", "rest"))
    deployment["spec"] = {**deployment["spec"], "replica": 2}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_scaled_object(overlay: str) -> None:
    objs = render(f"overlays/{overlay}")
    scaled = [o for o in objs if o["kind"] == "ScaledObject"]
    assert len(scaled) == 1
    spec = scaled[0]["spec"]
    assert scaled[0]["apiVersion"] == "keda.sh/v1alpha1"
    assert spec["scaleTargetRef"]["name"] == one(objs, "Deployment", "worker")["metadata"]["name"]
    assert spec["minReplicaCount"] == 0 and spec["maxReplicaCount"] > 0
    (trigger,) = spec["triggers"]
    meta = trigger["metadata"]
    assert trigger["type"] == "redis"
    assert set(meta) <= KEDA_REDIS_KEYS, set(meta) - KEDA_REDIS_KEYS
    assert meta["listName"] == "toWorker"
    assert isinstance(meta["listLength"], str) and meta["listLength"].isdigit()
    assert all(isinstance(value, str) for value in meta.values())
    assert "address" in meta or "addressFromEnv" in meta or {"host", "port"} <= set(meta)
    assert meta["address"] == "redis.micro-demucs.svc.cluster.local:6379"
    assert meta["databaseIndex"] == config(objs)["REDIS_DB"]


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
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True and context["runAsUser"] == 10001, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts.get("/tmp") in scratch, f"{where} has no emptyDir at /tmp"
            if workload["kind"] != "Job":  # a one-shot Job has nothing to probe
                assert "readinessProbe" in container and "livenessProbe" in container, where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_pinned(overlay: str) -> None:
    for workload in workloads(render(f"overlays/{overlay}")):
        for container in pod_spec(workload)["containers"]:
            repo, _, tag = container["image"].rpartition(":")
            assert repo and tag and tag != "latest" and "/" not in tag, container["image"]
            assert re.search(r"\d+\.\d+\.\d+|RELEASE\.\d{4}-", tag), container["image"]


def test_probes_hit_the_service_endpoints() -> None:
    objs = render("overlays/cpu")
    (rest,) = pod_spec(one(objs, "Deployment", "rest"))["containers"]
    assert rest["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert rest["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {p["containerPort"] for p in rest["ports"]} == {5000}
    (worker,) = pod_spec(one(objs, "Deployment", "worker"))["containers"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert worker[probe]["exec"]["command"] == ["python", "-m", "worker.healthcheck"]
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
    for service, deployment in {"rest": "rest", "worker": "worker",
                                "worker-gpu": "worker", "logs": "logs"}.items():
        names = set(compose[service]["environment"])
        assert names <= k8s[deployment], (service, names - k8s[deployment])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_worker_outlives_its_shutdown_grace(overlay: str) -> None:
    objs = render(f"overlays/{overlay}")
    worker = one(objs, "Deployment", "worker")
    grace = pod_spec(worker)["terminationGracePeriodSeconds"]
    assert grace > int(config(objs)["SHUTDOWN_GRACE_S"])
    # KEDA and the HPA own the replica counts; a fixed one would be reset on every apply.
    assert "replicas" not in worker["spec"]
    assert "replicas" not in one(objs, "Deployment", "rest")["spec"]


def _nginx_bytes(size: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kKmMgG]?)", size).groups()
    return int(number) * 1024 ** " kmg".index(unit.lower() or " ")


def test_ingress_fits_the_largest_upload() -> None:
    objs = render("overlays/cpu")
    notes = one(objs, "Ingress", "rest")["metadata"]["annotations"]
    largest = int(config(objs)["MAX_UPLOAD_MB"]) * 1024 * 1024 * 4 / 3  # base64 in JSON
    assert _nginx_bytes(notes["nginx.ingress.kubernetes.io/proxy-body-size"]) >= largest
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(notes[f"nginx.ingress.kubernetes.io/{timeout}"]) >= 300
    hpa = one(objs, "HorizontalPodAutoscaler", "rest")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "rest"
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"


@pytest.mark.parametrize("overlay", ["gpu", "gpu-external-s3"])
def test_gpu_overlay(overlay: str) -> None:
    objs = render(f"overlays/{overlay}")
    spec = pod_spec(one(objs, "Deployment", "worker"))
    (worker,) = spec["containers"]
    assert worker["image"].endswith("-cuda")
    resources = worker["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == 1
    mounts = {m["mountPath"]: m["name"] for m in worker["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
    assert "/cache/inductor" in mounts
    toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    assert toleration in spec["tolerations"]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert config(objs)["DEMUCS_DEVICE"] == "cuda" and config(objs)["DEMUCS_COMPILE"] == "true"
    cpu = pod_spec(one(render("overlays/cpu"), "Deployment", "worker"))["containers"][0]
    assert cpu["image"].endswith("-cpu") and "nvidia.com/gpu" not in cpu["resources"]["limits"]


def test_external_s3_replaces_minio() -> None:
    objs = render("overlays/gpu-external-s3")
    assert not [o for o in objs if o["metadata"]["name"] in ("minio", "createbuckets")
                and o["kind"] in ("StatefulSet", "Job", "NetworkPolicy")]
    assert one(objs, "Service", "minio")["spec"]["type"] == "ExternalName"
    assert config(objs)["MINIO_SECURE"] == "true"


def test_redis_runs_the_shared_config() -> None:
    objs = render("overlays/cpu")
    conf = one(objs, "ConfigMap", "redis-config")
    assert conf["data"]["redis.conf"] == (ROOT / "redis" / "redis.conf").read_text()
    (redis,) = pod_spec(one(objs, "StatefulSet", "redis"))["containers"]
    assert redis["command"] == ["redis-server", "/usr/local/etc/redis/redis.conf"]


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector matches these labels (In/NotIn/Exists/DoesNotExist)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    tests = {"In": lambda v, vs: v in vs, "NotIn": lambda v, vs: v not in vs,
             "Exists": lambda v, _: v is not None, "DoesNotExist": lambda v, _: v is None}
    return all(tests[e["operator"]](labels.get(e["key"]), e.get("values", []))
               for e in selector.get("matchExpressions", []))


def _allowed_peers(objs: tuple[dict, ...], app: str) -> list[tuple[str, str, int]]:
    """(kind, who, port) allowed in to pods of `app`: ("pod", app name) or ("namespace", name)."""
    pods = {o["metadata"]["name"]: o["spec"]["template"]["metadata"]["labels"]
            for o in workloads(objs)}
    pods["intruder"] = {"app.kubernetes.io/name": "intruder"}
    policies = [p for p in objs if p["kind"] == "NetworkPolicy"
                and "Ingress" in p["spec"]["policyTypes"]
                and _selects(p["spec"]["podSelector"], pods[app])]
    assert policies, f"no NetworkPolicy restricts ingress to {app}"
    allowed = []
    for rule in (r for p in policies for r in p["spec"].get("ingress", [])):
        assert rule.get("from") and rule.get("ports"), f"{app} open to any source or port"
        for peer, port in ((f, p["port"]) for f in rule["from"] for p in rule["ports"]):
            if "namespaceSelector" in peer:
                assert "podSelector" not in peer and "ipBlock" not in peer
                allowed.append(("namespace", peer["namespaceSelector"]["matchLabels"]
                                ["kubernetes.io/metadata.name"], port))
            else:
                allowed += [("pod", name, port) for name, labels in pods.items()
                            if _selects(peer["podSelector"], labels)]
    return allowed


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies(overlay: str) -> None:
    objs = render(f"overlays/{overlay}")
    assert set(_allowed_peers(objs, "redis")) == {
        ("pod", "rest", 6379), ("pod", "worker", 6379), ("pod", "logs", 6379),
        ("namespace", "keda", 6379)}
    assert set(_allowed_peers(objs, "rest")) == {("namespace", "ingress-nginx", 5000)}
    assert _allowed_peers(objs, "worker") == [] and _allowed_peers(objs, "logs") == []
    if overlay != "gpu-external-s3":
        assert set(_allowed_peers(objs, "minio")) == {
            ("pod", "rest", 9000), ("pod", "worker", 9000), ("pod", "createbuckets", 9000)}


def test_image_tags_follow_the_project_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    images = [c["image"] for _, c in app_containers(render("overlays/gpu"))]
    images += [c["image"] for _, c in app_containers(render("overlays/cpu"))]
    images += [s["image"] for s in compose.values() if s["image"].startswith("micro-demucs/")]
    assert images and all(re.fullmatch(rf"micro-demucs/\w+:{version}(-cpu|-cuda)?", i)
                          for i in images), images
