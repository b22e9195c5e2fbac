"""ServiceMonitors, dashboards and alert rules fit together."""

from __future__ import annotations

import json
import re

import pytest

from tests.deploy.manifests import Obj, Rendered, pod_labels, render
from tests.deploy.netpol import selector_matches
from tests.deploy.observability import (
    REDIS_EXPORTER_METRICS,
    dashboard_exprs,
    dashboards,
    rule_exprs,
    used_metrics,
)
from tests.deploy.promql import exposed_names, metric_names


def test_metric_name_extraction() -> None:
    assert metric_names(
        'histogram_quantile(0.99, sum by (le) (rate(a_seconds_bucket{route=~".*/x/.*"}[5m]))) > 0.5'
    ) == {"a_seconds_bucket"}
    assert metric_names('(sum(up_b{job="x"}) or vector(0)) < 2 and on (pod) c offset 5m') == {"up_b", "c"}
    assert metric_names('time() - d_seconds{ns="$namespace"} * 1e3') == {"d_seconds"}
    assert exposed_names("# TYPE h_seconds histogram\n# TYPE c_total counter\ng 1.0\n") == {
        "h_seconds_bucket",
        "h_seconds_sum",
        "h_seconds_count",
        "c_total",
        "g",
    }


def test_dashboards_are_grafana_dashboards_shipped_as_configmaps() -> None:
    boards = dashboards()
    assert set(boards) == {"gateway", "context-api", "redis-gateway", "redis"}
    assert len({d["uid"] for d in boards.values()}) == len(boards)
    for name, board in boards.items():
        variables = {v["name"] for v in board["templating"]["list"]}
        assert {"datasource", "namespace"} <= variables, name
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        for panel in board["panels"]:
            assert panel["targets"], f"{name}/{panel['title']} has no query"
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${datasource}"
                assert 'namespace="$namespace"' in target["expr"], f"{name}/{panel['title']}"
    for overlay in ("dev", "production"):
        shipped = {
            key.removesuffix(".json"): json.loads(value)
            for cm in render(overlay).of_kind("ConfigMap")
            if cm["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
            for key, value in cm["data"].items()
        }
        assert shipped == boards


def scrape_jobs(rendered: Rendered) -> dict[str, tuple[Obj, str]]:
    """job label -> (Service, port name), as the Prometheus Operator derives them."""
    jobs = {}
    for monitor in rendered.of_kind("ServiceMonitor"):
        selector = monitor["spec"]["selector"]
        services = [
            s
            for s in rendered.of_kind("Service")
            if selector_matches(selector, s["metadata"].get("labels", {}))
        ]
        assert len(services) == 1, (
            f"ServiceMonitor {monitor['metadata']['name']} selects {len(services)} Services"
        )
        (service,) = services
        for endpoint in monitor["spec"]["endpoints"]:
            job = service["metadata"]["name"]
            for relabel in endpoint.get("relabelings", []):
                if relabel.get("targetLabel") == "job":
                    job = relabel["replacement"]
            assert job not in jobs, f"two scrape endpoints share job={job}"
            jobs[job] = (service, endpoint["port"])
    return jobs


@pytest.mark.parametrize("overlay", ["dev", "production"])
def test_servicemonitors_scrape_named_ports_of_the_right_pods(overlay: str) -> None:
    r = render(overlay)
    jobs = scrape_jobs(r)
    assert set(jobs) == {"gateway", "context-api", "redis-gateway", "redis-gateway-sentinel", "redis"}
    for job, (service, port_name) in jobs.items():
        ports = {p["name"]: p for p in service["spec"]["ports"]}
        assert port_name in ports, f"{job}: Service {service['metadata']['name']} has no port {port_name}"
        target_port = ports[port_name]["targetPort"]
        pods = [
            w
            for w in r.workloads()
            if selector_matches({"matchLabels": service["spec"]["selector"]}, pod_labels(w))
        ]
        assert len(pods) == 1, job
        container_ports = {
            p["name"] for c in pods[0]["spec"]["template"]["spec"]["containers"] for p in c["ports"]
        }
        assert target_port in container_ports, f"{job}: targetPort {target_port} is no container port"
    referenced = {
        j for expr in [*rule_exprs(r), *dashboard_exprs()] for j in re.findall(r'job="([^"]+)"', expr)
    }
    assert referenced <= set(jobs), (
        f"rules or dashboards select jobs nobody scrapes: {referenced - set(jobs)}"
    )


def test_the_documented_exporter_list_has_no_unused_names() -> None:
    assert {n for n in used_metrics() if n.startswith("redis_")} == REDIS_EXPORTER_METRICS
