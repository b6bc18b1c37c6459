"""Kubernetes manifests: every overlay renders, validates and keeps the deployment promises."""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from common.settings import ENVIRONMENT, Settings, SettingsError

ROOT = Path(__file__).resolve().parent.parent
K8S_VERSION = "1.32.0"  # the kubectl client's minor; kubernetes-validate ships its schemas
OVERLAYS = ["cpu", "gpu", "gpu-external-s3"]
ALLOWED_EXTRAS = {"PORT", "WEB_CONCURRENCY", "HF_HOME", "TORCHINDUCTOR_CACHE_DIR",
                  "PROMETHEUS_MULTIPROC_DIR"}
SECRET_NAMES = {name for name, (_, about) in ENVIRONMENT.items() if "(secret)" in about}
WORKLOADS = ("Deployment", "StatefulSet", "Job")
NAMESPACE = "micro-demucs"
CLUSTER_SCOPED = {"Namespace"}
# Every optional component at once, on top of the gpu overlay (tests render it from a temporary
# folder; kustomize reads components from anywhere).
ALL_COMPONENTS = ["keda", "monitoring", "gateway-api"]


@functools.cache
def render(path: str) -> tuple[dict[str, Any], ...]:
    """Objects that `kubectl kustomize` renders for a folder under k8s/ (or an absolute one)."""
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is missing: the manifests cannot be rendered"
    out = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "k8s" / path)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert out.returncode == 0, out.stderr
    return tuple(obj for obj in yaml.safe_load_all(out.stdout) if obj)


@functools.cache
def render_everything() -> tuple[dict[str, Any], ...]:
    """The gpu overlay with every optional component (monitoring, gateway-api) added."""
    folder = Path(tempfile.mkdtemp(prefix="k8s-all-"))
    k8s = os.path.relpath(ROOT / "k8s", folder)  # kustomize takes relative paths only
    (folder / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "namespace": NAMESPACE, "resources": [f"{k8s}/overlays/gpu"],
        "components": [f"{k8s}/components/{name}" for name in ALL_COMPONENTS[1:]],
    }))
    try:
        return render(str(folder))
    finally:
        shutil.rmtree(folder)


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
    return sum(_bytes(v["emptyDir"]["sizeLimit"]) for v in spec.get("volumes", [])
               if "emptyDir" in v and v["emptyDir"].get("medium") != "Memory")


def _bytes(quantity: str) -> int:
    """A Kubernetes quantity such as 512Mi or 4Gi, in bytes."""
    number, unit = re.fullmatch(r"(\d+)([KMGT]i)?", str(quantity)).groups()
    return int(number) * 1024 ** (" KMGT".index(unit[0]) if unit else 0)


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
            assert _bytes(requested) >= _disk_scratch_bytes(spec), where
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
            "python", "-m", "worker.healthcheck"]
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
    """Each gunicorn thread may hold one JSON upload: ~5x MAX_UPLOAD_MB (base64 text, the
    parsed string, the decoded bytes; 0.5 GB measured for 100 MB), plus each process."""
    objs = render("overlays/cpu")
    (rest,) = pod_spec(one(objs, "Deployment", "rest"))["containers"]
    processes = int(container_env(objs, rest)["WEB_CONCURRENCY"])
    conf = (ROOT / "rest" / "gunicorn.conf.py").read_text()
    threads = int(re.search(r"^threads = (\d+)$", conf, re.M).group(1))
    upload = 5 * int(config(objs)["MAX_UPLOAD_MB"]) * 1024 ** 2
    needed = processes * (threads * upload + 128 * 1024 ** 2)
    assert _bytes(rest["resources"]["limits"]["memory"]) >= needed


