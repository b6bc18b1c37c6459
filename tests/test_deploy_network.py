"""Who reaches what: the Ingress and the Gateway API route, NetworkPolicies, and the
monitoring component's scrapes."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest

from tests.k8s import (
    NAMESPACE,
    OVERLAYS,
    VALUES,
    allowed_peers,
    config,
    one,
    pod_spec,
    render,
    render_everything,
    selects,
)

# The slowest uplink a user may upload from and still be served: a slow ADSL or mobile link.
SLOWEST_LINK_BITS_S = 4_000_000
# Storing, hashing and queuing the body once it has arrived.
AFTER_BODY_S = 60


def _largest_upload_s(objs: tuple[dict, ...]) -> float:
    """Seconds the largest JSON upload (base64 of MAX_UPLOAD_MB) takes on the slowest link."""
    return int(config(objs)["MAX_UPLOAD_MB"]) * 1024 * 1024 * 4 / 3 * 8 / SLOWEST_LINK_BITS_S


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
    body_s = int(config(objs)["BODY_TIMEOUT_S"])
    assert body_s >= _largest_upload_s(objs) > 270  # 140 MB at 4 Mbit/s: 280 s
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(notes[f"nginx.ingress.kubernetes.io/{timeout}"]) >= body_s + AFTER_BODY_S
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
    # The whole request, body included, on the slowest link: the gateway's limit, then a minute.
    body_s = int(config(objs)["BODY_TIMEOUT_S"])
    assert body_s >= _largest_upload_s(objs)
    assert _seconds(rule["timeouts"]["request"]) >= body_s + AFTER_BODY_S
    assert route["spec"]["parentRefs"] == [{"name": VALUES["gatewayName"],
                                            "namespace": VALUES["gatewayNamespace"]}]
    # Admitted: where the Gateway's proxies run, which need not be the Gateway's namespace.
    proxies = ("namespace", VALUES["gatewayProxyNamespace"])
    assert set(allowed_peers(objs, "rest")) >= {(*proxies, 5000)}
    assert set(allowed_peers(objs, "acme-solver")) == {(*proxies, 8089)}
    assert (VALUES["ingressNamespace"], 5000) not in {p[1:] for p in allowed_peers(objs, "rest")}


def _seconds(duration: str) -> int:
    return sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u]
               for n, u in re.findall(r"(\d+)(h|m|s)(?!s)", duration))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies(overlay: str) -> None:
    objs = render(f"overlays/{overlay}")
    clients = {"rest", "worker", "render"}
    assert set(allowed_peers(objs, "redis")) == {
        *(("pod", name, 6379) for name in clients | {"logs"}), ("namespace", "keda", 6379)}
    ingress = VALUES["ingressNamespace"]
    assert set(allowed_peers(objs, "rest")) == {("namespace", ingress, 5000)}
    # cert-manager's HTTP-01 solver answers the ACME server through the same controller.
    assert set(allowed_peers(objs, "acme-solver")) == {("namespace", ingress, 8089)}
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
        assert ("namespace", VALUES["monitoringNamespace"], 9100) in set(
            allowed_peers(objs, name))
    assert ("namespace", VALUES["monitoringNamespace"], 5000) in set(allowed_peers(objs, "rest"))
    # The usual operator install (kube-prometheus-stack) selects by `release`.
    for kind, name in (("ServiceMonitor", "rest"), ("PodMonitor", "workers"),
                       ("PrometheusRule", "micro-demucs")):
        labels = one(objs, kind, name)["metadata"]["labels"]
        assert labels["release"] == VALUES["prometheusRelease"], kind


# Served by every rest pod alike, read from Redis: summing them over pods multiplies them.
REDIS_WIDE = ("micro_demucs_queue_length", "micro_demucs_jobs_in_flight",
              "micro_demucs_jobs_finished_total")


def test_the_dashboard_reads_right_and_counts_cluster_figures_once() -> None:
    dashboard = one(render_everything(), "ConfigMap", "micro-demucs-dashboard")
    # A fixed name (no content hash) and a readable uid and title in Grafana.
    assert dashboard["metadata"]["name"] == "micro-demucs-dashboard"
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    (key,) = dashboard["data"]
    board = json.loads(dashboard["data"][key])
    assert key == f"{board['uid']}.json" and re.fullmatch(r"[a-z]+(-[a-z]+)+", board["uid"])
    assert board["title"].startswith("Micro Demucs ")
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    for metric in REDIS_WIDE + ("micro_demucs_worker_realtime_factor_bucket",
                                "micro_demucs_http_requests_total"):
        assert any(metric in e for e in exprs), metric
    for expr in (e for e in exprs if any(m in e for m in REDIS_WIDE)):
        assert re.match(r"max by \(\w+\) \(", expr) and "sum" not in expr, expr


def test_an_alert_warns_before_the_store_fills() -> None:
    objs = render_everything()
    rules = {r["alert"]: r for g in one(objs, "PrometheusRule", "micro-demucs")["spec"]["groups"]
             for r in g["rules"]}
    claim = one(objs, "StatefulSet", "minio")["spec"]["volumeClaimTemplates"][0]["metadata"]
    for alert, threshold in (("MicroDemucsStoreFilling", 0.8), ("MicroDemucsStoreFull", 0.95)):
        expr = rules[alert]["expr"]
        pattern = re.search(r'persistentvolumeclaim=~"([^"]+)"', expr).group(1)
        assert re.fullmatch(pattern, f"{claim['name']}-minio-0"), alert
        assert f'namespace="{NAMESPACE}"' in expr and expr.rstrip().endswith(f"> {threshold}")
    # Songs expire by default, so the store does not fill with normal use.
    assert float(config(objs)["RESULT_TTL_HOURS"]) > 0
