"""The KEDA objects: their fields and types as KEDA's CRDs define them, and their arithmetic
replayed against a real Redis and the real claim scripts, so that no busy worker is ever
scaled away in the middle of a job."""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import redis

from common import keys, operations
from common.jobs import JobStatus, JobStore, render_id
from tests.k8s import K8S_VERSION, OVERLAYS, config, container_env, one, pod_spec, render

# ScaledObject (keda.sh/v1alpha1) spec, as KEDA's CRD (config/crd/bases/keda.sh_scaledobjects.yaml,
# KEDA 2.12+) types it: int32 counts, string-only trigger metadata, scalingModifiers of four
# strings with metricType AverageValue or Value, required scaleTargetRef.name and triggers[].
# The HPA behavior inside is Kubernetes' own type, validated with the Kubernetes schemas below.
_STRING, _INT = {"type": "string"}, {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}
SCALED_OBJECT_SPEC = {
    "type": "object", "required": ["scaleTargetRef", "triggers"], "additionalProperties": False,
    "properties": {
        "scaleTargetRef": {"type": "object", "required": ["name"], "additionalProperties": False,
                           "properties": {"name": {"type": "string", "minLength": 1},
                                          "apiVersion": _STRING, "kind": _STRING,
                                          "envSourceContainerName": _STRING}},
        **{name: _INT for name in ("pollingInterval", "cooldownPeriod", "initialCooldownPeriod",
                                   "idleReplicaCount", "minReplicaCount", "maxReplicaCount")},
        "advanced": {"type": "object", "additionalProperties": False, "properties": {
            "horizontalPodAutoscalerConfig": {
                "type": "object", "additionalProperties": False,
                "properties": {"name": _STRING, "behavior": {"type": "object"}}},
            "restoreToOriginalReplicaCount": {"type": "boolean"},
            "scalingModifiers": {
                "type": "object", "additionalProperties": False,
                "properties": {"formula": _STRING, "target": _STRING,
                               "activationTarget": _STRING,
                               "metricType": {"enum": ["AverageValue", "Value"]}}}}},
        "fallback": {"type": "object", "required": ["failureThreshold", "replicas"],
                     "additionalProperties": False,
                     "properties": {"failureThreshold": _INT, "replicas": _INT,
                                    "behavior": _STRING}},
        "triggers": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["type", "metadata"], "additionalProperties": False,
            "properties": {
                "type": _STRING, "name": _STRING, "useCachedMetrics": {"type": "boolean"},
                "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                "metadata": {"type": "object", "additionalProperties": _STRING},
                "authenticationRef": {"type": "object", "required": ["name"],
                                      "additionalProperties": False,
                                      "properties": {"name": _STRING, "kind": _STRING}}}}},
    },
}
# TriggerAuthentication (keda.sh/v1alpha1): secretTargetRef items need all three strings.
TRIGGER_AUTHENTICATION_SPEC = {
    "type": "object", "additionalProperties": False, "properties": {
        "secretTargetRef": {"type": "array", "items": {
            "type": "object", "required": ["parameter", "name", "key"],
            "additionalProperties": False,
            "properties": {"parameter": _STRING, "name": _STRING, "key": _STRING}}}}}
# Metadata keys of KEDA's `redis` (Redis Lists) scaler; the password comes from the auth.
KEDA_REDIS_KEYS = {
    "address", "addressFromEnv", "host", "hostFromEnv", "port", "portFromEnv",
    "usernameFromEnv", "passwordFromEnv", "listName", "listLength", "activationListLength",
    "enableTLS", "unsafeSsl", "databaseIndex",
}
QUEUES = {"worker": keys.QUEUE, "render": keys.RENDER_QUEUE}
# Slowest rate a separation worker runs at, audio seconds per second: on the 2 cores a CPU
# worker requests, BENCHMARKS.md measured 1.2x to 2.0x for htdemucs; on the slowest GPU the gpu
# overlay is meant for, 10x (planning figures: 93x stock and 450x batched on an H200). A GPU
# worker's first song also pays torch.compile (about 2 minutes) and the CPU side of a 3-hour
# song (decode, FLAC, upload): GPU_OVERHEAD_S.
SLOWEST_RATE = {"cpu": 1.0, "gpu": 10.0, "gpu-external-s3": 10.0}
GPU_OVERHEAD_S = 300
MODEL, MP3 = "htdemucs", "mp3-320"