def test_rest_drains_before_it_stops() -> None:
    spec = pod_spec(one(render("overlays/cpu"), "Deployment", "rest"))
    (rest,) = spec["containers"]
    delay = rest["lifecycle"]["preStop"]["sleep"]["seconds"]
    graceful = int(re.search(r"^graceful_timeout = (\d+)$",
                             (ROOT / "rest" / "gunicorn.conf.py").read_text(), re.M).group(1))
    assert delay >= 5 and spec["terminationGracePeriodSeconds"] >= delay + graceful


def _nginx_bytes(size: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kKmMgG]?)", size).groups()
    return int(number) * 1024 ** " kmg".index(unit.lower() or " ")


def _routed(path: str, rules: list[tuple[str, str]]) -> bool:
    """Whether an Ingress/HTTPRoute path list (type, value) routes `path`."""
    return any(value == path if kind == "Exact"
               else path == value or path.startswith(value.rstrip("/") + "/")
               for kind, value in rules)


def test_ingress_has_a_host_tls_and_fits_the_largest_upload() -> None:
    objs = render("overlays/cpu")
    ingress = one(objs, "Ingress", "rest")
    notes = ingress["metadata"]["annotations"]
    largest = int(config(objs)["MAX_UPLOAD_MB"]) * 1024 * 1024 * 4 / 3  # base64 in JSON
    assert _nginx_bytes(notes["nginx.ingress.kubernetes.io/proxy-body-size"]) >= largest
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(notes[f"nginx.ingress.kubernetes.io/{timeout}"]) >= 300
    assert notes["cert-manager.io/cluster-issuer"]
    (rule,) = ingress["spec"]["rules"]
    (tls,) = ingress["spec"]["tls"]
    assert rule["host"] and tls["hosts"] == [rule["host"]] and tls["secretName"]
    paths = [(p["pathType"], p["path"]) for p in rule["http"]["paths"]]
    for inside in ("/metrics", "/healthz", "/readyz"):
        assert not _routed(inside, paths), inside
    for outside in ("/", "/apiv1/separate", "/static/main.js"):
        assert _routed(outside, paths), outside
    hpa = one(objs, "HorizontalPodAutoscaler", "rest")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "rest"
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"


# The HTTPRoute fields this component uses, as Gateway API v1 (standard channel) defines them.
HTTPROUTE_SCHEMA = {
    "type": "object", "required": ["parentRefs", "rules"], "additionalProperties": False,
    "properties": {
        "parentRefs": {"type": "array", "items": {
            "type": "object", "required": ["name"], "additionalProperties": False,
            "properties": {k: {"type": "string"} for k in
                           ("group", "kind", "name", "namespace", "sectionName")}}},
        "hostnames": {"type": "array", "items": {"type": "string"}},
        "rules": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "properties": {
                "matches": {"type": "array", "items": {
                    "type": "object", "additionalProperties": False, "properties": {
                        "path": {"type": "object", "additionalProperties": False,
                                 "properties": {
                                     "type": {"enum": ["Exact", "PathPrefix",
                                                       "RegularExpression"]},
                                     "value": {"type": "string", "pattern": "^/"}}}}}},
                "backendRefs": {"type": "array", "items": {
                    "type": "object", "required": ["name"], "additionalProperties": False,
                    "properties": {"name": {"type": "string"}, "port": {"type": "integer"},
                                   "weight": {"type": "integer"}}}},
                "timeouts": {"type": "object", "additionalProperties": False, "properties": {
                    "request": {"type": "string", "pattern": r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"},
                    "backendRequest": {"type": "string"}}}}}},
    },
}


