"""docs/deploying.md says what the files do: each figure, name and path it quotes is taken from
the rendered manifests, docker-compose.yml, the Dockerfiles or the scripts and looked for in
the guide, so that a change to either side that the other does not follow fails here."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.k8s import (
    ROOT,
    VALUES,
    app_containers,
    config,
    container_env,
    one,
    pod_spec,
    render,
    render_everything,
)
from tests.test_deploy_network import SLOWEST_LINK_BITS_S

GUIDE = ROOT / "docs" / "deploying.md"
TEXT = " ".join(GUIDE.read_text().split())  # line breaks and indents do not matter
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def says(*phrases: str) -> None:
    """Each phrase appears in the guide, whitespace aside."""
    for phrase in phrases:
        assert " ".join(phrase.split()) in TEXT, f"docs/deploying.md does not say: {phrase}"


def _unit(quantity: str) -> str:
    """A Kubernetes quantity as the guide writes it: 4Gi -> 4 GiB, 1536Mi -> 1536 MiB."""
    number, unit = re.fullmatch(r"(\d+)([KMG]i)", quantity).groups()
    return f"{number} {unit}B"


def _container(objs: tuple[dict, ...], kind: str, name: str) -> dict:
    return pod_spec(one(objs, kind, name))["containers"][0]


def test_images_values_and_secrets() -> None:
    for overlay in ("cpu", "gpu"):
        for _, container in app_containers(render(f"overlays/{overlay}"), init=True):
            says(f"| `{container['image']}` |")
    for key, value in VALUES.items():
        says(f"| `{key}` | `{value}` |")
    secrets = [o for o in render("base") if o["kind"] == "Secret"]
    assert len(secrets) == 7
    for secret in secrets:
        name = secret["metadata"]["name"].rsplit("-", 1)[0]
        (row,) = [line for line in GUIDE.read_text().splitlines()
                  if line.startswith(f"| `{name}` |")]
        assert set(re.findall(r"`(\w+)`", row.split("|")[2])) == set(secret["data"]), name
    assert COMPOSE["worker"]["environment"]["CALLBACK_ALLOW_PRIVATE"].endswith(":-false}")
    says("(`CALLBACK_ALLOW_PRIVATE` is `false`)", "(`pull_policy: build`)")


def test_grace_and_scaling() -> None:
    cpu, gpu = render("overlays/cpu"), render("overlays/gpu")
    grace = config(cpu)["SHUTDOWN_GRACE_S"]
    says(f"`SHUTDOWN_GRACE_S` ({grace} s)",
         f"(`MAX_DURATION_S`, {config(cpu)['MAX_DURATION_S']} s,")
    period = pod_spec(one(cpu, "Deployment", "worker"))["terminationGracePeriodSeconds"]
    says(f"`terminationGracePeriodSeconds` ({period} s)")
    gpu_grace = container_env(gpu, _container(gpu, "Deployment", "worker"))["SHUTDOWN_GRACE_S"]
    gpu_period = pod_spec(one(gpu, "Deployment", "worker"))["terminationGracePeriodSeconds"]
    says(f"sized from the GPU's speed: {gpu_grace} s",
         f"`terminationGracePeriodSeconds` {gpu_period} s")
    (cache,) = [v["ephemeral"]["volumeClaimTemplate"]["spec"] for v in pod_spec(
        one(gpu, "Deployment", "worker"))["volumes"] if v["name"] == "compile-cache"]
    says(f"a generic ephemeral volume of {_unit(cache['resources']['requests']['storage'])}")
    worker, render_ = (one(cpu, "ScaledObject", n)["spec"] for n in ("worker", "render"))
    window = worker["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    says(f"(worker {worker['maxReplicaCount']}, render {render_['maxReplicaCount']})",
         f"after a {window['stabilizationWindowSeconds']} s window")
    policy = one(gpu, "ScaledObject", "worker")["spec"]
    down = policy["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    says(f"one pod per {policy['advanced']['scalingModifiers']['target']} songs",
         f"after {down['stabilizationWindowSeconds']} s of lower demand",
         f"the last one {policy['cooldownPeriod']} s after the queue empties",
         f"(`minReplicaCount` {policy['minReplicaCount']})")
    hpa = one(cpu, "HorizontalPodAutoscaler", "rest")["spec"]
    utilization = hpa["metrics"][0]["resource"]["target"]["averageUtilization"]
    says(f"keeps {hpa['minReplicas']} to {hpa['maxReplicas']} replicas at {utilization} % CPU")
    rest = _container(cpu, "Deployment", "rest")
    says(f"memory limit ({_unit(rest['resources']['limits']['memory'])})",
         f"`MAX_CONCURRENT_UPLOADS` ({config(cpu)['MAX_CONCURRENT_UPLOADS']})",
         f"`WEB_CONCURRENCY` ({container_env(cpu, rest)['WEB_CONCURRENCY']})")


def test_uploads_models_probes_and_storage() -> None:
    objs = render_everything()
    notes = one(render("overlays/cpu"), "Ingress", "rest")["metadata"]["annotations"]
    route = one(objs, "HTTPRoute", "rest")["spec"]["rules"][0]["timeouts"]["request"]
    timeouts = {notes["nginx.ingress.kubernetes.io/proxy-read-timeout"],
                notes["nginx.ingress.kubernetes.io/proxy-send-timeout"], route.rstrip("s")}
    (timeout,) = timeouts
    says(f"bodies up to {notes['nginx.ingress.kubernetes.io/proxy-body-size'][:-1]} MB",
         f"is {SLOWEST_LINK_BITS_S // 1_000_000} Mbit/s",
         f"`BODY_TIMEOUT_S` is {config(objs)['BODY_TIMEOUT_S']} s",
         f"`timeouts.request`) are {timeout} s")
    spec = pod_spec(one(objs, "Deployment", "worker"))
    (models,) = spec["initContainers"]
    (volume,) = [v for v in spec["volumes"] if v["name"] == "models"]
    says(f"`{' '.join(models['args'])}`", f"`emptyDir` of {_unit(volume['emptyDir']['sizeLimit'])}",
         f"(`MODELS_DIR={container_env(objs, models)['MODELS_DIR']}`)")
    render_ = _container(objs, "Deployment", "render")
    says(f"`STALL_TIMEOUT_S` ({config(objs)['STALL_TIMEOUT_S']} s; the render workers "
         f"{container_env(objs, render_)['STALL_TIMEOUT_S']} s")
    claim = one(objs, "StatefulSet", "minio")["spec"]["volumeClaimTemplates"][0]["spec"]
    storage = claim["resources"]["requests"]["storage"]
    says(f"(`RESULT_TTL_HOURS` {config(objs)['RESULT_TTL_HOURS']};",
         f"MinIO's {storage[:-2]} {storage[-2:]} volume")
    rules = {r["alert"]: r for g in one(objs, "PrometheusRule", "micro-demucs")["spec"]["groups"]
             for r in g["rules"]}
    for alert, rule in rules.items():
        percent = round(float(rule["expr"].split(">")[-1]) * 100)
        minutes = int(rule["for"].rstrip("m"))
        says(f"`{alert}` over {percent} % for {minutes} minutes")
    conf = (ROOT / "redis" / "redis.conf").read_text()
    maxmemory = re.search(r"^maxmemory (\d+)mb$", conf, re.M).group(1)
    says(f"`maxmemory` {maxmemory} MB")
    redis = _container(objs, "StatefulSet", "redis")["resources"]
    assert redis["requests"]["memory"] == redis["limits"]["memory"]
    says(f"request and limit are {_unit(redis['limits']['memory'])}")
    (tmp,) = [v for v in pod_spec(one(objs, "Deployment", "render"))["volumes"]
              if v["name"] == "tmp"]
    says(f"(`/tmp`, {_unit(tmp['emptyDir']['sizeLimit'])})")


def test_metrics_images_and_kind() -> None:
    objs = render_everything()
    says(f"`METRICS_PORT` ({config(objs)['METRICS_PORT']} in the ConfigMap)")
    dashboard = one(objs, "ConfigMap", "micro-demucs-dashboard")
    board = json.loads(next(iter(dashboard["data"].values())))
    says(f"\"{board['title']}\" (uid `{board['uid']}`;",
         f"ConfigMap `{dashboard['metadata']['name']}`")
    for dockerfile in ("rest/Dockerfile", "worker/Dockerfile", "worker/render/Dockerfile"):
        base = re.search(r"^FROM (\S+)@", (ROOT / dockerfile).read_text(), re.M).group(1)
        says(f"| `{base}` (the three Dockerfiles) |")
    for kind, name in (("StatefulSet", "redis"), ("StatefulSet", "minio")):
        says(f"| `{_container(objs, kind, name)['image'].split('@')[0]}` |")
    script = (ROOT / "scripts" / "deploy" / "kind-check").read_text()
    keda = re.search(r"KEDA_VERSION=\$\{KEDA_VERSION:-([\d.]+)\}", script).group(1)
    cluster = re.search(r"CLUSTER=\$\{CLUSTER:-([\w-]+)\}", script).group(1)
    song = re.search(r"SONG=\$\{SONG:-([^}]+)\}", script).group(1)
    says(f"download/v{keda}/keda-{keda}.yaml", f"the kind cluster `{cluster}`", f"`{song}`")


@pytest.mark.parametrize("path", sorted(set(re.findall(
    r"`((?:k8s|scripts|tests|docs|worker|rest|common|redis|data)/[\w./*-]+)`", TEXT))))
def test_every_path_it_names_exists(path: str) -> None:
    if "*" in path:
        assert list(ROOT.glob(path)), path
    elif not path.startswith("k8s/overlays/prod"):  # the overlay the reader makes
        assert (ROOT / path.rstrip("/")).exists(), path
    assert Path(GUIDE).exists()