def scaled_objects(overlay: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in render(f"overlays/{overlay}")
            if o["kind"] == "ScaledObject"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_scaled_objects_match_kedas_crd(overlay: str) -> None:
    objs = render(f"overlays/{overlay}")
    for name, scaled in scaled_objects(overlay).items():
        assert scaled["apiVersion"] == "keda.sh/v1alpha1"
        spec = scaled["spec"]
        jsonschema.validate(spec, SCALED_OBJECT_SPEC)
        assert one(objs, "Deployment", spec["scaleTargetRef"]["name"])
        behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        kubernetes_validate.validate({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": name},
                     "maxReplicas": spec["maxReplicaCount"], "behavior": behavior},
        }, K8S_VERSION, strict=True)
        names = {t["name"] for t in spec["triggers"]}
        assert set(formula_names(spec["advanced"]["scalingModifiers"]["formula"])) == names
        for trigger in spec["triggers"]:
            assert trigger["type"] == "redis"
            meta = trigger["metadata"]
            assert set(meta) <= KEDA_REDIS_KEYS, set(meta) - KEDA_REDIS_KEYS
            assert meta["listLength"].isdigit() and meta["databaseIndex"] == (
                config(objs)["REDIS_DB"])
            # Redis's address from the target's own settings, as the services have it.
            assert "address" not in meta and "host" not in meta and "port" not in meta
            (target,) = pod_spec(one(objs, "Deployment", name))["containers"]
            env = container_env(objs, target)
            assert env[meta["hostFromEnv"]] == config(objs)["REDIS_HOST"]
            assert env[meta["portFromEnv"]] == config(objs)["REDIS_PORT"]
    auth = one(objs, "TriggerAuthentication", "redis")
    jsonschema.validate(auth["spec"], TRIGGER_AUTHENTICATION_SPEC)


def test_the_crd_statement_catches_a_wrong_type() -> None:
    spec = copy.deepcopy(scaled_objects("cpu")["worker"]["spec"])
    spec["triggers"][0]["metadata"]["listLength"] = 1  # KEDA takes strings only
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(spec, SCALED_OBJECT_SPEC)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_queue_is_counted_with_its_in_flight_list(overlay: str) -> None:
    for name, queue in QUEUES.items():
        triggers = scaled_objects(overlay)[name]["spec"]["triggers"]
        assert {t["metadata"]["listName"] for t in triggers} == {queue, keys.inflight(queue)}


def graces(objs: tuple[dict, ...]) -> dict[str, int]:
    """SHUTDOWN_GRACE_S of each Deployment's worker, as its container gets it."""
    return {name: int(container_env(objs, pod_spec(one(objs, "Deployment", name))[
        "containers"][0])["SHUTDOWN_GRACE_S"]) for name in QUEUES}


def longest_job_s(objs: tuple[dict, ...], overlay: str) -> float:
    """The longest song allowed at the slowest rate of the overlay's separation workers."""
    overhead = GPU_OVERHEAD_S if overlay.startswith("gpu") else 0
    return int(config(objs)["MAX_DURATION_S"]) / SLOWEST_RATE[overlay] + overhead


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_stopped_worker_has_time_for_the_longest_job(overlay: str) -> None:
    objs = render(f"overlays/{overlay}")
    for name, grace in graces(objs).items():
        # Renditions are encoded on CPUs in either overlay: sized as a CPU separation.
        assert grace >= longest_job_s(objs, overlay if name == "worker" else "cpu"), name
        spec = pod_spec(one(objs, "Deployment", name))
        assert spec["terminationGracePeriodSeconds"] >= grace + 30, name  # time to hand back
    if overlay.startswith("gpu"):  # sized from the GPU's speed, not the CPU's 3.5 hours
        assert graces(objs)["worker"] <= 2 * longest_job_s(objs, overlay)


def formula_names(formula: str) -> list[str]:
    """Trigger names of a sum formula (`a + b`), the only form these objects use."""
    assert re.fullmatch(r"\w+( \+ \w+)*", formula), formula
    return formula.split(" + ")