def test_gateway_api_route_replaces_the_ingress() -> None:
    objs = render_everything()
    assert not [o for o in objs if o["kind"] == "Ingress"]
    route = one(objs, "HTTPRoute", "rest")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    jsonschema.validate(route["spec"], HTTPROUTE_SCHEMA)
    ingress_host = one(render("overlays/gpu"), "Ingress", "rest")["spec"]["rules"][0]["host"]
    assert route["spec"]["hostnames"] == [ingress_host]
    (rule,) = route["spec"]["rules"]
    paths = [(m["path"]["type"].replace("PathPrefix", "Prefix"), m["path"]["value"])
             for m in rule["matches"]]
    assert not _routed("/metrics", paths) and _routed("/apiv1/status/x", paths)
    service = one(objs, "Service", "rest")
    assert rule["backendRefs"] == [{"name": "rest", "port": service["spec"]["ports"][0]["port"]}]
    assert _seconds(rule["timeouts"]["request"]) >= 300
    namespace = route["spec"]["parentRefs"][0]["namespace"]
    assert set(_allowed_peers(objs, "rest")) >= {("namespace", namespace, 5000)}
    assert ("namespace", "ingress-nginx", 5000) not in set(_allowed_peers(objs, "rest"))


def _seconds(duration: str) -> int:
    return sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u]
               for n, u in re.findall(r"(\d+)(h|m|s)(?!s)", duration))


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
        assert _selects({"matchLabels": service["spec"]["selector"]},
                        stateful["spec"]["template"]["metadata"]["labels"])


def test_redis_runs_the_shared_config() -> None:
    objs = render("overlays/cpu")
    conf = one(objs, "ConfigMap", "redis-config")
    assert conf["data"]["redis.conf"] == (ROOT / "redis" / "redis.conf").read_text()
    assert "exec redis-server /usr/local/etc/redis/redis.conf" in _redis_start(objs)


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
    clients = {"rest", "worker", "render"}
    assert set(_allowed_peers(objs, "redis")) == {
        *(("pod", name, 6379) for name in clients | {"logs"}), ("namespace", "keda", 6379)}
    assert set(_allowed_peers(objs, "rest")) == {("namespace", "ingress-nginx", 5000)}
    for closed in ("worker", "render", "logs"):
        assert _allowed_peers(objs, closed) == [], closed
    if overlay != "gpu-external-s3":
        assert set(_allowed_peers(objs, "minio")) == {("pod", name, 9000) for name in clients}


def test_monitoring_scrapes_rest_and_every_worker() -> None:
    objs = render_everything()
    service_monitor = one(objs, "ServiceMonitor", "rest")
    (endpoint,) = service_monitor["spec"]["endpoints"]
    rest_service = one(objs, "Service", "rest")
    assert _selects(service_monitor["spec"]["selector"], rest_service["metadata"]["labels"])
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {p["name"] for p in rest_service["spec"]["ports"]}
    pod_monitor = one(objs, "PodMonitor", "workers")
    (pod_endpoint,) = pod_monitor["spec"]["podMetricsEndpoints"]
    for name in ("worker", "render"):
        workload = one(objs, "Deployment", name)
        assert _selects(pod_monitor["spec"]["selector"],
                        workload["spec"]["template"]["metadata"]["labels"]), name
        (container,) = pod_spec(workload)["containers"]
        assert pod_endpoint["port"] in {p["name"] for p in container["ports"]}
        assert ("namespace", "monitoring", 9100) in set(_allowed_peers(objs, name))
    assert ("namespace", "monitoring", 5000) in set(_allowed_peers(objs, "rest"))
    dashboard = one(objs, "ConfigMap", "micro-demucs-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    panels = json.loads(dashboard["data"]["micro-demucs.json"])["panels"]
    exprs = " ".join(t["expr"] for p in panels for t in p["targets"])
    for metric in ("micro_demucs_queue_length", "micro_demucs_jobs_finished_total",
                   "micro_demucs_worker_realtime_factor_bucket",
                   "micro_demucs_http_requests_total"):
        assert metric in exprs, metric


def test_image_tags_follow_the_project_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    images = [c["image"] for _, c in app_containers(render("overlays/gpu"))]
    images += [c["image"] for _, c in app_containers(render("overlays/cpu"))]
    images += [s["image"] for s in compose.values() if s["image"].startswith("micro-demucs/")]
    assert images and all(re.fullmatch(rf"micro-demucs/\w+:{version}(-cpu|-cuda)?", i)
                          for i in images), images
