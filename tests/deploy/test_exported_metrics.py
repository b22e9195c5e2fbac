"""Every metric named in a rule or dashboard is one that the services or redis_exporter export.

The services' names are read from their real /metrics, both started through the local stack; one real
alert (from a webhook Alertmanager truncated) goes through the gateway first, so the labels the 503-ratio
alert selects on are real ones too.
"""

from __future__ import annotations

import json
import re
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kubernaut_tools.localstack import LocalStack
from tests.deploy.manifests import render
from tests.deploy.observability import REDIS_EXPORTER_METRICS, used_metrics
from tests.deploy.promql import exposed_names

OWNERS = {"gateway_": "gateway", "context_api_": "context-api", "redis_": "redis_exporter"}


def scrape(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


def post_alert(stack: LocalStack) -> int:
    body = {
        "version": "4",
        "status": "firing",
        "receiver": "kubernaut",
        "groupKey": "k8s-deploy-test",
        "truncatedAlerts": 1,  # labelled counters show (multiprocess mode) once they have a series
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "K8sDeployMetricsCheck", "namespace": "default", "pod": "p-0"},
                "annotations": {},
                "startsAt": "2026-01-01T00:00:00Z",
            }
        ],
    }
    request = urllib.request.Request(
        f"{stack.url('gateway')}/api/v1/signals/prometheus",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {stack.gateway_token}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return int(resp.status)


def label_values(exposition: str, family: str, label: str) -> set[str]:
    return {
        sample.labels[label]
        for fam in text_string_to_metric_families(exposition)
        if fam.name == family
        for sample in fam.samples
        if label in sample.labels
    }


@pytest.mark.stack
def test_every_metric_in_rules_and_dashboards_is_exported(stack: LocalStack) -> None:
    exported = {"redis_exporter": set(REDIS_EXPORTER_METRICS)}
    pages = {}
    for service in ("gateway", "context-api"):
        stack.start_service(service)
        try:
            if service == "gateway":
                assert post_alert(stack) in (201, 202)
            pages[service] = scrape(stack.url(service))
        finally:
            stack.stop_component(service)  # leave the shared stack as the fixture promises it
        exported[service] = exposed_names(pages[service])

    used = used_metrics()
    missing = []
    for name in sorted(used):
        owner = next((o for prefix, o in OWNERS.items() if name.startswith(prefix)), None)
        if owner is None or name not in exported[owner]:
            missing.append(f"{name} (from {owner or 'nobody'})")
    assert not missing, "rules/dashboards name metrics nobody exports: " + ", ".join(missing)

    (ratio,) = [
        r["expr"]
        for rule in render("production").of_kind("PrometheusRule")
        for g in rule["spec"]["groups"]
        for r in g["rules"]
        if r.get("alert") == "GatewayHigh503Ratio"
    ]
    route_pattern = re.search(r'route=~"([^"]+)"', ratio)
    assert route_pattern is not None
    routes = label_values(pages["gateway"], "gateway_http_requests", "route")
    assert routes, "the gateway reported no request"
    assert any(re.fullmatch(route_pattern.group(1), r) for r in routes), routes
    # the rule selects status="503": statuses are reported as bare codes
    assert all(
        re.fullmatch(r"[1-5]\d\d", s)
        for s in label_values(pages["gateway"], "gateway_http_requests", "status")
    )