@dataclass
class Scaler:
    """KEDA and the HPA it drives, for one ScaledObject: activation from zero, cooldown back to
    zero, and in between replicas = ceil(formula / target), scale-down stabilized over the
    window and limited by its Pods policy (the Kubernetes HPA algorithm)."""

    spec: dict[str, Any]
    client: redis.Redis
    replicas: int = 0
    last_active: float = -math.inf
    recommendations: list[tuple[float, int]] = field(default_factory=list)
    removals: list[float] = field(default_factory=list)

    def value(self) -> float:
        lists = {t["name"]: t["metadata"]["listName"] for t in self.spec["triggers"]}
        formula = self.spec["advanced"]["scalingModifiers"]["formula"]
        return sum(self.client.llen(lists[name]) for name in formula_names(formula))

    def poll(self, now: float) -> None:
        modifiers = self.spec["advanced"]["scalingModifiers"]
        value = self.value()
        if value > float(modifiers["activationTarget"]):
            self.last_active = now
            if self.replicas == 0:
                self.replicas = 1  # KEDA activates the target itself
                return
        elif self.replicas and now - self.last_active >= self.spec["cooldownPeriod"]:
            self.replicas = 0  # KEDA deactivates: minReplicaCount 0
            return
        if self.replicas == 0:
            return
        desired = min(max(math.ceil(value / float(modifiers["target"])), 1),
                      self.spec["maxReplicaCount"])
        down = self.spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
        (policy,) = down["policies"]
        assert policy["type"] == "Pods"
        self.recommendations = [(t, d) for t, d in self.recommendations
                                if t > now - down["stabilizationWindowSeconds"]]
        self.recommendations.append((now, desired))
        stabilized = max(d for _, d in self.recommendations)
        if stabilized >= self.replicas:
            self.replicas = stabilized
            return
        self.removals = [t for t in self.removals if t > now - policy["periodSeconds"]]
        allowed = max(policy["value"] - len(self.removals), 0)
        fewer = min(self.replicas - stabilized, allowed)
        self.removals += [now] * fewer
        self.replicas -= fewer


@dataclass
class Pod:
    name: str
    job: str = ""
    token: str = ""
    ends_at: float = 0.0
    stopping_since: float | None = None


@dataclass
class Pool:
    """The pods of one Deployment, working jobs through the real claim scripts. On scale-in
    the ReplicaSet is assumed to pick a busy pod, the worst case."""

    name: str
    store: JobStore
    grace: float
    durations: dict[str, float]
    pods: list[Pod] = field(default_factory=list)
    handed_back: list[str] = field(default_factory=list)
    started: int = 0

    def step(self, now: float, replicas: int) -> None:
        running = [p for p in self.pods if p.stopping_since is None]
        for _ in range(replicas - len(running)):
            self.started += 1
            self.pods.append(Pod(f"{self.name}-{self.started}"))
        for pod in sorted(running, key=lambda p: not p.job)[:max(len(running) - replicas, 0)]:
            pod.stopping_since = now
        for pod in list(self.pods):
            if pod.job and pod.ends_at <= now:
                self.end(pod)
            if pod.stopping_since is not None:
                if pod.job and now - pod.stopping_since >= self.grace:
                    assert self.store.hand_back(pod.job, pod.name, pod.token)
                    self.handed_back.append(pod.job)
                    pod.job = ""
                if not pod.job:
                    self.pods.remove(pod)
            elif not pod.job:
                self.claim(pod, now)

    def claim(self, pod: Pod, now: float) -> None:
        if not self.store.queue_length(QUEUES[self.name]):
            return  # spares the claim's blocking wait on an empty queue
        job = self.store.claim(pod.name, 0.01, QUEUES[self.name])
        if job:
            pod.job, pod.token = job, self.store.start(job, pod.name)
            pod.ends_at = now + self.durations[job]

    def end(self, pod: Pod) -> None:
        job = self.store.get(pod.job)
        if self.name == "worker":
            assert self.store.hand_off(pod.job, pod.name, pod.token, job.song,
                                      render_id(job.song, MODEL, MP3), {}) == "rendering"
        else:
            assert self.store.finish(pod.job, pod.name, pod.token, JobStatus.DONE,
                                     tracks=["bass.mp3"], parent=job.parent)
        pod.job = ""


