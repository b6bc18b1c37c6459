"""Rendering k8s/ with `kubectl kustomize` and reading the objects, for the deployment tests."""

from __future__ import annotations

import base64
import functools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from common.settings import ENVIRONMENT

ROOT = Path(__file__).resolve().parent.parent
K8S_VERSION = "1.32.0"  # the kubectl client's minor; kubernetes-validate ships its schemas
OVERLAYS = ["cpu", "gpu", "gpu-external-s3"]
ALLOWED_EXTRAS = {"PORT", "WEB_CONCURRENCY", "HF_HOME", "TORCHINDUCTOR_CACHE_DIR",
                  "PROMETHEUS_MULTIPROC_DIR"}
SECRET_NAMES = {name for name, (_, about) in ENVIRONMENT.items() if "(secret)" in about}
WORKLOADS = ("Deployment", "StatefulSet", "Job")
NAMESPACE = "micro-demucs"
CLUSTER_SCOPED = {"Namespace"}
# The set-once values (k8s/base/values.yaml), as the file says them.
VALUES: dict[str, str] = yaml.safe_load((ROOT / "k8s" / "base" / "values.yaml").read_text())[
    "data"]
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
    return render_with_everything(ROOT / "k8s")


def render_with_everything(k8s_folder: Path) -> tuple[dict[str, Any], ...]:
    """The gpu overlay of a k8s/ folder (this one or a copy) with every optional component."""
    folder = Path(tempfile.mkdtemp(prefix="k8s-all-"))
    k8s = os.path.relpath(k8s_folder, folder)  # kustomize takes relative paths only
    (folder / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "namespace": NAMESPACE, "resources": [f"{k8s}/overlays/gpu"],
        "components": [f"{k8s}/components/{name}" for name in ALL_COMPONENTS[1:]],
    }))
    try:
        return render.__wrapped__(str(folder))
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


def container_env(objs: tuple[dict, ...], container: dict[str, Any],
                  decode: bool = False) -> dict[str, str]:
    """The environment a container starts with (Secret values base64 unless `decode`;
    fieldRefs empty)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef") or source["secretRef"]
        kind = "ConfigMap" if "configMapRef" in source else "Secret"
        found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == ref["name"]]
        assert found, f"{container['name']} reads missing {kind} {ref['name']}"
        data = found[0].get("data", {})
        if kind == "Secret" and decode:
            data = {k: base64.b64decode(v).decode() for k, v in data.items()}
        env.update(data)
    env.update({item["name"]: item.get("value", "") for item in container.get("env", [])})
    return env


def secrets_read(container: dict[str, Any]) -> set[str]:
    """Names of the Secrets a container reads, whole (envFrom) or by key."""
    names = {s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s}
    return names | {e["valueFrom"]["secretKeyRef"]["name"] for e in container.get("env", [])
                    if "secretKeyRef" in e.get("valueFrom", {})}


def is_ours(image: str) -> bool:
    """Whether an image is one this project builds (under the registry of values.yaml)."""
    return image.startswith(VALUES["registry"] + "/")


def app_containers(objs: tuple[dict, ...], init: bool = False
                   ) -> Iterator[tuple[str, dict[str, Any]]]:
    """(workload name, container) for the project's own images; init containers too if `init`."""
    for workload in workloads(objs):
        spec = pod_spec(workload)
        for container in spec["containers"] + (spec.get("initContainers", []) if init else []):
            if is_ours(container["image"]):
                yield workload["metadata"]["name"], container


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector matches these labels (In/NotIn/Exists/DoesNotExist)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    tests = {"In": lambda v, vs: v in vs, "NotIn": lambda v, vs: v not in vs,
             "Exists": lambda v, _: v is not None, "DoesNotExist": lambda v, _: v is None}
    return all(tests[e["operator"]](labels.get(e["key"]), e.get("values", []))
               for e in selector.get("matchExpressions", []))


def allowed_peers(objs: tuple[dict, ...], app: str) -> list[tuple[str, str, int]]:
    """(kind, who, port) allowed in to pods of `app`: ("pod", app name) or ("namespace", name)."""
    pods = {o["metadata"]["name"]: o["spec"]["template"]["metadata"]["labels"]
            for o in workloads(objs)}
    pods["intruder"] = {"app.kubernetes.io/name": "intruder"}
    # cert-manager's HTTP-01 solver pod, as it labels the pods it starts for a challenge.
    pods["acme-solver"] = {"acme.cert-manager.io/http01-solver": "true"}
    policies = [p for p in objs if p["kind"] == "NetworkPolicy"
                and "Ingress" in p["spec"]["policyTypes"]
                and selects(p["spec"]["podSelector"], pods[app])]
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
                            if selects(peer["podSelector"], labels)]
    return allowed


def quantity_bytes(quantity: str) -> int:
    """A Kubernetes quantity such as 512Mi or 4Gi, in bytes."""
    number, unit = re.fullmatch(r"(\d+)([KMGT]i)?", str(quantity)).groups()
    return int(number) * 1024 ** (" KMGT".index(unit[0]) if unit else 0)
