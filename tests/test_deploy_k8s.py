"""Kubernetes manifests: every overlay renders, validates and keeps the deployment promises.
Secrets: test_deploy_secrets.py; the workers' pods: test_deploy_workers.py."""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from common.settings import ENVIRONMENT, Settings
from tests.k8s import (
    ALLOWED_EXTRAS,
    CLUSTER_SCOPED,
    K8S_VERSION,
    NAMESPACE,
    OVERLAYS,
    ROOT,
    SECRET_NAMES,
    VALUES,
    app_containers,
    config,
    container_env,
    is_ours,
    one,
    pod_spec,
    quantity_bytes,
    render,
    render_everything,
    render_with_everything,
    selects,
    workloads,
)

CRD_APIS = ("keda.sh/", "monitoring.coreos.com/", "gateway.networking.k8s.io/")


@pytest.mark.parametrize("path", ["base", "namespace"] + [f"overlays/{name}" for name in OVERLAYS])
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
        assert obj["kind"] not in CLUSTER_SCOPED, where
        assert obj["metadata"].get("namespace") == NAMESPACE, where
    # KEDA, in its own namespace, dials Redis by the services' own REDIS_HOST: a name that
    # resolves from anywhere in the cluster.
    assert config(objs)["REDIS_HOST"] == f"redis.{NAMESPACE}.svc"


def test_deleting_the_application_keeps_the_namespace_and_its_volumes() -> None:
    """`kubectl delete -k k8s/overlays/...` deletes what the overlay renders: no Namespace (it
    would take every volume and Secret with it) and no standing PersistentVolumeClaim."""
    for overlay in OVERLAYS:
        kinds = {o["kind"] for o in render(f"overlays/{overlay}")}
        assert not kinds & {"Namespace", "PersistentVolumeClaim"}, overlay
    (namespace,) = render("namespace")
    assert namespace["kind"] == "Namespace" and namespace["metadata"]["name"] == NAMESPACE
    labels = namespace["metadata"]["labels"]
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
        for container in spec["containers"] + spec.get("initContainers", []):
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
        for container in spec["containers"]:
            where = f"{name}/{container['name']}"
            # The scheduler reserves the scratch space the pod may fill.
            requested = container["resources"]["requests"]["ephemeral-storage"]
            assert quantity_bytes(requested) >= _disk_scratch_bytes(spec), where
            assert "readinessProbe" in container and "livenessProbe" in container, where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_one_shot_job_to_reapply(overlay: str) -> None:
    """A Job's template cannot change on a later apply: MinIO's start-up makes the buckets."""
    assert not [o for o in render(f"overlays/{overlay}") if o["kind"] in ("Job", "CronJob")]