def replay(client: redis.Redis, scaled: dict[str, dict], grace: dict[str, int],
           separations: dict[str, float], seconds: float) -> dict[str, Any]:
    """Run songs of the given separation times through both Deployments as KEDA would scale
    them; returns what happened."""
    store = JobStore(client, MODEL)
    for song in separations:
        store.enqueue(song, None, 100, model=MODEL, rendition=MP3)
    # Each song's rendition, then its studio operations, which its hand-off queues behind it.
    durations = {**separations, **{render_id(s, MODEL, MP3): 60.0 for s in separations},
                 **{render_id(s, MODEL, op): 30.0 for s in separations
                    for op in operations.STUDIO}}
    scalers = {name: Scaler(scaled[name]["spec"], client) for name in QUEUES}
    pools = {name: Pool(name, store, grace[name], durations) for name in QUEUES}
    never_below_busy, peak = True, dict.fromkeys(QUEUES, 0)
    interval = scaled["worker"]["spec"]["pollingInterval"]
    for tick in range(int(seconds // interval)):
        now = tick * interval
        for name, scaler in scalers.items():
            scaler.poll(now)
            busy = client.llen(keys.inflight(QUEUES[name]))
            never_below_busy &= scaler.replicas >= busy
            peak[name] = max(peak[name], scaler.replicas)
            pools[name].step(now, scaler.replicas)
    return {"done": [s for s in separations if store.get(s).status is JobStatus.DONE],
            "handed_back": [j for p in pools.values() for j in p.handed_back],
            "never_below_busy": never_below_busy, "peak": peak,
            "replicas": {name: s.replicas for name, s in scalers.items()}}


def songs(objs: tuple[dict, ...], overlay: str = "cpu") -> dict[str, float]:
    """The longest song allowed at the slowest rate, beside two short ones."""
    return {"a" * 64: longest_job_s(objs, overlay), "b" * 64: 120.0, "c" * 64: 30.0}


@pytest.mark.parametrize("overlay", ["cpu", "gpu"])
def test_no_job_is_lost_to_a_scale_in_and_idle_workers_go_to_zero(redis_client, overlay):
    objs = render(f"overlays/{overlay}")
    scaled = scaled_objects(overlay)
    separations = songs(objs, overlay)
    assert max(separations.values()) > scaled["worker"]["spec"]["cooldownPeriod"] * 2
    outcome = replay(redis_client, scaled, graces(objs), separations,
                     max(separations.values()) + 1800)
    assert outcome["handed_back"] == []
    assert sorted(outcome["done"]) == sorted(separations)
    assert outcome["replicas"] == {"worker": 0, "render": 0}
    # CPU: one worker per job, so no busy worker is ever scaled away. GPU: several songs per
    # pod, so a scale-in may stop a busy pod, which finishes its song within its grace.
    assert outcome["never_below_busy"] or overlay == "gpu"


def test_gpu_pods_are_started_per_batch_of_songs_not_per_song(redis_client):
    """A burst of short songs starts one GPU pod per `target` songs, where the CPU overlay
    starts one per song (up to maxReplicaCount), and the last GPU pod goes soon after."""
    burst = {f"{n:064x}": 20.0 for n in range(12)}
    peaks = {}
    for overlay in ("cpu", "gpu"):
        redis_client.flushdb()
        outcome = replay(redis_client, scaled_objects(overlay),
                         graces(render(f"overlays/{overlay}")), burst, 900)
        peaks[overlay] = outcome["peak"]["worker"]
    cpu, gpu = (scaled_objects(overlay)["worker"]["spec"] for overlay in ("cpu", "gpu"))
    target = float(gpu["advanced"]["scalingModifiers"]["target"])
    assert peaks["gpu"] == math.ceil(len(burst) / target) < peaks["cpu"]
    assert gpu["minReplicaCount"] == 0 and gpu["cooldownPeriod"] < cpu["cooldownPeriod"]


def test_the_replay_catches_a_queue_only_trigger(redis_client):
    """The old objects (queue length alone, 60 s of grace) lose the long song mid-job."""
    objs = render("overlays/cpu")
    scaled = copy.deepcopy(scaled_objects("cpu"))
    for scaled_object in scaled.values():
        spec = scaled_object["spec"]
        spec["triggers"] = [t for t in spec["triggers"] if t["name"] == "queued"]
        spec["advanced"]["scalingModifiers"]["formula"] = "queued"
    separations = songs(objs)
    outcome = replay(redis_client, scaled, dict.fromkeys(QUEUES, 60), separations,
                     max(separations.values()) + 1800)
    assert "a" * 64 in outcome["handed_back"] and not outcome["never_below_busy"]
