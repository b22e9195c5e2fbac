"""`up --with-alerting`: real Prometheus and Alertmanager load the local rules and route to the gateway."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from kubernaut_tools.localstack import LocalStack
from kubernaut_tools.localstack.alerting import RECEIVER, RULES, WEBHOOK_PATH
from kubernaut_tools.localstack.processes import wait_until
from kubernaut_tools.localstack.signal_source import ScenarioSeries
from tests.alerting_helpers import stop_alerting_cleanly

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def alerting(stack: LocalStack) -> Iterator[LocalStack]:
    stack.set_signals([])
    stack.up(services=False, alerting=True)
    yield stack
    stop_alerting_cleanly(stack)


def get(stack: LocalStack, component: str, path: str) -> Any:
    resp = httpx.get(stack.url(component) + path, timeout=5)
    resp.raise_for_status()
    return resp.json()


def active_alerts(stack: LocalStack) -> list[dict[str, Any]]:
    alerts: list[dict[str, Any]] = get(stack, "alertmanager", "/api/v2/alerts?active=true")
    return [a for a in alerts if a["status"]["state"] == "active"]


def webhook_attempts(stack: LocalStack) -> float:
    text = httpx.get(stack.url("alertmanager") + "/metrics", timeout=5).text
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "alertmanager_notification_requests_total" and s.labels.get("integration") == "webhook"
    )


def test_prometheus_loads_the_local_rules(alerting: LocalStack) -> None:
    def rules() -> dict[str, dict[str, Any]]:
        groups = get(alerting, "prometheus", "/api/v1/rules")["data"]["groups"]
        return {r["name"]: r for g in groups for r in g["rules"]}

    assert set(rules()) == {r.alert for r in RULES}
    wait_until(
        lambda: all(r["health"] == "ok" for r in rules().values()), timeout=30, what="every rule evaluated"
    )
    assert all(r["type"] == "alerting" for r in rules().values())
    assert rules()["KubernautStormAlert"]["labels"]["severity"] == "critical"


def test_prometheus_scrapes_both_services_and_the_signal_source(alerting: LocalStack) -> None:
    def targets() -> dict[str, dict[str, Any]]:
        active = get(alerting, "prometheus", "/api/v1/targets")["data"]["activeTargets"]
        return {t["labels"]["job"]: t for t in active}

    wait_until(
        lambda: targets().get("kubernaut-signal-source", {}).get("health") == "up",
        timeout=30,
        what="the signal source scraped",
    )
    urls = {job: t["scrapeUrl"] for job, t in targets().items()}
    assert urls["kubernaut-gateway"] == alerting.url("gateway") + "/metrics"
    assert urls["kubernaut-context-api"] == alerting.url("context-api") + "/metrics"
    assert urls["kubernaut-signal-source"] == alerting.url("signal-source") + "/metrics"


def test_alertmanager_routes_to_the_gateway_webhook_with_the_bearer_token(alerting: LocalStack) -> None:
    status = get(alerting, "alertmanager", "/api/v2/status")
    assert status["cluster"]["status"] == "disabled"
    config = yaml.safe_load(status["config"]["original"])
    assert config["route"]["receiver"] == RECEIVER
    (receiver,) = [r for r in config["receivers"] if r["name"] == RECEIVER]
    (hook,) = receiver["webhook_configs"]
    assert hook["url"] == alerting.url("gateway") + WEBHOOK_PATH
    assert hook["send_resolved"] is True
    auth = hook["http_config"]["authorization"]
    assert auth["type"] == "Bearer"
    token_file = alerting.run.alertmanager_token_file
    assert auth["credentials_file"] == str(token_file)
    assert token_file.read_text() == alerting.gateway_token
    assert token_file.stat().st_mode & 0o077 == 0


def test_signals_fire_a_grouped_storm_and_resolve(alerting: LocalStack) -> None:
    storm = [ScenarioSeries("storm", "e2e-storm", f"web-{i}") for i in range(12)]
    attempts_before = webhook_attempts(alerting)
    alerting.set_signals([*storm, ScenarioSeries("resolving", "e2e-resolve", "db-0")])

    wait_until(
        lambda: len(active_alerts(alerting)) == 13, timeout=30, what="13 alerts active in Alertmanager"
    )
    groups = get(alerting, "alertmanager", "/api/v2/alerts/groups")
    storm_group = next(g for g in groups if g["labels"].get("alertname") == "KubernautStormAlert")
    assert storm_group["labels"] == {"alertname": "KubernautStormAlert", "namespace": "e2e-storm"}
    assert {a["labels"]["pod"] for a in storm_group["alerts"]} == {s.pod for s in storm}
    assert storm_group["receiver"]["name"] == RECEIVER
    # No gateway runs here, so delivery fails; the attempts prove the route ends at its webhook.
    wait_until(
        lambda: webhook_attempts(alerting) > attempts_before, timeout=30, what="a webhook delivery attempt"
    )

    alerting.set_signals([*storm, ScenarioSeries("resolving", "e2e-resolve", "db-0", active=False)])
    wait_until(
        lambda: {a["labels"]["alertname"] for a in active_alerts(alerting)} == {"KubernautStormAlert"},
        timeout=30,
        what="the resolving alert resolved in Alertmanager",
    )
    assert len(active_alerts(alerting)) == 12
