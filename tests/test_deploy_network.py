"""Who reaches what: the Ingress and the Gateway API route, NetworkPolicies, and the
monitoring component's scrapes."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest

from tests.k8s import (
    OVERLAYS,
    allowed_peers,
    config,
    one,
    pod_spec,
    render,
    render_everything,
    selects,
)


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
    assert set(allowed_peers(objs, "rest")) >= {("namespace", namespace, 5000)}
    assert ("namespace", "ingress-nginx", 5000) not in set(allowed_peers(objs, "rest"))


def _seconds(duration: str) -> int:
    return sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u]
               for n, u in re.findall(r"(\d+)(h|m|s)(?!s)", duration))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies(overlay: str) -> None:
    objs = render(f"overlays/{overlay}")
    clients = {"rest", "worker", "render"}
    assert set(allowed_peers(objs, "redis")) == {
        *(("pod", name, 6379) for name in clients | {"logs"}), ("namespace", "keda", 6379)}
    assert set(allowed_peers(objs, "rest")) == {("namespace", "ingress-nginx", 5000)}
    for closed in ("worker", "render", "logs"):
        assert allowed_peers(objs, closed) == [], closed
    if overlay != "gpu-external-s3":
        assert set(allowed_peers(objs, "minio")) == {("pod", name, 9000) for name in clients}


def test_monitoring_scrapes_rest_and_every_worker() -> None:
    objs = render_everything()
    service_monitor = one(objs, "ServiceMonitor", "rest")
    (endpoint,) = service_monitor["spec"]["endpoints"]
    rest_service = one(objs, "Service", "rest")
    assert selects(service_monitor["spec"]["selector"], rest_service["metadata"]["labels"])
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {p["name"] for p in rest_service["spec"]["ports"]}
    pod_monitor = one(objs, "PodMonitor", "workers")
    (pod_endpoint,) = pod_monitor["spec"]["podMetricsEndpoints"]
    for name in ("worker", "render"):
        workload = one(objs, "Deployment", name)
        assert selects(pod_monitor["spec"]["selector"],
                        workload["spec"]["template"]["metadata"]["labels"]), name
        (container,) = pod_spec(workload)["containers"]
        assert pod_endpoint["port"] in {p["name"] for p in container["ports"]}
        assert ("namespace", "monitoring", 9100) in set(allowed_peers(objs, name))
    assert ("namespace", "monitoring", 5000) in set(allowed_peers(objs, "rest"))
    dashboard = one(objs, "ConfigMap", "micro-demucs-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    panels = json.loads(dashboard["data"]["micro-demucs.json"])["panels"]
    exprs = " ".join(t["expr"] for p in panels for t in p["targets"])
    for metric in ("micro_demucs_queue_length", "micro_demucs_jobs_finished_total",
                   "micro_demucs_worker_realtime_factor_bucket",
                   "micro_demucs_http_requests_total"):
        assert metric in exprs, metric
