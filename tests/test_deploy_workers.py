"""The worker pods: probes, the GPU overlay, the models they fetch, their disk, what the node
autoscalers may do with them; and Redis's memory."""

from __future__ import annotations

import re

import pytest

from tests.k8s import (
    OVERLAYS,
    ROOT,
    config,
    container_env,
    one,
    pod_spec,
    quantity_bytes,
    render,
)

SAMPLE_RATE, CHANNELS, BYTES = 44100, 2, 3  # the lossless stems: 24-bit stereo at 44.1 kHz
MOST_STEMS = 6  # htdemucs_6s, bs_roformer_sw (common/catalogue.toml)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_liveness_never_depends_on_redis(overlay: str) -> None:
    """A Redis failover must not restart workers (and lose their songs): liveness asks the
    process (/healthz, which fails only when the claim loop stalls); readiness may ask Redis."""
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
        if name != "logs":  # its stall bound: a documented setting, longer for renditions
            bound = int(container_env(objs, container)["STALL_TIMEOUT_S"])
            assert bound >= (900 if name == "render" else 300), name


@pytest.mark.parametrize("overlay", ["gpu", "gpu-external-s3"])
def test_gpu_overlay(overlay: str) -> None:
    objs = render(f"overlays/{overlay}")
    spec = pod_spec(one(objs, "Deployment", "worker"))
    (worker,) = spec["containers"]
    (models,) = spec["initContainers"]
    assert worker["image"].endswith("-cuda") and models["image"] == worker["image"]
    resources = worker["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == 1
    # The GPU request places the pod; a GPU Feature Discovery label may not exist.
    assert "nodeSelector" not in spec and "affinity" not in spec
    mounts = {m["mountPath"]: m["name"] for m in worker["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
    # Compiled kernels on a volume that allows exec, one per pod from the default StorageClass
    # (ReadWriteOnce, which every cloud's default class offers and fsGroup applies to).
    claim = volumes[mounts["/cache"]]["ephemeral"]["volumeClaimTemplate"]["spec"]
    assert claim["accessModes"] == ["ReadWriteOnce"] and "storageClassName" not in claim
    assert spec["securityContext"]["fsGroup"] == 10001
    assert not [o for o in objs if o["kind"] == "PersistentVolumeClaim"]
    assert config(objs)["DEMUCS_DEVICE"] == "cuda" and config(objs)["DEMUCS_COMPILE"] == "true"
    cpu = pod_spec(one(render("overlays/cpu"), "Deployment", "worker"))["containers"][0]
    assert cpu["image"].endswith("-cpu") and "nvidia.com/gpu" not in cpu["resources"]["limits"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_served_model_is_fetched_into_a_writable_volume(overlay: str) -> None:
    """Not only the model baked into the image: an init container downloads the model the
    worker loads into the `models` volume, and the worker loads it from there."""
    objs = render(f"overlays/{overlay}")
    spec = pod_spec(one(objs, "Deployment", "worker"))
    (models,) = spec["initContainers"]
    (worker,) = spec["containers"]
    assert models["args"][:4] == ["python", "-m", "worker.separation.fetch_model", "download"]
    # Its own model, as Kubernetes expands $(NAME) from the container's environment.
    assert [a for a in models["args"][4:] if not a.startswith("--")] == ["$(DEMUCS_MODEL)"]
    assert container_env(objs, models)["DEMUCS_MODEL"] == container_env(objs, worker)[
        "DEMUCS_MODEL"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    folder = container_env(objs, models)["MODELS_DIR"]
    assert folder and container_env(objs, worker)["MODELS_DIR"] == folder
    (fetched,) = [m for m in models["volumeMounts"] if m["mountPath"] == folder]
    (loaded,) = [m for m in worker["volumeMounts"] if m["mountPath"] == folder]
    assert fetched["name"] == loaded["name"] and not fetched.get("readOnly")
    assert "emptyDir" in volumes[fetched["name"]]  # the pod's own: no shared claim to pend
    # The fetch needs no credential and the catalogue module it reads ships in the image.
    assert not [e for e in models.get("envFrom", []) if "secretRef" in e]
    assert (ROOT / "common" / "catalogue.toml").exists()


def test_render_scratch_holds_the_worst_case() -> None:
    """A 3-hour song (MAX_DURATION_S) of a 6-stem model rendered to WAV-24: its stems
    (FLAC saves nothing on noise) and every track, which may all be on disk at once."""
    objs = render("overlays/cpu")
    spec = pod_spec(one(objs, "Deployment", "render"))
    one_file = int(config(objs)["MAX_DURATION_S"]) * SAMPLE_RATE * CHANNELS * BYTES
    worst = 2 * MOST_STEMS * one_file
    assert worst > 34e9
    (tmp,) = [v for v in spec["volumes"] if v["name"] == "tmp"]
    assert quantity_bytes(tmp["emptyDir"]["sizeLimit"]) >= worst


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_node_autoscalers_leave_busy_workers_alone(overlay: str) -> None:
    for name in ("worker", "render"):
        notes = one(render(f"overlays/{overlay}"), "Deployment", name)["spec"]["template"][
            "metadata"]["annotations"]
        assert notes["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false", name
        assert notes["karpenter.sh/do-not-disrupt"] == "true", name


def test_redis_memory_holds_a_fork_under_writes() -> None:
    """An AOF rewrite or RDB save forks; copy-on-write may duplicate every page of maxmemory."""
    conf = (ROOT / "redis" / "redis.conf").read_text()
    number, unit = re.search(r"^maxmemory (\d+)(mb|gb)$", conf, re.M).groups()
    maxmemory = int(number) * 1024 ** (2 if unit == "mb" else 3)
    assert re.search(r"^appendonly yes$", conf, re.M)
    (redis,) = pod_spec(one(render("overlays/cpu"), "StatefulSet", "redis"))["containers"]
    limit = quantity_bytes(redis["resources"]["limits"]["memory"])
    assert limit >= 2 * maxmemory + 256 * 1024 ** 2
    assert redis["resources"]["requests"]["memory"] == redis["resources"]["limits"]["memory"]