@pytest.mark.parametrize("overlay", OVERLAYS + ["everything"])
def test_every_container_keeps_its_images_entrypoint(overlay: str) -> None:
    """`args`, never `command`: tini (the worker images) or the image's own entrypoint stays
    PID 1, forwarding signals and reaping children."""
    objs = render_everything() if overlay == "everything" else render(f"overlays/{overlay}")
    for workload in workloads(objs):
        spec = pod_spec(workload)
        for container in spec["containers"] + spec.get("initContainers", []):
            assert "command" not in container, (workload["metadata"]["name"], container["name"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_third_party_images_are_pinned_by_digest(overlay: str) -> None:
    for workload in workloads(render(f"overlays/{overlay}")):
        for container in pod_spec(workload)["containers"]:
            image = container["image"]
            if is_ours(image):
                continue  # built here, under the registry of values.yaml
            assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", image), image


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
    assert render_worker["image"] == f"{VALUES['registry']}/render:1.0.0"
    assert "args" not in render_worker  # its image runs python -m worker.render
    (logs,) = pod_spec(one(objs, "Deployment", "logs"))["containers"]
    assert logs["args"] == ["python", "-m", "logs"]
    assert logs["image"] == rest["image"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_env_names_are_settings(overlay: str) -> None:
    objs = render(f"overlays/{overlay}")
    for name, container in app_containers(objs, init=True):
        env = container_env(objs, container)
        assert set(env) <= set(ENVIRONMENT) | ALLOWED_EXTRAS, (name, set(env) - set(ENVIRONMENT))
        Settings.from_env({k: v for k, v in env.items() if k not in SECRET_NAMES})


def test_configmap_covers_the_settings() -> None:
    assert set(config(render("base"))) == set(ENVIRONMENT) - SECRET_NAMES


def test_compose_uses_the_same_names() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    objs = render("overlays/cpu")
    k8s = {name: set(container_env(objs, c)) for name, c in app_containers(objs)}
    for service, deployment in {"rest": "rest", "worker": "worker", "render": "render",
                                "worker-gpu": "worker", "logs": "logs"}.items():
        # Secrets apart: on Kubernetes each service gets only its own (test_deploy_secrets.py).
        names = set(compose[service]["environment"]) - SECRET_NAMES
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


def test_external_s3_replaces_minio() -> None:
    objs = render("overlays/gpu-external-s3")
    assert not [o for o in objs if o["metadata"]["name"].startswith("minio")
                and o["kind"] in ("StatefulSet", "NetworkPolicy", "Secret", "ConfigMap")]
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


def test_image_tags_follow_the_project_version_under_one_registry() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    images = [c["image"] for overlay in ("cpu", "gpu")
              for _, c in app_containers(render(f"overlays/{overlay}"), init=True)]
    images += [s["image"] for s in compose.values() if "build" in s]
    registry = re.escape(VALUES["registry"])
    assert len(images) >= 10 and all(
        re.fullmatch(rf"{registry}/(rest|worker|render):{version}(-cpu|-cuda)?", i)
        for i in images), images
    # Spelled out: a bare name would resolve to Docker Hub (docker.io/micro-demucs/...).
    assert "." in VALUES["registry"].split("/")[0]


def _copy_with_values(tmp_path: Path, **values: str) -> Path:
    """A copy of k8s/ (and redis/, which the base includes) with some values changed."""
    shutil.copytree(ROOT / "k8s", tmp_path / "k8s")
    shutil.copytree(ROOT / "redis", tmp_path / "redis")
    path = tmp_path / "k8s" / "base" / "values.yaml"
    document = yaml.safe_load(path.read_text())
    document["data"].update(values)
    path.write_text(yaml.safe_dump(document))
    return tmp_path / "k8s"


def test_each_value_is_set_once_and_reaches_every_use(tmp_path: Path) -> None:
    """Change values.yaml alone and every object that uses a value follows."""
    changed = {"registry": "localhost:5000/team/md", "host": "stems.test.invalid",
               "ingressNamespace": "traefik", "gatewayName": "edge",
               "gatewayNamespace": "infra", "gatewayProxyNamespace": "istio-ingress",
               "monitoringNamespace": "observability", "prometheusRelease": "prom"}
    objs = render_with_everything(_copy_with_values(tmp_path, **changed))
    images = [c["image"] for w in workloads(objs)
              for c in pod_spec(w)["containers"] + pod_spec(w).get("initContainers", [])
              if "minio/" not in c["image"] and "redis:" not in c["image"]]
    assert len(images) == 5 and all(i.startswith("localhost:5000/team/md/") for i in images)
    route = one(objs, "HTTPRoute", "rest")["spec"]
    assert route["hostnames"] == ["stems.test.invalid"]
    assert route["parentRefs"] == [{"name": "edge", "namespace": "infra"}]
    for name in ("rest", "acme-http01-solver"):
        peer = one(objs, "NetworkPolicy", name)["spec"]["ingress"][0]["from"][0]
        assert peer["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": "istio-ingress"}, name
    monitoring = one(objs, "NetworkPolicy", "metrics-from-monitoring")["spec"]["ingress"][0]
    assert monitoring["from"][0]["namespaceSelector"]["matchLabels"][
        "kubernetes.io/metadata.name"] == "observability"
    for obj in objs:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            assert obj["metadata"]["labels"]["release"] == "prom", obj["metadata"]["name"]
    gpu = render.__wrapped__(str(tmp_path / "k8s" / "overlays" / "gpu"))
    ingress = one(gpu, "Ingress", "rest")["spec"]
    assert ingress["rules"][0]["host"] == "stems.test.invalid"
    assert ingress["tls"][0]["hosts"] == ["stems.test.invalid"]
    for name in ("rest", "acme-http01-solver"):
        peer = one(gpu, "NetworkPolicy", name)["spec"]["ingress"][0]["from"][0]
        assert peer["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": "traefik"}, name
    # No object keeps a placeholder, and the values object itself is never applied.
    text = yaml.safe_dump_all(objs + gpu)
    assert not re.search(r"REGISTRY|GATEWAY_NAME|GATEWAY_NAMESPACE|PROMETHEUS_RELEASE|\bHOST\b",
                         text)
    assert not [o for o in objs + gpu if o["metadata"]["name"] == "deploy-values"]
